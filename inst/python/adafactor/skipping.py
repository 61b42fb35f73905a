"""skip_nonfinite: a step with a NaN or an infinity in any gradient changes
nothing, as a LossScaleOptimizer's skipped step, without loss scaling."""

import keras

from adafactor import backend
from adafactor._sparse import row_sparse_values
from adafactor.backend import ops


def all_finite(grads):
    """Whether every gradient is finite: one reduction over each (over the
    values of a sparse one); an empty one is finite."""
    checks = [
        backend.all_finite(row_sparse_values(g))
        for g in grads
        if g is not None and 0 not in tuple(g.shape)
    ]
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


class Skipping:
    """apply() and stateless_apply() that skip a step whole, no variable
    written, `iterations` included, where a gradient given to them is not
    finite (checked before Keras divides by loss_scale_factor or clips).
    Not under a tf.distribute strategy."""

    _deciding = False

    def apply(self, grads, trainable_variables=None):
        if not self.skip_nonfinite or self._deciding:
            return super().apply(grads, trainable_variables)
        backend.refuse_in_distributed_replica("skip_nonfinite=True")
        if not self.built:  # the variables are made first: not in a branch
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables or self._trainable_variables)
        backend.cond(
            all_finite(grads),
            lambda: self._decided(
                super(Skipping, self).apply, grads, trainable_variables
            ),
            self._count_skipped,
        )

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """As Keras's; a step with a non-finite gradient returns the
        variables as they were."""
        if not self.skip_nonfinite:
            return super().stateless_apply(
                optimizer_variables, grads, trainable_variables
            )
        apply = super().stateless_apply
        # Values, not variables (a LossScaleOptimizer passes this one's
        # variables): a branch returns them.
        optimizer_variables = [ops.convert_to_tensor(v) for v in optimizer_variables]
        trainable_variables = [ops.convert_to_tensor(v) for v in trainable_variables]
        return backend.cond(
            all_finite(grads),
            lambda: self._decided(
                apply, optimizer_variables, grads, trainable_variables
            ),
            lambda: (list(trainable_variables), self._skipped(optimizer_variables)),
        )

    def _skipped(self, optimizer_variables):
        """The values of the optimizer's variables after a skipped step: as
        they were, but for the count of skipped steps."""
        count = self._statistics.get("adafactor_skipped_steps")
        return [
            value + 1 if variable is count else value
            for variable, value in zip(self.variables, optimizer_variables)
        ]

    def _decided(self, apply, *args):
        """apply(*args) once the step is known to be finite: apply() must not
        ask again (stateless_apply() calls it)."""
        self._deciding = True
        try:
            return apply(*args)
        finally:
            self._deciding = False
