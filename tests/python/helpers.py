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


BOOKKEEPING = ("iteration", "learning_rate")


def state_variables(optimizer):
    """The optimizer's state: its variables less the step count and rate."""
    return [v for v in optimizer.variables if v.name not in BOOKKEEPING]


def elements(variables):
    """How many numbers the variables hold."""
    return int(sum(np.prod(tuple(v.shape)) for v in variables))


def transformer(vocab=16, length=12, d_model=64, heads=4, ff=128, blocks=2):
    """The reference Transformer encoder of the tests and the benchmark.

    Token embeddings plus sinusoidal positions (Vaswani et al., 2017), then
    `blocks` of self-attention and a feed-forward layer, each with a residual
    connection and layer normalisation; a softmax over the vocabulary at each
    position, in float32 under any dtype policy.
    """
    tokens = keras.Input((length,), dtype="int32")
    angle = np.arange(length)[:, None] / 10000 ** (
        2 * np.arange(d_model // 2)[None, :] / d_model
    )
    positions = np.concatenate([np.sin(angle), np.cos(angle)], 1).astype("float32")
    x = keras.layers.Embedding(vocab, d_model)(tokens)
    x = x + keras.ops.cast(positions, x.dtype)
    for _ in range(blocks):
        attention = keras.layers.MultiHeadAttention(heads, d_model // heads)
        x = keras.layers.LayerNormalization()(x + attention(x, x))
        h = keras.layers.Dense(ff, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(d_model)(h))
    out = keras.layers.Dense(vocab, activation="softmax", dtype="float32")(x)
    return keras.Model(tokens, out)
