"""Each operation the step leaves to its backend, with Keras's ops alone.
The modules of the backends take these and replace what they do their own
way."""

import contextlib

from keras import ops

__all__ = [
    "NAME",
    "ops",
    "OPTIONS_NEEDING_DENSE",
    "NEGATIVE_INDICES_COUNT_FROM_END",
    "SQUARES_DTYPE",
    "all_finite",
    "assign_each",
    "cond",
    "dense",
    "distributed",
    "fori_loop",
    "nonzero_rows",
    "norm",
    "over_blocks",
    "product",
    "readable",
    "refuse_in_distributed_replica",
    "row_sparse",
    "scatter_rows",
    "sparse_like",
    "squared_product",
    "squares",
    "stack",
    "stepping",
    "subtract_each",
    "subtract_product",
    "subtract_rows",
    "targets",
]

NAME = "generic"
# The operations the step is written in: Keras's, which a backend may give
# faster forms of (torch).
ops = ops
# Options of keras.optimizers.Optimizer that the backend applies to a dense
# gradient only: a sparse one is made dense first.
OPTIONS_NEEDING_DENSE = ()
# Whether the backend's dense form of a sparse gradient counts a negative
# index from the end, as NumPy does, or drops it.
NEGATIVE_INDICES_COUNT_FROM_END = False
# The dtype squares are summed in, None for the data's own: one that holds
# every float32's square and every sum of them exactly takes no second pass
# where a sum of float32 squares overflows (see reductions.factored_means).
SQUARES_DTYPE = None


def fori_loop(lower, upper, body, state):
    return ops.fori_loop(lower, upper, body, state)


def cond(pred, true_fn, false_fn):
    return ops.cond(pred, true_fn, false_fn)


def all_finite(x):
    """Whether every entry of x is finite, in one pass over it."""
    return ops.all(ops.isfinite(x))


def stepping():
    """A context the collective step runs in."""
    return contextlib.nullcontext()


def stack(tensors):
    """Tensors or variables' values, stacked along a new first axis."""
    return ops.stack([ops.convert_to_tensor(t) for t in tensors])


def squares(x, dtype, scale=1.0):
    """(scale * x)^2 in `dtype`."""
    return ops.square(ops.cast(x, dtype) * scale)


def squared_product(g, row, col):
    """(g * row[..., :, None] * col[..., None, :])^2."""
    return ops.square(product(g, row, col))


def product(g, row, col):
    """g * row[..., :, None] * col[..., None, :], g times its row factor
    first."""
    return g * ops.expand_dims(row, -1) * ops.expand_dims(col, -2)


def norm(x, dtype):
    """sqrt(sum(x^2)) of a variable in `dtype` (inf where the sum
    overflows) from one pass of the backend's own, or None: the step then
    sums the squares block by block, in a compiled loop. XLA on CPUs
    reduces a matrix to one number many times slower than it reduces each
    block's rows (bench/, section b)."""
    return None


def readable(x):
    """A variable as the blocks of a reduction read it: its value, as a
    constant (see over_blocks)."""
    return ops.stop_gradient(ops.convert_to_tensor(x))


def over_blocks(reduce, x, r, size, rows, columns, dtype, block=None):
    """reduce(rows of x, the same rows of r) over blocks of `size` rows of x,
    in a compiled loop: its first `rows` results (a value per row) written
    into place, the `columns` others (a value per column) summed.
    `block(t, start, count)` reads rows of t (a slice by default)."""
    n, m = x.shape
    block = block or _rows_of

    def add(start, count, sums):
        def rows_of(t):
            return None if t is None else block(t, start, count)

        new = reduce(rows_of(x), rows_of(r))
        placed = tuple(
            ops.slice_update(a, (start,), b) for a, b in zip(sums[:rows], new)
        )
        return placed + tuple(a + b for a, b in zip(sums[rows:], new[rows:]))

    sums = (ops.zeros((n,), dtype),) * rows + (ops.zeros((m,), dtype),) * columns
    sums = fori_loop(0, n // size, lambda i, s: add(i * size, size, s), sums)
    done = n // size * size
    return add(done, n - done, sums) if done < n else sums


def _rows_of(t, start, count):
    rest = tuple(t.shape[1:])
    return ops.slice(t, (start,) + (0,) * len(rest), (count,) + rest)


def row_sparse(gradient):
    """(indices, values) of a gradient sparse along axis 0, else None."""
    return None


def dense(gradient):
    return ops.convert_to_tensor(gradient, sparse=False)


def sparse_like(gradient, indices, values, shape):
    """Rows `values` at `indices`, as the same kind of sparse tensor."""
    raise NotImplementedError("no sparse gradients on this backend")


def scatter_rows(indices, rows, shape):
    """Zeros of `shape` with `rows` added at `indices`."""
    return ops.scatter(ops.expand_dims(indices, -1), rows, shape)


def subtract_rows(optimizer, variable, indices, delta, gradient):
    """variable[indices] -= delta, each index once; `gradient` is the sparse
    gradient the indices came from."""
    raise NotImplementedError("no sparse gradients on this backend")


def subtract_product(variable, g, row, col):
    """variable -= product(g, row, col) in place, block by block, where the
    backend would otherwise allocate the update; returns whether it did."""
    return False


def nonzero_rows(gradient):
    """The rows of a dense gradient that are not all zero, where reading
    and writing them alone pays; else None."""
    return None


def targets(variables):
    """Variables as stack, assign_each and subtract_each take them, read once
    for a step."""
    return list(variables)


def assign_each(optimizer, targets, values):
    """targets[i] = values[i], for values stacked along axis 0."""
    for variable, value in zip(targets, ops.unstack(values)):
        optimizer.assign(variable, value)


def subtract_each(optimizer, targets, deltas):
    """targets[i] -= deltas[i], for deltas stacked along axis 0."""
    for variable, delta in zip(targets, ops.unstack(deltas)):
        optimizer.assign_sub(variable, ops.cast(delta, variable.dtype))


def distributed():
    """Whether the step runs under a distribution strategy that updates
    each variable apart (tf.distribute)."""
    return False


def refuse_in_distributed_replica(option):
    """A ValueError naming `option` where a step cannot decide for all
    replicas at once."""
