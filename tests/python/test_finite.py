"""Finite wherever the documented algorithm is finite, on every backend.

TensorFlow and XLA on CPU (and GPUs) flush subnormal numbers to zero, so an
intermediate that is merely tiny on torch is 0 there. Each test compares
with the float64 oracle, never with another optimizer's failure.
"""

import keras
import numpy as np
import pytest
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st

import oracle
from adafactor import Adafactor
from adafactor.options import EPSILON_1_RANGE
from helpers import (
    BACKEND,
    TOLERANCE,
    apply_steps,
    compiled_trajectory,
    fit_small_model,
    max_rel_diff,
    random_problem,
    saved_variables,
    to_numpy,
)

pytestmark = pytest.mark.update_rule

# How each backend runs an update: eager, and compiled as fit() compiles.
COMPILERS = {
    "tensorflow": ["eager", "default"],
    "jax": ["default"],
    "torch": ["eager"],
}[BACKEND]


def zero_row_among_large(dtype):
    # The row factor of the zero row, r / mean(r), is ~1e-40: subnormal.
    # float16 holds gradients up to 65504 only.
    rng = np.random.default_rng(0)
    x0 = to_numpy(keras.ops.cast(rng.standard_normal((1000, 4)), dtype))
    g = np.full((1000, 4), 3e4 if dtype == "float16" else 3e5)
    g[7] = 0.0
    return x0, [g]


def one_entry(dtype):
    # Every row and column of the gradient but one is zero, for 3 steps.
    x0 = np.random.default_rng(2).standard_normal((4, 4))
    g = np.zeros((4, 4))
    g[1, 2] = 0.5
    return x0, [g] * 3


@pytest.mark.parametrize(
    "problem, dtype",
    [(zero_row_among_large, d) for d in ("float32", "float16", "bfloat16")]
    + [(one_entry, "float32")],
    ids=["zero-row-float32", "zero-row-float16", "zero-row-bfloat16", "one-entry"],
)
def test_zero_gradient_entries_leave_their_weights_alone(problem, dtype):
    x0, grads = problem(dtype)
    got = apply_steps(Adafactor(), [x0], [[g] for g in grads], dtype=dtype)
    want = oracle.trajectory(x0, grads)
    tolerance = TOLERANCE if dtype == "float32" else 1e-2
    for step_got, step_want in zip(got, want):
        assert np.all(np.isfinite(step_got[0]))
        assert max_rel_diff(step_got[0], step_want) <= tolerance
    moved = got[-1][0] != to_numpy(keras.ops.cast(x0, dtype))
    assert not moved[grads[-1] == 0].any()
    if dtype == "float32":  # a low precision weight may round back
        assert moved[grads[-1] != 0].all()


def _zero_pattern(draw, shape, rng):
    """All-zero rows, columns or slices (at least one), one-hot, or none."""
    mask = np.ones(shape)

    def some(n):
        chosen = rng.random(n) < 0.5
        chosen[rng.integers(n)] = True
        return chosen

    kind = draw(st.sampled_from(["rows", "columns", "slices", "one-hot", "none"]))
    if kind == "rows" and len(shape) >= 2:
        mask[..., some(shape[-2]), :] = 0
    elif kind == "columns":
        mask[..., some(shape[-1])] = 0
    elif kind == "slices":
        mask[some(shape[0])] = 0
    elif kind == "one-hot":
        hot = rng.integers(0, shape[-1], shape[:-1])
        mask = (np.arange(shape[-1]) == hot[..., None]).astype(float)
    return mask


def _spiky(draw, shape, rng):
    """Entries of one scale (1e-30 to 1) and one to three spikes among them
    (up to 1e19), as real gradients are: one huge entry among tiny ones."""
    g = rng.standard_normal(shape) * 10.0 ** draw(st.integers(-30, 0))
    for _ in range(draw(st.integers(1, 3))):
        at = tuple(int(rng.integers(n)) for n in shape)
        g[at] = rng.choice([-1, 1]) * 10.0 ** draw(st.integers(1, 19))
    return g


# Where float32 stops: its largest value, with room for rounding.
FLOAT32_RANGE = float(np.finfo("float32").max) / 8
# epsilon_1 across the range the rules allow.
EPSILON_1 = st.one_of(
    st.just(1e-30),
    st.integers(-30, 37).map(lambda e: 10.0**e),
    st.sampled_from(EPSILON_1_RANGE),
)


