"""What an optimizer saves and loads: its config and its state."""

import warnings

import keras


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
