"""What the last step did, with record_statistics=True: four scalar
variables, written by the step from values it computes anyway, with no
host synchronisation and no extra pass over a variable; not saved with the
optimizer."""

from keras import ops

STATISTICS = {
    "adafactor_step_size": "float32",
    "adafactor_update_rms": "float32",
    "adafactor_clip_fraction": "float32",
    "adafactor_skipped_steps": "int",  # as `iterations`: int32 on JAX
}


class Statistics:
    """The optimizer's statistics (see statistics())."""

    def _build_statistics(self):
        self._records = []  # (RMS(U_t), clip) per variable or group, in a step
        self._statistics = {
            name: self.add_variable(
                (), dtype=dtype, aggregation="only_first_replica", name=name
            )
            for name, dtype in (STATISTICS.items() if self.record_statistics else ())
        }

    def _record(self, rms_u, clip):
        """What update_step did for a variable, or for each of a group."""
        if self.record_statistics:
            self._records.append((rms_u, clip))

    def _count_skipped(self):
        if self.record_statistics:
            self._statistics["adafactor_skipped_steps"].assign_add(1)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """The step, and what it did written to the statistics."""
        # Under tf.distribute every replica reads the same records, made once
        # in the cross-replica context: none may empty the list after them.
        self._records = []
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        records = self._records
        if not records:  # not recording, or no variable of size > 0
            return
        rms_u, clip = (
            ops.concatenate(
                [ops.reshape(ops.cast(x, "float32"), (-1,)) for x in column]
            )
            for column in zip(*records)
        )
        step = ops.cast(self.iterations + 1, "float32")
        written = {
            "adafactor_step_size": self._step_size(learning_rate, step, "float32"),
            "adafactor_update_rms": ops.mean(rms_u),
            "adafactor_clip_fraction": ops.mean(ops.cast(clip > 1.0, "float32")),
        }
        for name, value in written.items():
            self._statistics[name].assign(value)

    def statistics(self, optimizer_variables=None):
        """What the last step did, with record_statistics=True, as scalar
        tensors (convert with float()):

        - `adafactor_step_size`: rho_t, the step size before the parameter
          scale `max(epsilon_2, RMS(X))` (which is each variable's own);
        - `adafactor_update_rms`: RMS(U_t) before the clip, averaged over
          the variables updated;
        - `adafactor_clip_fraction`: the fraction of those whose update was
          clipped (RMS(U_t) > clip_threshold);
        - `adafactor_skipped_steps`: the steps skipped by `skip_nonfinite`.

        They are zero before the first step. A skipped step leaves the first
        three as they were. The optimizer does not save them (the count
        restarts from 0 in a loaded model), so that its files load into an
        optimizer made without them, and back; a LossScaleOptimizer around it
        saves its variables itself, these included. `adafactor.StatisticsLogger`
        writes them into `fit()`'s logs.

        In a JAX loop of `stateless_apply`, pass the optimizer variables it
        returned: the statistics are read from those values. They are this
        optimizer's variables, in the order of `variables`; the list a
        LossScaleOptimizer's `stateless_apply` returns holds its own first,
        and this optimizer's as its last `len(variables)`.

        The values are copies: later steps do not change them.
        """
        self._require_statistics()
        if not self.built:
            raise ValueError(
                "The optimizer has no statistics before it is built (by its "
                "first step, or by build())."
            )
        count = len(self.variables)
        if optimizer_variables is not None and len(optimizer_variables) != count:
            raise ValueError(
                "Argument `optimizer_variables` must hold the values of this "
                f"optimizer's {count} variables, in the order of its `variables` "
                "(of the list a LossScaleOptimizer's stateless_apply returns, the "
                f"last {count}). Received: a list of {len(optimizer_variables)}"
            )
        values = dict(zip(map(id, self.variables), optimizer_variables or ()))
        return {
            name: ops.copy(ops.convert_to_tensor(values.get(id(v), v)))
            for name, v in self._statistics.items()
        }

    def _require_statistics(self):
        if not self.record_statistics:
            raise ValueError(
                "The optimizer records no statistics: make it with "
                "record_statistics=True (in R, optimizer_adafactor("
                "record_statistics = TRUE)). Received: record_statistics=False"
            )

    def _saved(self):
        """The variables saved with the optimizer: all but the statistics."""
        kept = getattr(self, "_statistics", {}).values()
        return [v for v in self.variables if all(v is not s for s in kept)]
