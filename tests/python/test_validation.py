"""Bad arguments are refused at construction, naming argument and value.

ARGUMENTS holds, for every option of adafactor.options, values its rule
accepts and values it refuses, with the error and the phrase of what is
allowed (a regular expression).
"""

import inspect
import re
from typing import NamedTuple

import keras
import numpy as np
import pytest

from adafactor import Adafactor
from adafactor.options import OPTIONS
from helpers import compiled_trajectory, random_problem


class Argument(NamedTuple):
    good: list  # accepted, and kept as given
    bad: list  # (value, error, what is allowed)


AS_FLOAT32 = r" \(as a float32\)"
IN_INT32 = r" \(at most 2147483647\)"
NORMAL = "a normal float32 >= 1.1754944e-38 \\(the least normal float32"
EPSILON_1 = re.escape("a number in [2^-102, 2^126], [1.9721523e-31, 8.507059e+37]")
NAME = "valid TensorFlow name scope"
FLAG = "True or False"

ARGUMENTS = {
    "learning_rate": Argument(
        [1e-3, 1, 1e38, keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)]
        + [lambda: 0.1],
        [
            (0.0, ValueError, "a number > 0"),
            (-1e-3, ValueError, "a number > 0"),
            ("fast", TypeError, "a number > 0"),
            (None, TypeError, "a number > 0, a LearningRateSchedule or a callable"),
            (float("nan"), ValueError, "a number > 0"),
            (float("inf"), ValueError, "a number > 0"),
            # Numbers the step holds as float32.
            (1e39, ValueError, "a number > 0.*" + AS_FLOAT32),
            (1e-320, ValueError, "a number > 0.*" + AS_FLOAT32),
        ],
    ),
    "beta_2_decay": Argument(
        [-0.8, -8.0, -2, -1e-30],
        [
            (0.0, ValueError, "a number < 0"),
            (0.5, ValueError, "a number < 0"),
            (None, TypeError, "a number < 0"),
            (-1e39, ValueError, "a number < 0" + AS_FLOAT32),
            (-1e-46, ValueError, "a number < 0" + AS_FLOAT32),
        ],
    ),
    # Squares below the least normal float32 are lost: a smaller epsilon_1
    # would not outweigh them; a larger one overflows the statistics.
    "epsilon_1": Argument(
        [1e-30, 2.0**-102, 1.0, 2.0**126],
        [
            (-1e-30, ValueError, EPSILON_1),
            (0.0, ValueError, EPSILON_1),
            (2.0**-126, ValueError, EPSILON_1),
            (2.0**-103, ValueError, EPSILON_1),
            (2.0**127, ValueError, EPSILON_1),
            (1e39, ValueError, EPSILON_1),
            (None, TypeError, EPSILON_1),
        ],
    ),
    "epsilon_2": Argument(
        [1e-3, 0.0, 1],
        [
            (-0.1, ValueError, "a number >= 0"),
            (None, TypeError, "a number >= 0"),
        ],
    ),
    "clip_threshold": Argument(
        [1.0, 2.0**-126, 100],
        [
            (-1.0, ValueError, "least normal float32"),
            (0.0, ValueError, "least normal float32"),
            (1e-40, ValueError, "least normal float32"),
            ("1", TypeError, "least normal float32"),
            (None, TypeError, NORMAL),
        ],
    ),
    "relative_step": Argument(
        [True, False],
        [
            (1, TypeError, FLAG),
            ("yes", TypeError, FLAG),
            (None, TypeError, FLAG),
            (np.bool_(True), TypeError, FLAG),
        ],
    ),
    "weight_decay": Argument(
        [None, 0.0, 0.01],
        [
            (-0.1, ValueError, "a number >= 0 or None"),
            (1e39, ValueError, "a number >= 0 or None" + AS_FLOAT32),
        ],
    ),
    "clipnorm": Argument(
        [None, 1.0, 3],
        [
            (0.0, ValueError, "a number > 0 or None"),
            (1e-320, ValueError, "a number > 0 or None" + AS_FLOAT32),
        ],
    ),
    "clipvalue": Argument(
        [None, 0.0, 0.5],
        [
            ("x", TypeError, "a number >= 0 or None"),
            (-1, ValueError, "a number >= 0 or None"),
        ],
    ),
    "global_clipnorm": Argument(
        [None, 2.0],
        [(-1.0, ValueError, "a number > 0 or None")],
    ),
    "use_ema": Argument(
        [True, False],
        [(None, TypeError, FLAG), (0, TypeError, FLAG)],
    ),
    "ema_momentum": Argument(
        [0, 0.99, 1],
        [
            (1.5, ValueError, r"a number in \[0, 1\]"),
            (-0.1, ValueError, r"a number in \[0, 1\]"),
            (None, TypeError, r"a number in \[0, 1\]"),
            (10**400, ValueError, r"\[0, 1\]" + AS_FLOAT32),
        ],
    ),
    # Whole numbers meet int32 step counts on JAX.
    "ema_overwrite_frequency": Argument(
        [None, 1, 2.0, 2**31 - 1],
        [
            (0, ValueError, "a whole number >= 1"),
            (2.5, TypeError, "a whole number >= 1"),
            (2**31, ValueError, IN_INT32),
        ],
    ),
    "loss_scale_factor": Argument(
        [None, 64.0, 1],
        [(0.0, ValueError, "a number > 0 or None")],
    ),
    "gradient_accumulation_steps": Argument(
        [None, 2, 4.0, 2**31 - 1],
        [
            (1, ValueError, "a whole number >= 2"),
            (3.5, TypeError, "a whole number >= 2"),
            (-4, ValueError, "a whole number >= 2"),
            (2**40, ValueError, IN_INT32),
        ],
    ),
    "beta_1": Argument(
        [None, 0.0, 0.9, 0.9999],
        [
            (1.0, ValueError, r"a number in \[0, 1\) or None"),
            ("0.9", TypeError, r"a number in \[0, 1\) or None"),
            (0.99999999, ValueError, r"\[0, 1\) or None" + AS_FLOAT32),
        ],
    ),
    "momentum_dtype": Argument(
        ["float32", "bfloat16", "float16", "float64"],
        [
            ("int8", ValueError, 'one of "float32"'),
            (16, TypeError, "one of"),
            (None, TypeError, "one of"),
        ],
    ),
    "scale_parameter": Argument(
        [True, False],
        [("no", TypeError, FLAG), (None, TypeError, FLAG)],
    ),
    "min_dim_size_to_factor": Argument(
        [None, 1, 128, 2**31 - 1],
        [
            (0, ValueError, "a whole number >= 1 or None"),
            (2.5, TypeError, "a whole number >= 1 or None"),
            (2**31, ValueError, IN_INT32),
            (10**400, ValueError, IN_INT32),
        ],
    ),
    "factored": Argument(
        [True, False],
        [(None, TypeError, FLAG)],
    ),
    "decay_offset": Argument(
        [0, 3, 2.0, 2**31 - 1],
        [
            (-1, ValueError, "a whole number >= 0"),
            (0.5, TypeError, "a whole number >= 0"),
            (None, TypeError, "a whole number >= 0"),
            (2**31, ValueError, "a whole number >= 0" + IN_INT32),
            (2.0**53, ValueError, IN_INT32),
            (10**400, ValueError, IN_INT32),
        ],
    ),
    "stochastic_rounding": Argument(
        [True, False],
        [(1, TypeError, FLAG), (None, TypeError, FLAG)],
    ),
    "beta_2_cap": Argument(
        [None, 0.5, 0.999],
        [
            (1.0, ValueError, r"a number in \(0, 1\) or None"),
            (0, ValueError, r"a number in \(0, 1\) or None"),
            ("0.9", TypeError, r"\(0, 1\) or None"),
            (0.99999999, ValueError, r"\(0, 1\) or None" + AS_FLOAT32),
        ],
    ),
    "beta_2": Argument(
        [None, 0.9, 0.999],
        [
            (1.0, ValueError, r"a number in \(0, 1\) or None"),
            (-0.1, ValueError, r"a number in \(0, 1\) or None"),
            (True, TypeError, r"\(0, 1\) or None"),
            (1e-50, ValueError, r"\(0, 1\) or None" + AS_FLOAT32),
        ],
    ),
    "factor_dims": Argument(
        ["last", "largest"],
        [
            ("first", ValueError, 'one of "last", "largest"'),
            ("Last", ValueError, 'one of "last", "largest"'),
            (2, TypeError, 'one of "last", "largest"'),
            (None, TypeError, 'one of "last", "largest"'),
        ],
    ),
    "skip_nonfinite": Argument(
        [True, False],
        [(1, TypeError, FLAG), ("yes", TypeError, FLAG), (None, TypeError, FLAG)],
    ),
    "record_statistics": Argument(
        [True, False],
        [(1, TypeError, FLAG), ("yes", TypeError, FLAG), (None, TypeError, FLAG)],
    ),
    # TensorFlow's name-scope rule: any other name breaks fit() there.
    "name": Argument(
        [None, "my_adafactor", ".hidden", "3d", "a.b>c-d\\e"],
        [
            ("my adafactor", ValueError, NAME),
            ("a/b", ValueError, NAME),
            ("_private", ValueError, NAME),
            (3, TypeError, NAME),
            ("a" * 1000 + " ", ValueError, NAME),  # shown shortened
        ],
    ),
}


