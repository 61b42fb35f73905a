"""What the optimizer saves and loads: its config, from the options' table
and with what exclude_from_factoring() chose, and its state, loaded whole or
not at all."""

import warnings

import keras
from keras import ops

from adafactor import _warning
from adafactor.options import OWN


def restorable(learning_rate):
    """Whether Keras can deserialize what it saves for this learning rate."""
    schedules = keras.optimizers.schedules.LearningRateSchedule
    if not callable(learning_rate) or isinstance(learning_rate, schedules):
        return True
    saving = keras.saving
    try:
        with warnings.catch_warnings():  # Keras's advice on saving lambdas
            warnings.simplefilter("ignore")
            saved = saving.serialize_keras_object(learning_rate)
            return callable(saving.deserialize_keras_object(saved))
    except Exception:  # what load_model would raise
        return False


def pairing(variables, saved, learning_rate):
    """An optimizer's variables and the saved values to load into them: all,
    or all but a learning rate (a scalar, after `iterations`) where only one
    side has a learning-rate variable; None if the counts allow neither."""
    has_rate = isinstance(learning_rate, keras.Variable)
    if len(variables) == len(saved):
        return variables, saved
    if has_rate and len(variables) == len(saved) + 1:
        return [v for v in variables if v is not learning_rate], saved
    if not has_rate and len(saved) == len(variables) + 1 and saved[1].shape == ():
        return variables, saved[:1] + saved[2:]
    return None


def holds(variable, value):
    """Whether a saved value can be what `variable` holds: the same shape, and
    numbers of the same kind (floating point, or not)."""

    def floating(dtype):
        return "float" in keras.backend.standardize_dtype(dtype)

    same_kind = floating(variable.dtype) == floating(value.dtype)
    return tuple(value.shape) == tuple(variable.shape) and same_kind


def mismatch(variables, saved, learning_rate):
    """What keeps the saved values from loading into `variables`: their
    counts, or the first variables whose shape or kind of number differs."""
    pairs = pairing(variables, saved, learning_rate)
    if pairs is None or len(variables) != len(saved):
        return f"it has {len(variables)} variables and the saved state {len(saved)}"
    wrong = [
        f"{getattr(v, 'path', v.name)!r} is {_described(v)} where the saved value "
        f"is {_described(value)}"
        for v, value in zip(*pairs)
        if not holds(v, value)
    ]
    more = f", and {len(wrong) - 3} more differ" if len(wrong) > 3 else ""
    return "; ".join(wrong[:3]) + more


def _described(x):
    kind = "float" if "float" in keras.backend.standardize_dtype(x.dtype) else "int"
    return f"{kind} of shape {tuple(int(d) for d in x.shape)}"


class Saving:
    """The optimizer's config and state, as Keras saves and loads them."""

    def save_own_variables(self, store):
        """As Keras's, without the statistics (see statistics())."""
        for i, variable in enumerate(self._saved()):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        """As Keras's, but the saved state is matched to this optimizer's
        variables by what each holds, its shape and kind, and is loaded
        whole or not at all.

        Only the learning-rate variable may be missing on one side: a model
        saved with a learning-rate function has none, and an optimizer given
        a function needs none. Any other difference (momentum, factoring,
        stochastic rounding, another model) skips the optimizer's state,
        leaving this optimizer's as it is, with a warning of this package's
        own that begins as Keras's does and says what differs.
        """
        saved = [store[str(i)] for i in range(len(store.keys()))]
        ours = self._saved()
        pairs = pairing(ours, saved, self._learning_rate)
        if pairs is not None and all(map(holds, *pairs)):
            for variable, value in zip(*pairs):
                variable.assign(value)
            return
        _warning.warn(
            f"Skipping variable loading for optimizer '{self.name}', because "
            f"its variables do not match the saved ones: "
            f"{mismatch(ours, saved, self._learning_rate)} (an optimizer made "
            "with other options, or for another model, or not built yet); its "
            "state is left as it is."
        )

    def get_config(self):
        """The config Keras saves: Keras's options, this package's (see
        options.OWN) and the exclusions from factoring. A learning rate that
        is a function Keras cannot restore (an R function, a lambda) is saved
        as its current value, with a warning, so that the file always
        loads."""
        function = self._learning_rate
        restored = restorable(function)
        if not restored:
            rate = ops.convert_to_tensor(self.learning_rate)
            _warning.warn(
                "The learning rate is a function that a saved model cannot "
                f"restore; its current value, {float(rate):g}, is saved instead, "
                "and a loaded model trains at that constant rate. To save a "
                "schedule, use a keras.optimizers.schedules."
                "LearningRateSchedule (in R, keras3's learning_rate_schedule_*())."
            )
            # Keras serializes any callable; let it see the value instead.
            self._learning_rate = rate
        try:
            config = super().get_config()
        finally:
            self._learning_rate = function
        config.update({o.name: getattr(self, o.name) for o in OWN})
        if not restored:  # the function was used as it is; so is its value
            config["relative_step"] = False
        exclusions = self._exclusions_config()
        if exclusions is not None:
            config["exclude_from_factoring"] = exclusions
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """As Keras's, with the variables exclude_from_factoring() chose."""
        config = dict(config)
        exclusions = config.pop("exclude_from_factoring", None)
        optimizer = super().from_config(config, custom_objects=custom_objects)
        if exclusions is not None:
            optimizer._exclusions_from_config(exclusions)
        return optimizer
