"""get_config/from_config, Keras's registry, saving a model, pickling."""

import pickle
import re
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from adafactor import Adafactor
from helpers import fit_small_model, saved_variables

EVERY_ARGUMENT = dict(
    learning_rate=0.02,
    beta_2_decay=-0.6,
    epsilon_1=1e-28,
    epsilon_2=2e-3,
    clip_threshold=0.8,
    relative_step=False,
    weight_decay=0.01,
    clipnorm=1.5,
    use_ema=True,
    ema_momentum=0.95,
    ema_overwrite_frequency=7,
    loss_scale_factor=64.0,
    gradient_accumulation_steps=3,
    name="my_adafactor",
)


def comparable(config):
    config = dict(config)
    config["learning_rate"] = pytest.approx(config["learning_rate"])
    return config


def test_config_round_trip_keeps_every_argument():
    optimizer = Adafactor(**EVERY_ARGUMENT)
    config = optimizer.get_config()
    for key, value in EVERY_ARGUMENT.items():
        assert config[key] == pytest.approx(value), key
    again = Adafactor.from_config(config)
    assert comparable(again.get_config()) == config


def test_other_clipping_arguments_round_trip():
    for key in ("clipvalue", "global_clipnorm"):
        config = Adafactor(**{key: 0.3}).get_config()
        assert Adafactor.from_config(config).get_config()[key] == 0.3


def test_schedule_round_trips():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    config = Adafactor(learning_rate=schedule).get_config()
    again = Adafactor.from_config(config)
    assert isinstance(again._learning_rate, keras.optimizers.schedules.ExponentialDecay)
    assert again._learning_rate.get_config() == schedule.get_config()


def test_registered_with_keras():
    name = keras.saving.get_registered_name(Adafactor)
    assert name == "adafactor>Adafactor"
    optimizer = Adafactor(**EVERY_ARGUMENT)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is Adafactor
    assert comparable(restored.get_config()) == optimizer.get_config()
    assert type(keras.optimizers.get(name)) is Adafactor


def test_load_model_needs_no_custom_objects(tmp_path):
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 4), "float32")
    optimizer = Adafactor(learning_rate=0.05)
    model, _ = fit_small_model(optimizer, [keras.layers.Dense(4)], x, y, epochs=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is Adafactor
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    ours, theirs = saved_variables(loaded.optimizer), saved_variables(model.optimizer)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.name.endswith(b.name[-2:])  # the same _r, _c or _v
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(np.asarray(loaded.optimizer.iterations)) == 2


def test_pickle():
    optimizer = Adafactor(**EVERY_ARGUMENT)
    again = pickle.loads(pickle.dumps(optimizer))
    assert type(again) is Adafactor
    assert comparable(again.get_config()) == optimizer.get_config()


@keras.saving.register_keras_serializable(package="adafactor_tests")
def constant_rate():
    return 0.03


@pytest.mark.parametrize(
    "rate", [lambda: 0.03, constant_rate], ids=["lambda", "registered function"]
)
def test_a_rate_function_that_cannot_be_restored_is_saved_as_its_value(tmp_path, rate):
    x, y = np.ones((4, 3)), np.zeros((4, 2))
    optimizer = Adafactor(learning_rate=rate)
    model, _ = fit_small_model(optimizer, [keras.layers.Dense(2)], x, y)
    if rate is constant_rate:  # Keras restores a registered function itself
        model.save(tmp_path / "m.keras")
        loaded = keras.models.load_model(tmp_path / "m.keras")
        assert loaded.optimizer._learning_rate is constant_rate
        return
    with pytest.warns(UserWarning, match="its current value, 0.03, is saved"):
        model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading"
        loaded = keras.models.load_model(tmp_path / "m.keras")
    config = loaded.optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(0.03)
    assert config["relative_step"] is False  # the function was never capped
    for a, b in zip(state(loaded.optimizer), state(model.optimizer)):
        np.testing.assert_array_equal(a, b)


def state(optimizer):
    kept = saved_variables(optimizer)
    return [np.asarray(v) for v in kept if v.name != "learning_rate"]


def _model_and_data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 5)).astype("float32")
    y = rng.standard_normal((32, 2)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(6, activation="tanh"),
            keras.layers.Dense(2),
        ]
    )
    return model, x, y


def _compile(model, kwargs):
    model.compile(optimizer=Adafactor(**{"learning_rate": 0.05, **kwargs}), loss="mse")


RESUME_CASES = pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(use_ema=True, ema_overwrite_frequency=3, weight_decay=0.1),
        # Saved as its current value, with a warning; the state still loads.
        dict(learning_rate=lambda: 0.05),
    ],
    ids=["plain", "ema+weight_decay", "rate-function"],
)


@RESUME_CASES
def test_save_and_resume_equals_straight_run(tmp_path, kwargs):
    """train_on_batch, not fit: fit() ends by finalizing EMA weights."""
    model, x, y = _model_and_data()
    start = model.get_weights()
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)] * 2

    def train(m, part):
        for xb, yb in part:
            m.train_on_batch(xb, yb)

    _compile(model, kwargs)
    train(model, batches)
    straight = model.get_weights()

    model.set_weights(start)
    _compile(model, kwargs)
    train(model, batches[:4])
    model.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")
    train(resumed, batches[4:])
    for a, b in zip(resumed.get_weights(), straight):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