def shown(value):
    """A value as a test's id shows it."""
    text = type(value).__name__ if callable(value) else repr(value)
    return text if len(text) <= 20 else text[:17] + "..."


GOOD = [(name, value) for name, arg in ARGUMENTS.items() for value in arg.good]
BAD = [(name, *case) for name, arg in ARGUMENTS.items() for case in arg.bad]


def test_every_option_is_tried():
    assert set(ARGUMENTS) == {o.name for o in OPTIONS}


def test_the_signature_is_the_table():
    """The signature lists the options of the table, in its order, with its
    defaults: the one place an option is written beside it."""
    parameters = list(inspect.signature(Adafactor).parameters.values())[:-1]
    assert [p.name for p in parameters] == [o.name for o in OPTIONS]
    for parameter, option in zip(parameters, OPTIONS):
        assert parameter.default == option.default, option.name
    # Keras keeps its options; this package keeps and saves its own.
    config = Adafactor().get_config()
    assert all(config[o.name] == o.default for o in OPTIONS if not o.keras)


@pytest.mark.parametrize("name, value", GOOD, ids=[f"{n}={shown(v)}" for n, v in GOOD])
def test_good_argument_is_kept(name, value):
    optimizer = Adafactor(**{name: value})
    if callable(value):  # a schedule or a function, used as it is
        assert optimizer._learning_rate is value
        return
    config = optimizer.get_config()
    if isinstance(value, (bool, str)):
        assert config[name] == value and type(config[name]) is type(value)
    elif isinstance(value, (int, float)):
        assert config[name] == pytest.approx(value, rel=1e-7)
    elif value is None and name != "name":
        assert config[name] is None


