"""The optimizer's options: one table of each option's name, default and
rule, from which the optimizer takes, keeps, checks and saves them.

`validate` raises a TypeError or a ValueError that names the argument, the
value given and what is allowed.
"""

import numbers
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from adafactor._limits import FLOAT32_MAX, TINY


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


def _finite(x):
    try:
        return abs(float(x)) <= FLOAT32_MAX
    except OverflowError:
        return False


# The step computes in float32 (or wider): a number must stay finite there,
# and keep to its rule once rounded (1e-320 is 0 there, 0.99999999 is 1).
_AS_FLOAT32 = " (as a float32)"
# Whole numbers meet int32 step counts on JAX, whose default integers they
# are: a larger one overflows there.
_INT32_MAX = 2**31 - 1


def _holds_as_float32(ok):
    return lambda x: _finite(x) and ok(x) and ok(float(np.float32(x)))


def _number(ok, allowed, none_ok=False, note=_AS_FLOAT32):
    return Rule(is_real, _holds_as_float32(ok), allowed, none_ok, note)


def _whole(ok, allowed, none_ok=False):
    return Rule(
        _is_whole,
        lambda x: ok(x) and x <= _INT32_MAX,
        allowed,
        none_ok,
        f" (at most {_INT32_MAX})",
    )


def _one_of(*choices):
    return Rule(
        lambda x: isinstance(x, str),
        lambda x: x in choices,
        "one of " + ", ".join(f'"{c}"' for c in choices),
    )


_FLAG = Rule(lambda x: isinstance(x, bool), lambda x: True, "True or False")
_RATE = Rule(
    lambda x: is_real(x) or callable(x),  # schedules and callables pass
    lambda x: not is_real(x) or _holds_as_float32(lambda y: y > 0)(x),
    "a number > 0, a LearningRateSchedule or a callable",
    note=_AS_FLOAT32,
)
# epsilon_1 is added to squares of gradient entries; float32 holds none
# below its least normal number, 2^-126, and those are lost. From 2^-102 up,
# epsilon_1 keeps that loss below float32's rounding of the statistics; up
# to 2^126 (a quarter of float32's largest), it keeps the statistics of a
# zero gradient inside float32's range.
EPSILON_1_RANGE = (2.0**-102, 2.0**126)
_EPSILON_1 = _number(
    lambda x: EPSILON_1_RANGE[0] <= x <= EPSILON_1_RANGE[1],
    "a number in [2^-102, 2^126], [1.9721523e-31, 8.507059e+37] (squared"
    " gradients below float32's least normal number, 2^-126, are lost, and a"
    " smaller epsilon_1 would not outweigh them; a larger one overflows"
    " float32 in the statistics)",
    note="",
)
# The update is float32 (or wider); a clip_threshold below the least normal
# float32 is 0 once flushed to zero, as TensorFlow, XLA and GPUs do, and the
# clip of an all-zero gradient then divides 0 by 0.
_CLIP_THRESHOLD = _number(
    lambda x: x >= TINY,
    "a normal float32 >= 1.1754944e-38 (the least normal float32: a smaller"
    " one is 0 on backends that flush subnormals to zero, and an all-zero"
    " gradient then divides 0 by 0)",
    note="",
)
# TensorFlow's rule for a name scope, less the `/` Keras refuses: any other
# name breaks training there.
_NAME = Rule(
    lambda x: isinstance(x, str),
    lambda x: re.fullmatch(r"[A-Za-z0-9.][A-Za-z0-9_.\\>-]*", x) is not None,
    "a string of letters, digits and `_.>-\\` that starts with a letter,"
    " a digit or `.` (a valid TensorFlow name scope)",
    none_ok=True,
)

# beta_2_decay's default: any other value is an error beside beta_2.
BETA_2_DECAY = -0.8


def _optional(kind):
    return lambda x: None if x is None else kind(x)


def _rate(x):
    return float(x) if is_real(x) else x


class Option(NamedTuple):
    """An argument of the optimizer: its name, default and rule; whether
    Keras's base optimizer takes it (and keeps and saves it); and how this
    optimizer keeps the value given."""

    name: str
    default: object
    rule: Rule
    keras: bool = False
    kept_as: Callable = _optional(lambda x: x)


# The arguments, in the order of the signature: keras3's
# optimizer_adafactor() (Keras's own options among them), then this
# package's own.
OPTIONS = (
    Option("learning_rate", 0.001, _RATE, keras=True, kept_as=_rate),
    Option("beta_2_decay", BETA_2_DECAY, _number(lambda x: x < 0, "a number < 0")),
    Option("epsilon_1", 1e-30, _EPSILON_1, kept_as=float),
    Option(
        "epsilon_2", 1e-3, _number(lambda x: x >= 0, "a number >= 0"), kept_as=float
    ),
    Option("clip_threshold", 1.0, _CLIP_THRESHOLD, kept_as=float),
    Option("relative_step", True, _FLAG),
    Option(
        "weight_decay", None, _number(lambda x: x >= 0, "a number >= 0", True), True
    ),
    Option("clipnorm", None, _number(lambda x: x > 0, "a number > 0", True), True),
    Option("clipvalue", None, _number(lambda x: x >= 0, "a number >= 0", True), True),
    Option(
        "global_clipnorm", None, _number(lambda x: x > 0, "a number > 0", True), True
    ),
    Option("use_ema", False, _FLAG, keras=True),
    Option(
        "ema_momentum", 0.99, _number(lambda x: 0 <= x <= 1, "a number in [0, 1]"), True
    ),
    Option(
        "ema_overwrite_frequency",
        None,
        _whole(lambda x: x >= 1, "a whole number >= 1", True),
        keras=True,
        kept_as=_optional(int),
    ),
    Option(
        "loss_scale_factor", None, _number(lambda x: x > 0, "a number > 0", True), True
    ),
    Option(
        "gradient_accumulation_steps",
        None,
        _whole(lambda x: x >= 2, "a whole number >= 2", True),
        keras=True,
        kept_as=_optional(int),
    ),
    Option("name", "adafactor", _NAME, keras=True),
    Option(
        "beta_1",
        None,
        _number(lambda x: 0 <= x < 1, "a number in [0, 1)", True),
        kept_as=_optional(float),
    ),
    Option(
        "momentum_dtype",
        "float32",
        _one_of("float32", "bfloat16", "float16", "float64"),
    ),
    Option("scale_parameter", True, _FLAG),
    Option(
        "min_dim_size_to_factor",
        None,
        _whole(lambda x: x >= 1, "a whole number >= 1", True),
        kept_as=_optional(int),
    ),
    Option("factored", True, _FLAG),
    Option(
        "decay_offset", 0, _whole(lambda x: x >= 0, "a whole number >= 0"), kept_as=int
    ),
    Option("stochastic_rounding", False, _FLAG),
    Option(
        "beta_2_cap",
        None,
        _number(lambda x: 0 < x < 1, "a number in (0, 1)", True),
        kept_as=_optional(float),
    ),
    Option(
        "beta_2",
        None,
        _number(lambda x: 0 < x < 1, "a number in (0, 1)", True),
        kept_as=_optional(float),
    ),
    Option("factor_dims", "last", _one_of("last", "largest")),
    Option("skip_nonfinite", False, _FLAG),
    Option("record_statistics", False, _FLAG),
)
# This package's own: the optimizer keeps them as attributes and saves them.
OWN = tuple(o for o in OPTIONS if not o.keras)


def validate(args):
    """Raise a TypeError or ValueError naming the argument and its value."""
    for name, _, (kind, ok, allowed, none_ok, note), *_ in OPTIONS:
        value = args[name]
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
