"""Helpers shared by the Python tests (fixtures and hooks live in conftest).

Every suite runs on the backend named by KERAS_BACKEND; the Makefile runs
them once per backend.
"""

import keras
import numpy as np

BACKEND = keras.backend.backend()


def apply_steps(optimizer, x0s, grads, dtype="float32"):
    """Apply grads[t][i] to variable i for each step t.

    Returns the list, per step, of the variables' values as float64 arrays.
    """
    variables = [
        keras.Variable(np.asarray(x, dtype), name=f"x{i}") for i, x in enumerate(x0s)
    ]
    path = []
    for step_grads in grads:
        optimizer.apply(
            [keras.ops.convert_to_tensor(np.asarray(g, dtype)) for g in step_grads],
            variables,
        )
        path.append([to_numpy(v) for v in variables])
    return path


def to_numpy(x):
    """Any tensor or variable as a float64 array (bfloat16 included)."""
    x = keras.ops.cast(x, "float32")
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def random_problem(shapes, steps, seed=0):
    """Initial values and a sequence of gradients for variables of `shapes`."""
    rng = np.random.default_rng(seed)
    x0s = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return x0s, grads


def max_rel_diff(a, b):
    """max |a - b| / max |b|: the relative difference in the max norm."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def compiled_trajectory(optimizer, x0s, grads, compiler="default"):
    """Run the steps with the update compiled; return the final values.

    TensorFlow: XLA (`jit_compile=True`); JAX: `jax.jit` of
    `stateless_apply`, as `fit()` runs it; torch: `torch.compile`, or eager
    with `compiler="eager"` (on any backend). Gradients given as NumPy
    arrays become float32 tensors; others (sparse ones) are used as they are.
    """
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    optimizer.build(variables)

    def tensor(g):
        if isinstance(g, np.ndarray):
            return keras.ops.convert_to_tensor(g.astype("float32"))
        return g

    grads = [[tensor(g) for g in gs] for gs in grads]
    if compiler == "eager":
        for gs in grads:
            optimizer.apply(gs, variables)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        step = tf.function(lambda gs: optimizer.apply(gs, variables), jit_compile=True)
        for gs in grads:
            step(gs)
    elif BACKEND == "jax":
        import jax

        step = jax.jit(optimizer.stateless_apply)
        state = [v.value for v in optimizer.variables]
        values = [v.value for v in variables]
        for gs in grads:
            values, state = step(state, gs, values)
        for var, value in zip(variables, values):
            var.assign(value)
    else:
        import torch

        step = torch.compile(lambda gs: optimizer.apply(gs, variables))
        for gs in grads:
            step(gs)
    return [to_numpy(v) for v in variables]