@pytest.mark.parametrize(
    "name, value, error, allowed",
    BAD,
    ids=[f"{n}={shown(v)}" for n, v, *_ in BAD],
)
def test_bad_argument_is_refused(name, value, error, allowed):
    with pytest.raises(error, match=allowed) as info:
        Adafactor(**{name: value})
    message = str(info.value)
    assert message.startswith(f"Argument `{name}` must be ")
    text = repr(value)
    received = f"Received: {name}={text if len(text) <= 60 else text[:57] + '...'}"
    if error is TypeError:  # named with its type
        kind = type(value)
        module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
        received += f" of type {module}{kind.__qualname__}"
    assert message.endswith(received)


def test_ema_momentum_checked_with_use_ema():
    with pytest.raises(ValueError, match="ema_momentum=2"):
        Adafactor(use_ema=True, ema_momentum=2)


def test_unknown_keyword_is_refused():
    with pytest.raises(ValueError, match="not recognized"):
        Adafactor(momentum=0.9)


def test_beta_2_decay_beside_beta_2_is_refused():
    # beta_2_decay is not used when beta_2 is set; its default is allowed.
    Adafactor(beta_2=0.999, beta_2_decay=-0.8)
    Adafactor(beta_2=0.999, beta_2_decay=np.float32(-0.8))
    with pytest.raises(ValueError, match=r"`beta_2_decay` is not used when `beta_2`"):
        Adafactor(beta_2=0.999, beta_2_decay=-0.5)


def test_whole_numbers_become_ints():
    optimizer = Adafactor(gradient_accumulation_steps=4.0, ema_overwrite_frequency=2.0)
    assert optimizer.gradient_accumulation_steps == 4
    assert isinstance(optimizer.gradient_accumulation_steps, int)
    assert isinstance(optimizer.ema_overwrite_frequency, int)


def test_name_none_takes_the_default_name():
    # Keras numbers the default after the first: adafactor, adafactor_1, ...
    assert re.fullmatch(r"adafactor(_\d+)?", Adafactor(name=None).name)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(decay_offset=2**31 - 1),
        dict(use_ema=True, ema_overwrite_frequency=2**31 - 1),
        dict(gradient_accumulation_steps=2**31 - 1),
        dict(min_dim_size_to_factor=2**31 - 1),
    ],
    ids=lambda kw: ",".join(kw),
)
def test_the_largest_whole_numbers_work(kwargs):
    x0s, grads = random_problem([(3, 4), (4,)], steps=2)
    got = compiled_trajectory(Adafactor(**kwargs), x0s, grads)
    assert all(np.all(np.isfinite(x)) for x in got)


@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_a_variable_that_is_not_floating_point_is_refused(dtype):
    variable = keras.Variable(
        np.ones((3, 4)), dtype=dtype, trainable=False, name="counts"
    )
    variables = [variable]
    with pytest.raises(ValueError, match=f"floating-point.*'counts'.* {dtype}"):
        Adafactor().build(variables)