@RESUME_CASES
def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path, kwargs):
    model, x, y = _model_and_data()
    start = model.get_weights()
    fit = dict(epochs=4, batch_size=8, shuffle=False, verbose=0)

    _compile(model, kwargs)
    model.fit(x, y, **fit)
    straight = model.get_weights()

    model.set_weights(start)
    _compile(model, kwargs)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, callbacks=[backup, _Interrupt()], **fit)
    # A new process would build the model afresh: so do we.
    fresh, _, _ = _model_and_data()
    _compile(fresh, kwargs)
    fresh.fit(x, y, callbacks=[backup], **fit)
    for a, b in zip(fresh.get_weights(), straight):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# Option changes that change the optimizer's state, and whether the saved
# state can still be what the new optimizer holds.
STATE_CHANGES = [
    ({}, dict(beta_1=0.9), False),
    ({}, dict(factored=False), False),
    ({}, dict(min_dim_size_to_factor=6), False),
    ({}, dict(stochastic_rounding=True), False),
    # Only the learning-rate variable differs: the rest loads.
    ({}, dict(learning_rate=lambda: 0.05), True),
    # The same momentum, kept in another precision.
    (dict(beta_1=0.9), dict(beta_1=0.9, momentum_dtype="bfloat16"), True),
]


@pytest.mark.parametrize("skip_mismatch", [False, True], ids=["strict", "skip"])
@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
@pytest.mark.parametrize("backwards", [False, True], ids=["a-to-b", "b-to-a"])
@pytest.mark.parametrize(
    "a, b, loads", STATE_CHANGES, ids=[",".join(b) for _, b, _ in STATE_CHANGES]
)
def test_a_state_saved_with_other_options_loads_whole_or_not_at_all(
    tmp_path, a, b, loads, backwards, suffix, skip_mismatch
):
    if backwards:
        a, b = b, a
    model, x, y = _model_and_data()
    _compile(model, a)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / f"a{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a learning-rate function's value
        model.save(path) if suffix == ".keras" else model.save_weights(path)

    other, _, _ = _model_and_data()
    _compile(other, b)
    other.optimizer.build(other.trainable_variables)
    before = state(other.optimizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other.load_weights(path, skip_mismatch=skip_mismatch)
    skipped = [w for w in caught if "Skipping variable loading" in str(w.message)]
    for got, weights in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, weights)
    want = state(model.optimizer) if loads else before
    assert len(skipped) == (0 if loads else 1)
    # The warning says what differs.
    assert all(re.search(DIFFERENCE, str(w.message)) for w in skipped)
    assert len(state(other.optimizer)) == len(want)
    for got, value in zip(state(other.optimizer), want):
        got, value = (np.asarray(v, "float32") for v in (got, value))
        np.testing.assert_allclose(got, value, rtol=1e-2 if loads else 0)


# What a skipped load says differs: the counts, or variables and shapes.
DIFFERENCE = (
    r"it has \d+ variables and the saved state \d+"
    r"|'[^']+' is (float|int) of shape \([\d, ]*\) where the saved value is"
)


def test_a_skipped_load_names_the_variables_that_differ():
    """Where the counts agree, the message names the variables whose shape
    or kind of number differs, not only how many there are."""
    variables = [
        keras.Variable(np.zeros(s, "float32"), name=f"x{i}")
        for i, s in enumerate([(3,), (4, 2), (5,)])
    ]
    saved = [np.zeros(3, "float32"), np.zeros(4, "float32"), np.zeros(5, "int32")]
    optimizer = Adafactor(factored=False)
    optimizer.build(variables)
    store = {str(i): v.numpy() for i, v in enumerate(optimizer.variables)}
    # The second v and the third are the saved values of another optimizer.
    store[str(len(store) - 2)], store[str(len(store) - 1)] = saved[1], saved[2]
    with pytest.warns(UserWarning, match="Skipping variable loading") as caught:
        optimizer.load_own_variables(store)
    message = str(caught[0].message)
    assert (
        "x1_v' is float of shape (4, 2) where the saved value is float of shape (4,)"
        in message
    )
    assert (
        "x2_v' is float of shape (5,) where the saved value is int of shape (5,)"
        in message
    )


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["default", "options"])
def test_files_saved_by_an_earlier_release_load_whole(name):
    """Models saved by main at 95e4c2f (momentum, factor_dims="largest" and
    an exclusion by name among the options) load with their optimizer
    state whole, on every backend, and train on."""
    path = FIXTURES / f"main-95e4c2f-{name}.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading"
        model = keras.models.load_model(path)
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as f:
        with h5py.File(f) as weights:
            group = weights["optimizer"]["vars"]
            saved = [np.asarray(group[str(i)]) for i in range(len(group))]
    optimizer = model.optimizer
    assert isinstance(optimizer, Adafactor)
    assert [tuple(s.shape) for s in saved] == [
        tuple(v.shape) for v in optimizer.variables
    ]
    for variable, value in zip(optimizer.variables, saved):
        np.testing.assert_array_equal(np.asarray(variable.numpy(), value.dtype), value)
    if name == "options":
        assert optimizer.beta_1 == 0.9 and optimizer.factor_dims == "largest"
        kinds = [v.name.rsplit("_", 1)[1] for v in optimizer.variables[2:]]
        assert kinds[:2] == ["v", "m"]  # the embeddings, excluded by name
    data = np.load(FIXTURES / "main-95e4c2f-data.npz")
    model.fit(data["x"], data["y"], batch_size=8, epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert int(optimizer.iterations) == 4
