"""float16 and bfloat16 variables, mixed precision policies, and the
LossScaleOptimizer: state and update stay in float32 (and so do the row
sums taken as matrix products: test_kernels.py)."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from helpers import (
    BACKEND,
    apply_steps,
    fit_small_model,
    max_rel_diff,
    random_problem,
    saved_variables,
    to_numpy,
)
from tools.harness import CompiledStep, state_variables

LOW = ["float16", "bfloat16"]


@pytest.mark.parametrize("dtype", LOW)
def test_state_is_float32_for_low_precision_variables(dtype):
    variables = [keras.Variable(np.ones(s), dtype=dtype) for s in [(3, 4), (4,)]]
    optimizer = Adafactor()
    optimizer.build(variables)
    state = state_variables(optimizer)
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
        x = np.random.default_rng(0).standard_normal((64, 6)).astype("float32")
        model, losses = fit_small_model(
            Adafactor(learning_rate=0.05),
            [keras.layers.Dense(16, "relu"), keras.layers.Dense(1)],
            x,
            epochs=8,
        )
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
    # Eager, but on JAX stateless (jax.jit of stateless_apply), as in fit().
    compiler = "default" if BACKEND == "jax" else "eager"
    step = CompiledStep(optimizer, variables, compiler)

    def apply(step_grads):
        step([g.astype("float32") for g in step_grads])
        step.sync()

    def snapshot():
        return [to_numpy(v) for v in variables + saved_variables(inner)]

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
