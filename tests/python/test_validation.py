"""Bad arguments are refused at construction, naming argument and value."""

import re

import keras
import numpy as np
import pytest

from adafactor import Adafactor
from helpers import compiled_trajectory, random_problem

BAD = [
    ("learning_rate", 0.0, ValueError, "a number > 0"),
    ("learning_rate", -1e-3, ValueError, "a number > 0"),
    ("learning_rate", "fast", TypeError, "a number > 0"),
    ("learning_rate", float("nan"), ValueError, "a number > 0"),
    ("beta_2_decay", 0.0, ValueError, "a number < 0"),
    ("beta_2_decay", 0.5, ValueError, "a number < 0"),
    ("epsilon_1", -1e-30, ValueError, "least normal float32"),
    ("epsilon_2", -0.1, ValueError, "a number >= 0"),
    ("epsilon_2", None, TypeError, "a number >= 0"),
    ("clip_threshold", -1.0, ValueError, "least normal float32"),
    ("clip_threshold", "1", TypeError, "least normal float32"),
    ("relative_step", 1, TypeError, "True or False"),
    ("relative_step", "yes", TypeError, "True or False"),
    ("use_ema", None, TypeError, "True or False"),
    ("ema_momentum", 1.5, ValueError, r"a number in \[0, 1\]"),
    ("ema_momentum", -0.1, ValueError, r"a number in \[0, 1\]"),
    ("ema_overwrite_frequency", 0, ValueError, "a whole number >= 1"),
    ("ema_overwrite_frequency", 2.5, TypeError, "a whole number >= 1"),
    ("gradient_accumulation_steps", 1, ValueError, "a whole number >= 2"),
    ("gradient_accumulation_steps", 3.5, TypeError, "a whole number >= 2"),
    ("gradient_accumulation_steps", -4, ValueError, "a whole number >= 2"),
    ("weight_decay", -0.1, ValueError, "a number >= 0 or None"),
    ("clipnorm", 0.0, ValueError, "a number > 0 or None"),
    ("clipvalue", "x", TypeError, "a number >= 0 or None"),
    ("global_clipnorm", -1.0, ValueError, "a number > 0 or None"),
    ("loss_scale_factor", 0.0, ValueError, "a number > 0 or None"),
    ("decay_offset", -1, ValueError, "a whole number >= 0"),
    ("momentum_dtype", "int8", ValueError, 'one of "float32"'),
    ("beta_1", 1.0, ValueError, r"a number in \[0, 1\) or None"),
    # TensorFlow's name-scope rule: any other name breaks fit() there.
    ("name", "my adafactor", ValueError, "valid TensorFlow name scope"),
    ("name", "a/b", ValueError, "valid TensorFlow name scope"),
    ("name", "_private", ValueError, "valid TensorFlow name scope"),
    ("name", 3, TypeError, "valid TensorFlow name scope"),
    # Numbers the step holds as float32, and whole numbers as int32 on JAX.
    ("learning_rate", 1e39, ValueError, r"a number > 0.*\(as a float32\)"),
    ("learning_rate", 1e-320, ValueError, r"a number > 0.*\(as a float32\)"),
    ("clipnorm", 1e-320, ValueError, r"a number > 0 or None \(as a float32\)"),
    ("weight_decay", 1e39, ValueError, r"a number >= 0 or None \(as a float32\)"),
    ("beta_2_decay", -1e39, ValueError, r"a number < 0 \(as a float32\)"),
    ("epsilon_1", 1e39, ValueError, "a normal float32"),
    ("ema_momentum", 10**400, ValueError, r"\[0, 1\] \(as a float32\)"),
    ("beta_1", 0.99999999, ValueError, r"\[0, 1\) or None \(as a float32\)"),
    ("beta_2_decay", -1e-46, ValueError, r"a number < 0 \(as a float32\)"),
    ("decay_offset", 2**31, ValueError, r"a whole number >= 0 \(at most 2147483647\)"),
    ("decay_offset", 2.0**53, ValueError, r"\(at most 2147483647\)"),
    ("ema_overwrite_frequency", 2**31, ValueError, r"\(at most 2147483647\)"),
    ("gradient_accumulation_steps", 2**40, ValueError, r"\(at most 2147483647\)"),
    ("min_dim_size_to_factor", 2**31, ValueError, r"\(at most 2147483647\)"),
    ("decay_offset", 10**400, ValueError, r"\(at most 2147483647\)"),
    ("min_dim_size_to_factor", 10**400, ValueError, r"\(at most 2147483647\)"),
]


@pytest.mark.parametrize("name, value, error, allowed", BAD)
def test_bad_argument_is_refused(name, value, error, allowed):
    with pytest.raises(error, match=allowed) as info:
        Adafactor(**{name: value})
    message = str(info.value)
    assert f"`{name}`" in message
    shown = repr(value)
    assert f"Received: {name}={shown if len(shown) <= 60 else shown[:57]}" in message


def test_ema_momentum_checked_with_use_ema():
    with pytest.raises(ValueError, match="ema_momentum=2"):
        Adafactor(use_ema=True, ema_momentum=2)


def test_unknown_keyword_is_refused():
    with pytest.raises(ValueError, match="not recognized"):
        Adafactor(momentum=0.9)


def test_whole_numbers_become_ints():
    optimizer = Adafactor(gradient_accumulation_steps=4.0, ema_overwrite_frequency=2.0)
    assert optimizer.gradient_accumulation_steps == 4
    assert isinstance(optimizer.gradient_accumulation_steps, int)
    assert isinstance(optimizer.ema_overwrite_frequency, int)


def test_integer_learning_rate_is_accepted():
    assert Adafactor(learning_rate=1).get_config()["learning_rate"] == 1.0


def test_a_long_value_is_shown_shortened():
    with pytest.raises(ValueError) as info:
        Adafactor(name="a" * 1000 + " ")
    assert str(info.value).endswith("Received: name='" + "a" * 56 + "...")


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


def test_a_value_of_the_wrong_type_is_named_with_its_type():
    with pytest.raises(TypeError, match=r"Received: relative_step=.* of type numpy\."):
        Adafactor(relative_step=np.bool_(True))
