"""The rules of the optimizer's arguments, and the errors that name them.

Each argument's rule is a row of RULES; `validate` raises a TypeError or a
ValueError that names the argument, the value given and what is allowed.
"""

import numbers
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from adafactor._kernels import FLOAT32_MAX, TINY


class Rule(NamedTuple):
    """What an argument allows, and how its message says so."""

    kind: Callable  # the type test: a TypeError when it fails
    ok: Callable  # the value test: a ValueError
    allowed: str  # "a number > 0"
    none_ok: bool = False  # None is allowed too
    note: str = ""  # after the phrase: " (as a float32)"


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value):
    if isinstance(value, numbers.Integral):
        return not isinstance(value, bool)
    try:
        return is_real(value) and float(value).is_integer()
    except OverflowError:  # a Fraction beyond any float
        return False


def _is_flag(value):
    return isinstance(value, bool)


# The step computes in float32 (or wider): a number must stay finite there,
# and keep to its rule once rounded.
_AS_FLOAT32 = " (as a float32)"
# Whole numbers meet int32 step counts on JAX, whose default integers they
# are: a larger one overflows there.
_INT32_MAX = 2**31 - 1
_IN_INT32 = f" (at most {_INT32_MAX})"


def _finite(x):
    try:
        return abs(float(x)) <= FLOAT32_MAX
    except OverflowError:
        return False


def _number(ok, allowed, none_ok=False, note=_AS_FLOAT32):
    """A number's rule, which must hold for the number rounded to float32 too
    (1e-320 is 0 there, 0.99999999 is 1)."""

    def holds(x):
        return _finite(x) and ok(x) and ok(float(np.float32(x)))

    return Rule(is_real, holds, allowed, none_ok, note)


def _whole(ok, allowed, none_ok=False):
    def holds(x):
        return ok(x) and x <= _INT32_MAX

    return Rule(_is_whole, holds, allowed, none_ok, _IN_INT32)


_FLAG = Rule(_is_flag, lambda x: True, "True or False")
# epsilon_1 is added to squares of gradient entries; float32 holds none
# below its least normal number, 2^-126, and those are lost. From 2^-102 up,
# epsilon_1 keeps that loss below float32's rounding of the statistics; up
# to 2^126 (a quarter of float32's largest), it keeps the statistics of a
# zero gradient inside float32's range.
EPSILON_1_RANGE = (2.0**-102, 2.0**126)
_EPSILON_1 = (
    "a number in [2^-102, 2^126], [1.9721523e-31, 8.507059e+37] (squared"
    " gradients below float32's least normal number, 2^-126, are lost, and a"
    " smaller epsilon_1 would not outweigh them; a larger one overflows"
    " float32 in the statistics)"
)
# The update is float32 (or wider); a clip_threshold below the least normal
# float32 is 0 once flushed to zero, as TensorFlow, XLA and GPUs do, and the
# clip of an all-zero gradient then divides 0 by 0.
_NORMAL = (
    "a normal float32 >= 1.1754944e-38 (the least normal float32: a smaller"
    " one is 0 on backends that flush subnormals to zero, and an all-zero"
    " gradient then divides 0 by 0)"
)
# TensorFlow's rule for a name scope, less the `/` Keras refuses: any other
# name breaks training there.
_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\>-]*")
_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")

# beta_2_decay's default: any other value is an error beside beta_2.
BETA_2_DECAY = -0.8

# What each argument allows.
RULES = {
    "beta_2_decay": _number(lambda x: x < 0, "a number < 0"),
    "epsilon_1": _number(
        lambda x: EPSILON_1_RANGE[0] <= x <= EPSILON_1_RANGE[1], _EPSILON_1, note=""
    ),
    "epsilon_2": _number(lambda x: x >= 0, "a number >= 0"),
    "clip_threshold": _number(lambda x: x >= TINY, _NORMAL, note=""),
    "relative_step": _FLAG,
    "weight_decay": _number(lambda x: x >= 0, "a number >= 0", True),
    "clipnorm": _number(lambda x: x > 0, "a number > 0", True),
    "clipvalue": _number(lambda x: x >= 0, "a number >= 0", True),
    "global_clipnorm": _number(lambda x: x > 0, "a number > 0", True),
    "use_ema": _FLAG,
    "ema_momentum": _number(lambda x: 0 <= x <= 1, "a number in [0, 1]"),
    "ema_overwrite_frequency": _whole(lambda x: x >= 1, "a whole number >= 1", True),
    "loss_scale_factor": _number(lambda x: x > 0, "a number > 0", True),
    "gradient_accumulation_steps": _whole(
        lambda x: x >= 2, "a whole number >= 2", True
    ),
    "beta_1": _number(lambda x: 0 <= x < 1, "a number in [0, 1)", True),
    "momentum_dtype": Rule(
        lambda x: isinstance(x, str),
        lambda x: x in _FLOAT_DTYPES,
        "one of " + ", ".join(f'"{d}"' for d in _FLOAT_DTYPES),
    ),
    "scale_parameter": _FLAG,
    "min_dim_size_to_factor": _whole(lambda x: x >= 1, "a whole number >= 1", True),
    "factored": _FLAG,
    "decay_offset": _whole(lambda x: x >= 0, "a whole number >= 0"),
    "stochastic_rounding": _FLAG,
    "beta_2_cap": _number(lambda x: 0 < x < 1, "a number in (0, 1)", True),
    "beta_2": _number(lambda x: 0 < x < 1, "a number in (0, 1)", True),
    "factor_dims": Rule(
        lambda x: isinstance(x, str),
        lambda x: x in ("last", "largest"),
        'one of "last", "largest"',
    ),
    "skip_nonfinite": _FLAG,
    "record_statistics": _FLAG,
    "name": Rule(
        lambda x: isinstance(x, str),
        lambda x: _NAME.fullmatch(x) is not None,
        "a string of letters, digits and `_.>-\\` that starts with a letter,"
        " a digit or `.` (a valid TensorFlow name scope)",
        none_ok=True,
    ),
}


_RATE_ALLOWED = "a number > 0, a LearningRateSchedule or a callable"


def validate(args):
    """Raise a TypeError or ValueError naming the argument and its value."""
    lr = args["learning_rate"]
    checks = [(name, args[name], rule) for name, rule in RULES.items()]
    if is_real(lr) or not callable(lr):  # schedules and callables pass
        rule = _number(lambda x: x > 0, _RATE_ALLOWED)
        checks.insert(0, ("learning_rate", lr, rule))
    for name, value, (kind, ok, allowed, none_ok, note) in checks:
        if value is None and none_ok:
            continue
        allowed += (" or None" if none_ok else "") + note
        if not kind(value) or not ok(value):
            shown = f"{name}={_shown(value)}"
            if not kind(value):  # a TypeError: say of what type
                shown += f" of type {_type_name(value)}"
            error = ValueError if kind(value) else TypeError
            raise error(f"Argument `{name}` must be {allowed}. Received: {shown}")
    beta_2_decay = args["beta_2_decay"]
    if args["beta_2"] is not None and np.float32(beta_2_decay) != np.float32(
        BETA_2_DECAY
    ):
        raise ValueError(
            "Argument `beta_2_decay` is not used when `beta_2` is set (a "
            "constant decay with bias correction); give one of them. Received: "
            f"beta_2_decay={_shown(beta_2_decay)}, beta_2={_shown(args['beta_2'])}"
        )


def _type_name(value):
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    return module + kind.__qualname__


def _shown(value, width=60):
    """repr(value), shortened to `width` characters with `...`."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def as_int(value):
    return None if value is None else int(value)
