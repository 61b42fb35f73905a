"""Bad arguments are refused at construction, naming argument and value."""

import pytest

from adafactor import Adafactor

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
]


@pytest.mark.parametrize("name, value, error, allowed", BAD)
def test_bad_argument_is_refused(name, value, error, allowed):
    with pytest.raises(error, match=allowed) as info:
        Adafactor(**{name: value})
    message = str(info.value)
    assert f"`{name}`" in message
    assert f"Received: {name}={value!r}" in message


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