@st.composite
def problems(draw):
    """A variable and a few steps of gradients of wildly varying scale, up
    to where squares overflow float32 and, on long rows or columns (thousands
    of entries), where their sums would; or spiky ones."""
    rank = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    if draw(st.booleans()):
        shape = [min(d, 3) for d in shape[-3:]]
        shape[draw(st.sampled_from([-1, -2] if len(shape) > 1 else [-1]))] = draw(
            st.integers(2000, 5000)
        )
    shape = tuple(shape)
    steps = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    grads = []
    for _ in range(steps):
        if draw(st.booleans()):
            grads.append(_spiky(draw, shape, rng) * _zero_pattern(draw, shape, rng))
            continue
        exponent = draw(st.sampled_from([19, 18, 17, 15, 10, 5, 0, -5, -15, -20, -30]))
        grads.append(
            rng.standard_normal(shape)
            * 10.0**exponent
            * _zero_pattern(draw, shape, rng)
        )
    if draw(st.booleans()):  # a spike, then normal steps
        grads = [g / max(np.abs(g).max(), 1e-300) for g in grads]
        grads.insert(0, grads[0] * 1e15)
    kwargs = draw(
        st.fixed_dictionaries(
            {
                "learning_rate": st.sampled_from([1e-3, 0.1, 1.0]),
                "relative_step": st.booleans(),
                "clip_threshold": st.sampled_from([1.0, 1e-3]),
                "beta_2": st.sampled_from([None, None, 0.999, 0.5]),
                "beta_2_cap": st.sampled_from([None, None, 0.3]),
                "factor_dims": st.sampled_from(["last", "largest"]),
                "epsilon_1": EPSILON_1,
            }
        )
    )
    x_scale = 10.0 ** draw(st.sampled_from([0, 0, 10, 18]))
    return rng.standard_normal(shape) * x_scale, [_normal(g) for g in grads], kwargs


def _normal(g):
    """g as float32 holds it on every backend: entries below float32's
    normal range are 0 where subnormals flush to zero (TensorFlow, XLA,
    GPUs), so they are 0 here."""
    g = g.astype("float32").astype(np.float64)
    return np.where(np.abs(g) < 2.0**-126, 0.0, g)


ZERO_ROW = np.full((4, 3), 3e5)
ZERO_ROW[1] = 0.0
LONG = np.random.default_rng(5).standard_normal((3000, 3)) * 1e19
ONE_LARGE_COLUMN = np.full((8, 8), 1e-10)
ONE_LARGE_COLUMN[:, 0] = 1e12
# One spike among small entries: mean(R_t) / C_t is huge where G_t^2 / R_t is
# tiny (issue: every weight NaN at epsilon_1 = 1e-8).
SPIKE = np.full((64, 64), 1e-3)
SPIKE[0, 0] = 1e4
ONES_AND_SPIKE = np.ones((8, 8))
ONES_AND_SPIKE[0, 0] = 1e17


@pytest.mark.slow
@pytest.mark.parametrize("compiler", COMPILERS)
@settings(max_examples=40, deadline=None, derandomize=True)
@given(problem=problems())
@example(problem=(np.ones((4, 3)), [ZERO_ROW], {}))
@example(problem=(np.ones(5), [np.array([0, 1e15, 0, 1e-30, 1])] * 3, {}))
# Sums of squares overflow float32 here; their means do not.
@example(
    problem=(np.ones((4, 4096)), [np.full((4, 4096), 3e17)], {"learning_rate": 0.01})
)
@example(problem=(np.full((4, 1000), 1e18), [np.ones((4, 1000))], {}))
@example(problem=(np.ones((3000, 3)), [LONG, LONG * 0.5], {}))
# One column 1e22 times larger than the rest: their terms of the update's
# mean square must not fall below float32's normal range.
@example(problem=(np.ones((8, 8)), [ONE_LARGE_COLUMN * 0.5, ONE_LARGE_COLUMN], {}))
@example(
    problem=(np.ones((64, 64)), [SPIKE], {"learning_rate": 0.1, "epsilon_1": 1e-8})
)
@example(problem=(np.ones((8, 8)), [ONES_AND_SPIKE], {}))
@example(problem=(np.ones((4, 4)), [np.ones((4, 4))] * 2, {"epsilon_1": 10.0}))
def test_finite_and_right_wherever_float32_holds_the_oracle(compiler, problem):
    """The weights and the update's RMS (the statistic) agree with the
    float64 oracle wherever its statistics, update, RMS and weights are
    inside float32's range; the examples where they are not are counted
    (hypothesis's statistics) and drawn again, not passed."""
    x0, grads, kwargs = problem
    path, want = oracle.run(x0, grads, **kwargs)
    in_range = want.largest <= FLOAT32_RANGE and np.all(
        np.abs(path[-1]) <= FLOAT32_RANGE
    )
    event("checked" if in_range else "not checked: beyond float32's range")
    assume(in_range)
    optimizer = Adafactor(record_statistics=True, **kwargs)
    got = compiled_trajectory(optimizer, [x0], [[g] for g in grads], compiler)
    assert np.all(np.isfinite(got[0]))
    assert max_rel_diff(got[0], path[-1]) <= TOLERANCE
    # Squares of entries of U_t / sqrt(size) below float32's normal range
    # are lost to its mean square: at most size * 2^-126 in all.
    got_rms = float(to_numpy(optimizer.statistics()["adafactor_update_rms"]))
    lost = np.sqrt(x0.size * 2.0**-126)
    assert abs(got_rms - want.update_rms[0]) <= 1e-5 * want.update_rms[0] + lost


