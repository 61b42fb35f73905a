"""Optimizer state: the factored floor of the paper, and nothing more. (That
large matrices are reduced in blocks, with no temporary of their size, is
tested in test_kernels.py.)"""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from tools.harness import elements, state_variables, transformer

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
