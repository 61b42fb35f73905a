"""What the last step did (record_statistics=True, Adafactor.statistics) and
StatisticsLogger, which writes it into fit()'s logs: checked against the
float64 oracle."""

import zipfile

import h5py
import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor, StatisticsLogger
from adafactor.statistics import STATISTICS
from helpers import BACKEND, saved_variables, to_numpy
from tools.harness import CompiledStep, state_variables

pytestmark = pytest.mark.update_rule

COMPILERS = {
    "tensorflow": ["eager", "default"],
    "jax": ["eager", "default"],
    "torch": ["eager", pytest.param("default", marks=pytest.mark.slow)],
}[BACKEND]

# Gradients that grow for the first variables and shrink for the others:
# RMS(U_t) climbs above 1 for the first and falls below it for the others,
# so that a clip_threshold of 1.1 clips some variables and not others.
SHAPES = [(6, 4), (5,), (3, 4, 2), (4, 6), (7,)]
GROWTH = [1.6, 1.8, 1.5, 0.6, 0.5]
STEPS = 8
THRESHOLD = 1.1


def problem():
    rng = np.random.default_rng(5)
    x0s = [rng.standard_normal(s) for s in SHAPES]
    grads = [
        [rng.standard_normal(s) * k**t for s, k in zip(SHAPES, GROWTH)]
        for t in range(STEPS)
    ]
    return x0s, grads


def oracle_statistics(x0s, grads, **kwargs):
    """Per step: rho_t, the mean RMS(U_t) and the fraction clipped."""
    opt = oracle.Adafactor(**kwargs)
    xs, out = list(x0s), []
    for t, step_grads in enumerate(grads, start=1):
        xs = [opt.step(i, x, g, t) for i, (x, g) in enumerate(zip(xs, step_grads))]
        rms_u = np.array([opt.update_rms[i] for i in range(len(xs))])
        # Far from the threshold: float32 and float64 decide alike.
        assert np.min(np.abs(rms_u / kwargs["clip_threshold"] - 1)) > 1e-3
        clipped = np.mean(rms_u > kwargs["clip_threshold"])
        out.append((opt.rho, np.mean(rms_u), clipped))
    return out


def our_statistics(optimizer, x0s, grads, compiler):
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    step = CompiledStep(optimizer, variables, compiler)
    out = []
    for step_grads in grads:
        step([keras.ops.convert_to_tensor(g.astype("float32")) for g in step_grads])
        if step.backend == "jax":
            # Read from the values stateless_apply returned, as a JAX loop
            # does; the optimizer's variables still hold the first ones.
            statistics = optimizer.statistics(step._state)
        else:
            statistics = optimizer.statistics()
        out.append({k: float(to_numpy(v)) for k, v in statistics.items()})
    return out


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("relative_step", [True, False], ids=["relative", "absolute"])
def test_statistics_match_the_oracle(compiler, relative_step):
    # With relative_step, rho_t = min(0.45, 1/sqrt(t)) is capped from t = 5.
    kwargs = dict(
        learning_rate=0.45, clip_threshold=THRESHOLD, relative_step=relative_step
    )
    x0s, grads = problem()
    want = oracle_statistics(x0s, grads, **kwargs)
    optimizer = Adafactor(record_statistics=True, **kwargs)
    got = our_statistics(optimizer, x0s, grads, compiler)
    for t, ((rho, rms_u, clipped), ours) in enumerate(zip(want, got), start=1):
        assert ours["adafactor_step_size"] == pytest.approx(rho, rel=1e-6), t
        assert ours["adafactor_update_rms"] == pytest.approx(rms_u, rel=1e-4), t
        assert ours["adafactor_clip_fraction"] == pytest.approx(clipped, abs=1e-6), t
        assert ours["adafactor_skipped_steps"] == 0
    # The problem tests what it should: a cap that bites, some variables
    # clipped and others not.
    rates = [rho for rho, _, _ in want]
    assert (rates[-1] < 0.45) == relative_step
    assert any(0 < clipped < 1 for _, _, clipped in want)


