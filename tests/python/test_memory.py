"""Optimizer state: the factored floor of the paper, and nothing more. (That
large matrices are reduced in blocks, with no temporary of their size, is
tested in test_kernels.py.)"""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from tools.harness import elements, state_variables, transformer

SHAPES = [(), (5,), (3, 4), (2, 3, 4), (4, 2, 3), (6, 5)]
FACTORED = [
    [()],
    [(5,)],
    [(3,), (4,)],
    [(2, 3), (2, 4)],
    [(4, 2), (4, 3)],
    [(6,), (5,)],
]


def flat(per_variable):
    return [shape for shapes in per_variable for shape in shapes]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, flat(FACTORED)),
        # Factored only where both of the last two dimensions are >= 4.
        (
            dict(min_dim_size_to_factor=4),
            [(), (5,), (3, 4), (2, 3, 4), (4, 2, 3), (6,), (5,)],
        ),
        (dict(factored=False), SHAPES),
        # Momentum: one buffer the size of each variable, after its statistics.
        (dict(beta_1=0.9), flat(f + [s] for f, s in zip(FACTORED, SHAPES))),
        # The two largest dimensions: the last two but for (4, 2, 3), whose
        # rows are its first axis, kept after the batch axis.
        (
            dict(factor_dims="largest"),
            flat(FACTORED[:4] + [[(2, 4), (2, 3)]] + FACTORED[5:]),
        ),
    ],
    ids=["default", "min_dim_size_to_factor", "factored=False", "beta_1", "largest"],
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


def test_the_two_largest_dimensions_keep_fewer_statistics_of_attention():
    """On the reference Transformer, factor_dims="largest" keeps the factored
    floor of its dimensions, which optax keeps too (with its
    min_dim_size_to_factor=1, and besides a placeholder per statistic it
    does not need), and less than the last two for attention kernels."""
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    model = transformer(vocab=50, length=8, d_model=16, heads=2, ff=64, blocks=1)
    params = model.trainable_variables
    shapes = [tuple(v.shape) for v in params]
    counts = {}
    for factor_dims in ("last", "largest"):
        optimizer = Adafactor(factor_dims=factor_dims)
        optimizer.build(params)
        counts[factor_dims] = elements(state_variables(optimizer))
        assert counts[factor_dims] == oracle.state_size(shapes, factor_dims)
    state = optax.adafactor(1e-3, min_dim_size_to_factor=1).init(
        [jnp.zeros(s) for s in shapes]
    )
    leaves = [x for x in jax.tree_util.tree_leaves(state) if x.shape not in ((), (1,))]
    assert sum(x.size for x in leaves) == counts["largest"] < counts["last"]
