"""What the last step did (Adafactor.statistics) and StatisticsLogger, which
writes it into fit()'s logs: checked against the float64 oracle."""

import zipfile

import h5py
import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor, StatisticsLogger
from adafactor.optimizer import STATISTICS
from helpers import BACKEND, to_numpy
from tools.harness import CompiledStep, state_variables

pytestmark = pytest.mark.update_rule

COMPILERS = {
    "tensorflow": ["eager", "default"],
    "jax": ["eager", "default"],
    "torch": ["eager"],
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
        step.sync()
        out.append({k: float(to_numpy(v)) for k, v in optimizer.statistics().items()})
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
    got = our_statistics(Adafactor(**kwargs), x0s, grads, compiler)
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
    optimizer = Adafactor(skip_nonfinite=True)
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


def test_gradient_accumulation_records_the_update_steps_only():
    x0s, grads = problem()
    optimizer = Adafactor(gradient_accumulation_steps=2)
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    optimizer.build(variables)
    tensors = [keras.ops.convert_to_tensor(g.astype("float32")) for g in grads[0]]
    optimizer.apply(tensors, variables)
    assert float(to_numpy(optimizer.statistics()["adafactor_step_size"])) == 0
    optimizer.apply(tensors, variables)
    assert float(to_numpy(optimizer.statistics()["adafactor_step_size"])) > 0


def test_statistics_before_the_optimizer_is_built_are_refused():
    with pytest.raises(ValueError, match="before it is built"):
        Adafactor().statistics()


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
        ours = Adafactor(**kwargs)
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


def test_the_logger_names_a_model_without_adafactor():
    x, y = data()
    model = small_model(keras.optimizers.SGD())
    with pytest.raises(TypeError, match="Adafactor optimizer. Received: .*SGD"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[StatisticsLogger()])


def test_the_statistics_are_not_saved(tmp_path):
    x, y = data()
    model = small_model(Adafactor(skip_nonfinite=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    # The file holds the state the optimizer held before it had statistics:
    # the step count, the rate and one r and c or v per variable.
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as f:
        with h5py.File(f) as weights:
            saved = len(weights["optimizer"]["vars"])
    assert saved == 2 + len(state_variables(model.optimizer)) == 2 + 6
    loaded = keras.models.load_model(path)
    statistics = loaded.optimizer.statistics()
    assert all(float(to_numpy(v)) == 0 for v in statistics.values())
    names = set(STATISTICS)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        if a.name not in names:
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    # And it trains on from there.
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert float(to_numpy(loaded.optimizer.statistics()["adafactor_step_size"])) > 0