@pytest.mark.parametrize("compiler", COMPILERS)
def test_skipped_steps_are_counted_and_change_nothing_else(compiler):
    x0s, grads = problem()
    optimizer = Adafactor(skip_nonfinite=True, record_statistics=True)
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    step = CompiledStep(optimizer, variables, compiler)

    def run(step_grads):
        step([keras.ops.convert_to_tensor(g.astype("float32")) for g in step_grads])
        step.sync()
        return {k: float(to_numpy(v)) for k, v in optimizer.statistics().items()}

    before = run(grads[0])
    poisoned = [g.copy() for g in grads[1]]
    poisoned[2][1, 0, 1] = np.nan
    for count in (1, 2):
        after = run(poisoned)
        assert after == dict(before, adafactor_skipped_steps=count)
    assert int(to_numpy(optimizer.iterations)) == 1
    after = run(grads[1])
    assert after["adafactor_skipped_steps"] == 2
    assert after["adafactor_update_rms"] != before["adafactor_update_rms"]


def test_statistics_are_values_that_later_steps_leave_alone():
    """A loop that keeps each step's dict and converts them afterwards
    reads each step's values, not the last one's four times."""
    optimizer = Adafactor(learning_rate=2.0, record_statistics=True)
    variables = [keras.Variable(np.ones((3, 4), "float32"))]
    kept = []
    for _ in range(4):
        optimizer.apply([keras.ops.ones((3, 4))], variables)
        kept.append(optimizer.statistics())
    rates = [float(to_numpy(d["adafactor_step_size"])) for d in kept]
    # rho_t = min(2, 1/sqrt(t)).
    np.testing.assert_allclose(rates, 1 / np.sqrt([1, 2, 3, 4]), rtol=1e-6)
    assert all(not isinstance(v, keras.Variable) for v in kept[0].values())


def test_statistics_refuse_a_list_that_is_not_this_optimizers():
    """The values of a LossScaleOptimizer's variables hold its own first:
    read as this optimizer's, every statistic would be another's value."""
    optimizer = Adafactor(record_statistics=True)
    wrapped = keras.optimizers.LossScaleOptimizer(optimizer)
    variables = [keras.Variable(np.ones((3, 4), "float32"))]
    wrapped.build(variables)
    values = [v.value for v in wrapped.variables]
    for wrong in (values, values[:2]):
        with pytest.raises(
            ValueError, match=f"optimizer's {len(optimizer.variables)} "
        ):
            optimizer.statistics(wrong)
    mine = values[-len(optimizer.variables) :]
    assert set(optimizer.statistics(mine)) == set(STATISTICS)


def test_gradient_accumulation_records_the_update_steps_only():
    x0s, grads = problem()
    optimizer = Adafactor(
        learning_rate=0.9, gradient_accumulation_steps=2, record_statistics=True
    )
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    optimizer.build(variables)
    tensors = [keras.ops.convert_to_tensor(g.astype("float32")) for g in grads[0]]
    rates = []
    for _ in range(6):
        optimizer.apply(tensors, variables)
        rates.append(float(to_numpy(optimizer.statistics()["adafactor_step_size"])))
    # rho_t = min(0.9, 1/sqrt(t)), t counting the update steps, every second.
    want = [0, 0.9, 0.9, 1 / np.sqrt(2), 1 / np.sqrt(2), 1 / np.sqrt(3)]
    np.testing.assert_allclose(rates, want, rtol=1e-6)


def test_a_step_of_empty_variables_records_nothing():
    optimizer = Adafactor(record_statistics=True)
    variables = [keras.Variable(np.zeros((0, 3), "float32"))]
    optimizer.apply([keras.ops.zeros((0, 3))], variables)
    assert all(float(to_numpy(v)) == 0 for v in optimizer.statistics().values())


