"""Optimizer state: the factored floor of the paper, and nothing more; large
matrices reduced (and on torch updated) in blocks, with no temporary of
their size."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from adafactor import optimizer as optimizer_module
from helpers import (
    BACKEND,
    apply_steps,
    compiled_trajectory,
    elements,
    max_rel_diff,
    random_problem,
    state_variables,
    to_numpy,
    transformer,
)

SHAPES = [(), (5,), (3, 4), (2, 3, 4), (6, 5)]
FACTORED = [[()], [(5,)], [(3,), (4,)], [(2, 3), (2, 4)], [(6,), (5,)]]


def flat(per_variable):
    return [shape for shapes in per_variable for shape in shapes]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, flat(FACTORED)),
        # Factored only where both of the last two dimensions are >= 4.
        (dict(min_dim_size_to_factor=4), [(), (5,), (3, 4), (2, 3, 4), (6,), (5,)]),
        (dict(factored=False), SHAPES),
        # Momentum: one buffer the size of each variable, after its statistics.
        (dict(beta_1=0.9), flat(f + [s] for f, s in zip(FACTORED, SHAPES))),
    ],
    ids=["default", "min_dim_size_to_factor", "factored=False", "beta_1"],
)
def test_state_shapes(kwargs, expected):
    variables = [keras.Variable(np.zeros(s, "float32")) for s in SHAPES]
    optimizer = Adafactor(**kwargs)
    optimizer.build(variables)
    assert [tuple(v.shape) for v in state_variables(optimizer)] == expected


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_momentum_buffer_takes_momentum_dtype(dtype):
    variables = [keras.Variable(np.zeros(s, "float32")) for s in SHAPES]
    optimizer = Adafactor(beta_1=0.9, momentum_dtype=dtype)
    optimizer.build(variables)
    buffers = [v for v in optimizer.variables if v.name.endswith("_m")]
    assert [v.dtype for v in buffers] == [dtype] * len(SHAPES)


def test_a_transformer_keeps_the_factored_floor_named_after_its_variables():
    model = transformer(vocab=50, length=8, d_model=16, heads=2, ff=64, blocks=1)
    params = model.trainable_variables
    optimizer = Adafactor()
    optimizer.build(params)
    shapes = [tuple(v.shape) for v in params]
    assert any(len(s) == 3 for s in shapes)  # attention kernels
    state = state_variables(optimizer)
    assert elements(state) == oracle.state_size(shapes) < 0.25 * elements(params)
    expected = []
    for var in params:
        prefix = var.path.replace("/", "_")
        expected += [f"{prefix}_{s}" for s in ("r", "c") if len(var.shape) >= 2]
        expected += [f"{prefix}_v"] if len(var.shape) < 2 else []
    assert [v.name for v in state] == expected
    # keras.optimizers.Adafactor keeps a full-size copy on top of that.
    theirs = keras.optimizers.Adafactor()
    theirs.build(params)
    assert elements(state_variables(theirs)) > elements(params)


# With a block of 6 elements: blocks of one row (5, 7), of three rows and a
# rest of one (7, 2); one block (2, 3); rank 3 and rank 1 are not split.
BLOCKED = [(5, 7), (7, 2), (2, 3), (2, 3, 4), (9,)]


@pytest.mark.parametrize(
    "compiler, dtype",
    [("eager", "float32"), ("eager", "bfloat16"), ("default", "float32")],
    ids=["eager", "eager-bfloat16", "compiled"],
)
def test_large_matrices_are_reduced_in_blocks(monkeypatch, compiler, dtype):
    """A matrix larger than a block is reduced block by block (and on torch
    updated in place, block by block); the result is the float64 oracle's."""
    if compiler != "eager" and BACKEND == "torch":
        pytest.skip("torch.compile unrolls the blocks here (80 s); test_compiled")
    monkeypatch.setattr(optimizer_module, "_BLOCK", 6)
    seen = []
    reduce_block = optimizer_module._block_square_sums

    def spy(x, *args):
        seen.append(tuple(x.shape))
        return reduce_block(x, *args)

    monkeypatch.setattr(optimizer_module, "_block_square_sums", spy)
    written = []
    subtract = optimizer_module._subtract_in_place

    def spy_write(variable, *args):
        written.append(tuple(variable.shape))
        subtract(variable, *args)

    monkeypatch.setattr(optimizer_module, "_subtract_in_place", spy_write)
    x0s, grads = random_problem(BLOCKED, steps=5, seed=3)
    x0s = [to_numpy(keras.ops.cast(x, dtype)) for x in x0s]
    optimizer = Adafactor(learning_rate=0.05)
    if dtype == "float32":
        got = compiled_trajectory(optimizer, x0s, grads, compiler)
    else:
        got = apply_steps(optimizer, x0s, grads, dtype=dtype)[-1]
    assert {(1, 7), (3, 2), (1, 2), (2, 3)} <= set(seen)
    assert all(np.prod(s) <= 7 for s in seen if len(s) == 2)
    # torch writes the blocked matrices in place; the others fuse the update.
    assert written == ([(5, 7), (7, 2)] * 5 if BACKEND == "torch" else [])
    tolerance = 2e-5 if dtype == "float32" else 3e-2
    for i, shape in enumerate(BLOCKED):
        want = oracle.trajectory(x0s[i], [g[i] for g in grads], learning_rate=0.05)
        assert max_rel_diff(got[i], want[-1]) <= tolerance, shape


def test_a_gradient_with_rows_unknown_when_traced_is_reduced_whole(monkeypatch):
    """TensorFlow traces an embedding's sparse gradient with an unknown
    number of rows; it is not split, and training goes on."""
    monkeypatch.setattr(optimizer_module, "_BLOCK", 6)
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="int32"),
            keras.layers.Embedding(50, 4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=Adafactor(), loss="mse", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (40, 3))  # batches of 16, 16 and 8
    y = rng.standard_normal((40, 1))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