def test_fit_on_one_hot_features_with_large_targets():
    # Categories absent from a batch give all-zero kernel rows, while the
    # others carry gradients of ~1e5.
    rng = np.random.default_rng(3)
    categories = rng.integers(0, 50, 512)
    x = np.eye(50, dtype="float32")[categories]
    y = (1e5 * (1 + categories % 7)).astype("float32")[:, None]
    model, losses = fit_small_model(
        Adafactor(learning_rate=0.5, relative_step=False),
        [keras.layers.Dense(1)],
        x,
        y,
        epochs=3,
    )
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert losses[-1] < 0.5 * losses[0]


def test_least_epsilon_1_stays_finite_over_many_steps():
    # (1 - beta_t) * epsilon_1 soon flushes to zero; r stays >= epsilon_1.
    x0 = np.ones((3, 4))
    g = np.zeros((3, 4))
    g[0] = 1.0
    got = compiled_trajectory(
        Adafactor(epsilon_1=EPSILON_1_RANGE[0]), [x0], [[g]] * 60, COMPILERS[-1]
    )
    assert np.all(np.isfinite(got[0]))
    np.testing.assert_array_equal(got[0][1:], x0[1:])


def test_gradients_beyond_float32_squares_are_kept_in_range_by_clipvalue():
    # |g| > ~1.8e19 squares to inf in float32 (a documented limit), in our
    # statistics as in Keras's clipnorm; clipvalue bounds the gradient before
    # the update without squaring it, so the weights still move correctly.
    x0s, grads = random_problem([(3, 4), (4,)], steps=3, seed=4)
    grads = [[g * 1e25 for g in step] for step in grads]
    got = apply_steps(Adafactor(learning_rate=0.1, clipvalue=1.0), x0s, grads)
    for i in range(2):
        clipped = [np.clip(g[i], -1.0, 1.0) for g in grads]
        want = oracle.trajectory(x0s[i], clipped, learning_rate=0.1)
        assert max_rel_diff(got[-1][i], want[-1]) <= TOLERANCE


@pytest.mark.parametrize("shape", [(4, 4), (5,)], ids=["factored", "full"])
def test_a_fast_beta_2_decay_keeps_its_share_of_the_new_gradient(shape):
    # t^-8 falls below float32's resolution of 1 by step 9: 1 - beta_2_t
    # must not be formed as 1 minus a beta_2_t that rounds to 1.
    x0s, grads = random_problem([shape], steps=12, seed=6)
    got = compiled_trajectory(Adafactor(beta_2_decay=-8.0), x0s, grads, COMPILERS[-1])
    want = oracle.trajectory(x0s[0], [g[0] for g in grads], beta_2_decay=-8.0)
    assert np.all(np.isfinite(got[0]))
    assert max_rel_diff(got[0], want[-1]) <= TOLERANCE