def test_statistics_are_refused_without_record_statistics_or_before_build():
    optimizer = Adafactor()
    with pytest.raises(ValueError, match="record_statistics=True .* Received"):
        optimizer.statistics()
    optimizer.build([keras.Variable(np.ones((2, 2), "float32"))])
    # Without them the state is what it was before the option existed.
    assert [v.name for v in optimizer.variables if v.name in STATISTICS] == []
    with pytest.raises(ValueError, match="before it is built"):
        Adafactor(record_statistics=True).statistics()


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 6)).astype("float32")
    return x, x @ rng.standard_normal((6, 2)).astype("float32")


def small_model(optimizer):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(2)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "loss-scaled"])
def test_the_logger_writes_each_epochs_last_step_into_the_history(wrapped):
    x, y = data()
    kwargs = dict(learning_rate=0.5, clip_threshold=0.9)

    def optimizer():
        ours = Adafactor(record_statistics=True, **kwargs)
        return keras.optimizers.LossScaleOptimizer(ours) if wrapped else ours

    model = small_model(optimizer())
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=[StatisticsLogger()],
    )
    # The same training an epoch at a time, read from the optimizer.
    reference = small_model(optimizer())
    inner = getattr(reference.optimizer, "inner_optimizer", reference.optimizer)
    want = {name: [] for name in STATISTICS}
    for _ in range(3):
        reference.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        for name, value in inner.statistics().items():
            want[name].append(float(to_numpy(value)))
    for name in STATISTICS:
        np.testing.assert_allclose(history.history[name], want[name], rtol=1e-5)
    # Different epochs, different steps.
    assert len(set(history.history["adafactor_step_size"])) == 3


def test_the_logger_refuses_a_model_it_cannot_log_before_training():
    x, y = data()
    model = small_model(keras.optimizers.SGD())
    with pytest.raises(TypeError, match="Adafactor optimizer. Received: .*SGD"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[StatisticsLogger()])
    model = small_model(Adafactor())
    with pytest.raises(ValueError, match="record_statistics=True"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[StatisticsLogger()])
    assert int(to_numpy(model.optimizer.iterations)) == 0


def saved_count(path):
    """How many optimizer variables a .keras file holds."""
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as f:
        with h5py.File(f) as weights:
            return len(weights["optimizer"]["vars"])


@pytest.mark.parametrize("recording", [True, False], ids=["saved-with", "without"])
def test_files_saved_with_and_without_statistics_load_into_each_other(
    tmp_path, recording
):
    x, y = data()
    model = small_model(Adafactor(skip_nonfinite=True, record_statistics=recording))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    # The file holds the state of an optimizer without statistics: the step
    # count, the rate and one r and c or v per variable.
    assert saved_count(path) == 2 + len(state_variables(model.optimizer)) == 2 + 6
    # Loaded into an optimizer made the other way, the state is all there.
    other = small_model(Adafactor(skip_nonfinite=True, record_statistics=not recording))
    other.optimizer.build(other.trainable_variables)
    other.load_weights(path)
    for a, b in zip(saved_variables(other.optimizer), saved_variables(model.optimizer)):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    if not recording:
        statistics = other.optimizer.statistics()
        assert all(float(to_numpy(v)) == 0 for v in statistics.values())
        # And it trains on from there.
        other.fit(x, y, epochs=1, batch_size=16, verbose=0)
        rate = other.optimizer.statistics()["adafactor_step_size"]
        assert float(to_numpy(rate)) > 0


def test_without_statistics_a_loss_scaled_file_holds_what_it_held_before(tmp_path):
    # A LossScaleOptimizer saves its inner optimizer's variables itself.
    x, y = data()
    model = small_model(keras.optimizers.LossScaleOptimizer(Adafactor()))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    names = [v.name for v in model.optimizer.variables]
    assert saved_count(path) == len(names) and not set(names) & set(STATISTICS)
    loaded = keras.models.load_model(path)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
