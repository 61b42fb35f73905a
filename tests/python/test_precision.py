"""float16 and bfloat16 variables, mixed precision policies, and the
LossScaleOptimizer: state and update stay in float32; so do row sums taken
as matrix products."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from adafactor import optimizer as optimizer_module
from helpers import BACKEND, apply_steps, max_rel_diff, random_problem, to_numpy

LOW = ["float16", "bfloat16"]


@pytest.mark.parametrize("dtype", LOW)
def test_state_is_float32_for_low_precision_variables(dtype):
    variables = [keras.Variable(np.ones(s), dtype=dtype) for s in [(3, 4), (4,)]]
    optimizer = Adafactor()
    optimizer.build(variables)
    state = optimizer.variables[2:]
    assert [v.dtype for v in state] == ["float32"] * 3


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_follows_the_oracle(dtype):
    x0s, grads = random_problem([(6, 5), (5,)], steps=10, seed=11)
    # Values exactly representable in the low precision type.
    x0s = [to_numpy(keras.ops.cast(x, dtype)) for x in x0s]
    got = apply_steps(Adafactor(learning_rate=0.05), x0s, grads, dtype=dtype)
    for i in range(2):
        want = oracle.trajectory(x0s[i], [g[i] for g in grads], learning_rate=0.05)
        assert max_rel_diff(got[-1][i], want[-1]) < 3e-2


def test_tiny_gradients_still_move_float16_weights():
    # g^2 = 1e-14 underflows in float16; in float32 it does not.
    g = np.full((8, 8), 1e-7)
    got = apply_steps(
        Adafactor(learning_rate=0.1), [np.ones((8, 8))], [[g]], dtype="float16"
    )
    assert np.all(got[0][0] < 1.0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 6)).astype("float32")
        y = x.sum(axis=1, keepdims=True)
        model = keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(1)]
        )
        model.compile(optimizer=Adafactor(learning_rate=0.05), loss="mse")
        losses = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert np.isfinite(losses[-1]) and losses[-1] < losses[0]
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    assert isinstance(optimizer, Adafactor)


def test_loss_scale_optimizer_skips_non_finite_steps():
    x0s, grads = random_problem([(4, 3), (3,)], steps=3, seed=12)
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    inner = Adafactor(learning_rate=0.05)
    optimizer = keras.optimizers.LossScaleOptimizer(inner, initial_scale=1.0)
    optimizer.build(variables)

    def apply(step_grads):
        step_grads = [g.astype("float32") for g in step_grads]
        if keras.backend.backend() != "jax":
            optimizer.apply(step_grads, variables)
            return
        # On JAX the loss-scale optimizer is stateless (as in fit()).
        values, state = optimizer.stateless_apply(
            [v.value for v in optimizer.variables],
            step_grads,
            [v.value for v in variables],
        )
        for var, value in zip(variables, values):
            var.assign(value)
        for var, value in zip(optimizer.variables, state):
            var.assign(value)

    def snapshot():
        return [to_numpy(v) for v in variables + inner.variables]

    apply(grads[0])
    before = snapshot()
    for bad in (np.inf, np.nan):
        poisoned = [g.copy() for g in grads[1]]
        poisoned[0][1, 2] = bad
        apply(poisoned)
        for a, b in zip(snapshot(), before):
            np.testing.assert_array_equal(a, b)
    # A finite step afterwards moves the weights again.
    apply(grads[2])
    assert not np.array_equal(to_numpy(variables[0]), before[0])


def _products(fn, *args):
    """The matrix-product operations in fn(*args) as the backend traces it."""
    if BACKEND == "jax":
        import jax

        eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
        return [
            e.params["precision"] for e in eqns if e.primitive.name == "dot_general"
        ]
    import tensorflow as tf

    graph = tf.function(fn).get_concrete_function(*args).graph
    return [op.type for op in graph.get_operations() if "MatMul" in op.type]


@pytest.mark.skipif(BACKEND == "torch", reason="torch sums by reduction")
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_row_and_column_sums_keep_float32_precision_on_every_device(monkeypatch, gpu):
    """Row and column sums go through a matrix product only where it keeps
    float32: JAX asks for its highest precision (GPUs would use TF32 by
    default); TensorFlow, with no such switch per product, uses it on CPUs
    alone."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("CPU")
        if gpu:
            devices = devices + [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
        monkeypatch.setattr(tf.config, "list_logical_devices", lambda: devices)
    elif gpu:
        pytest.skip("JAX's choice does not depend on the device")
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((3, 64)) * np.logspace(0, 6, 64)).astype("float32")
    weights = np.logspace(-3, 3, 3).astype("float32")
    x, w = (keras.ops.convert_to_tensor(a) for a in (matrix, weights))

    def sums(x, w):
        return (optimizer_module._row_sums(x),) + optimizer_module._column_sums(x, w)

    products = _products(sums, x, w)
    if BACKEND == "jax":
        import jax

        highest = jax.lax.Precision.HIGHEST
        assert len(products) == 2 and all(p == (highest, highest) for p in products)
    else:
        assert len(products) == (0 if gpu else 2)
    want = [matrix.sum(1), matrix.sum(0), (matrix * weights[:, None]).sum(0)]
    for got, expected in zip(sums(x, w), want):
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-6)
