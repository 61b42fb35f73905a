"""JAX: its sparse BCOO gradients, NumPy's indexing, and its eager mode."""

import jax
from jax.experimental import sparse

from adafactor.backend.generic import (  # noqa: F401
    SQUARES_DTYPE,
    __all__,
    all_finite,
    assign_each,
    dense,
    distributed,
    fori_loop,
    nonzero_rows,
    norm,
    ops,
    over_blocks,
    product,
    readable,
    refuse_in_distributed_replica,
    scatter_rows,
    squared_product,
    squares,
    stack,
    stepping,
    subtract_each,
    subtract_product,
    targets,
)

NAME = "jax"
# Keras 3.15's accumulation and clipping cannot hold a BCOO.
OPTIONS_NEEDING_DENSE = (
    "gradient_accumulation_steps",
    "clipnorm",
    "global_clipnorm",
    "clipvalue",
)
NEGATIVE_INDICES_COUNT_FROM_END = True


def cond(pred, true_fn, false_fn):
    """jax.lax.cond, but a plain `if` where JAX runs eagerly: lax.cond
    would trace the branch that writes the variables and leave its tracers
    in them."""
    if not isinstance(pred, jax.core.Tracer):
        return true_fn() if bool(pred) else false_fn()
    return jax.lax.cond(pred, true_fn, false_fn)


def row_sparse(gradient):
    """(indices, values) of a BCOO whose only sparse axis is the first."""
    if isinstance(gradient, sparse.BCOO):
        if gradient.n_batch == 0 and gradient.n_sparse == 1:
            return gradient.indices[:, 0], gradient.data
    return None


def sparse_like(gradient, indices, values, shape):
    return sparse.BCOO((values, indices[:, None]), shape=shape)


def subtract_rows(optimizer, variable, indices, delta, gradient):
    """variable[indices] -= delta, as a BCOO (each index once)."""
    shape = tuple(int(d) for d in variable.shape)
    optimizer.assign_sub(variable, sparse_like(gradient, indices, delta, shape))