def _fit_with_a_batch(poisoned, optimizer, layers, x, y, **compile_options):
    """fit() over the batches of 8 rows of (x, y), with a batch of NaN
    targets after the second if `poisoned`; the weights and the optimizer."""
    if poisoned:
        x = np.concatenate([x[:16], x[:8], x[16:]])
        y = np.concatenate([y[:16], np.full_like(y[:8], np.nan), y[16:]])
    tokens = np.issubdtype(x.dtype, np.integer)
    inputs = keras.Input(x.shape[1:], dtype="int32" if tokens else None)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([inputs, *layers()])
    model.compile(optimizer=optimizer, loss="mse", **compile_options)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model.get_weights(), model.optimizer


def _dense():
    return [keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(2)]


def _embedding():
    return [
        keras.layers.Embedding(30, 5),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ]


@pytest.mark.parametrize(
    "layers, options, wrap",
    [
        (_dense, {}, False),
        (_dense, {"beta_1": 0.9, "gradient_accumulation_steps": 2}, False),
        (_embedding, {}, False),
        (_dense, {}, True),
    ],
    ids=["dense", "momentum-accumulation", "embedding", "loss-scale"],
)
@pytest.mark.parametrize("jit_compile", [False, "auto"], ids=["eager", "compiled"])
def test_a_poisoned_batch_is_skipped_whole(layers, options, wrap, jit_compile):
    """With skip_nonfinite, fit() over a batch of NaN targets among others
    ends with the weights and state of fit() without it: every weight,
    statistic, momentum, accumulator and `iterations`."""
    if jit_compile and BACKEND == "torch":
        pytest.skip("torch: fit() runs eagerly")
    rng = np.random.default_rng(40)
    if layers is _embedding:
        x = rng.integers(0, 30, (32, 3))
    else:
        x = rng.standard_normal((32, 4)).astype("float32")
    y = rng.standard_normal((32, 2)).astype("float32")
    runs = []
    for poisoned in (True, False):
        optimizer = Adafactor(learning_rate=0.05, skip_nonfinite=True, **options)
        if wrap:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        runs.append(
            _fit_with_a_batch(
                poisoned, optimizer, layers, x, y, jit_compile=jit_compile
            )
        )
    (skipped, with_nan), (weights, without) = runs
    for a, b in zip(skipped, weights):
        assert np.all(np.isfinite(a)) and max_rel_diff(a, b) <= 1e-6
    inner = getattr(with_nan, "inner_optimizer", with_nan)
    other = getattr(without, "inner_optimizer", without)
    assert int(inner.iterations) == int(other.iterations) > 0
    for a, b in zip(saved_variables(inner), saved_variables(other)):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-6, atol=0)


def test_without_skip_nonfinite_a_poisoned_batch_reaches_the_weights():
    # The test above can fail: the same batch, not skipped, is not harmless.
    rng = np.random.default_rng(40)
    x = rng.standard_normal((32, 4)).astype("float32")
    y = rng.standard_normal((32, 2)).astype("float32")
    weights, _ = _fit_with_a_batch(True, Adafactor(learning_rate=0.05), _dense, x, y)
    assert not all(np.all(np.isfinite(w)) for w in weights)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute")
def test_skip_nonfinite_is_refused_under_a_tf_distribute_strategy():
    import tensorflow as tf

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        variable = keras.Variable(np.ones((3, 4), "float32"))
        optimizer = Adafactor(skip_nonfinite=True)
        gradient = keras.ops.ones((3, 4))
        with pytest.raises(ValueError, match="skip_nonfinite=True is not supported"):
            optimizer.apply([gradient], [variable])


@pytest.mark.parametrize(
    "compiler", ["eager"] if BACKEND == "torch" else ["eager", "default"]
)
def test_a_step_skipped_or_taken_by_apply_alone(compiler):
    """Outside fit(): eager (on JAX too, where no trace must reach the
    variables) and compiled; an empty variable among the others."""
    shapes = [(3, 4), (0, 4), (5,)]
    x0s, grads = random_problem(shapes, steps=2, seed=41)
    poisoned = [g.copy() for g in grads[1]]
    poisoned[0][1, 2] = np.inf
    steps = [grads[0], poisoned, grads[1]]
    got = compiled_trajectory(Adafactor(skip_nonfinite=True), x0s, steps, compiler)
    want = compiled_trajectory(Adafactor(), x0s, [grads[0], grads[1]], compiler)
    for a, b in zip(got, want):
        assert np.all(np.isfinite(a)) and max_rel_diff(a, b) <= 1e-6
