"""Gradients sparse along axis 0 (an embedding's), and the rows a gradient
touches.

A row a gradient does not touch gets an update of exactly zero, so a step
can read and write only the touched rows; its statistics still decay.
"""

from adafactor import backend
from adafactor.backend import ops


def sum_duplicates(indices, values, shape):
    """Sum the rows of a row-sparse gradient of a variable of `shape` that
    share an index.

    Indices mean what they mean in the backend's dense form of the gradient,
    which Keras's other optimizers see: JAX counts a negative index from the
    end, as NumPy does, and TensorFlow drops it; an index outside
    [0, num_rows) then is dropped, except by TensorFlow's CPU kernels, which
    raise, as its dense conversion does.

    Returns (indices, values) of the same length as the input: the last
    occurrence of each index carries the sum of its rows, the others carry
    zeros, and a dropped row becomes a row of zeros at index 0. Shapes stay
    static, so this compiles under XLA and jit.
    """
    indices = ops.convert_to_tensor(indices)  # checked before any cast
    num_rows = shape[0]
    if None in tuple(values.shape)[1:]:
        # The rows' shape is the variable's where tracing lost it, as
        # MultiWorkerMirroredStrategy's all-gather of IndexedSlices does.
        values = ops.reshape(values, (-1,) + shape[1:])
    if backend.NEGATIVE_INDICES_COUNT_FROM_END:
        indices = ops.where(indices < 0, indices + num_rows, indices)
    positions = ops.arange(ops.shape(indices)[0], dtype="int32")
    # The last position of each index stands for all of its occurrences.
    last = ops.segment_max(positions, indices, num_segments=num_rows)
    valid = ops.logical_and(indices >= 0, indices < num_rows)
    indices = ops.cast(ops.where(valid, indices, 0), "int32")
    owner = ops.where(valid, ops.take(last, indices), positions)
    kept = ops.reshape(valid, (-1,) + (1,) * (len(shape) - 1))
    values = ops.where(kept, values, ops.zeros((), values.dtype))
    return indices, ops.segment_sum(values, owner, num_segments=ops.shape(owner)[0])


def row_sparse_values(gradient):
    """The values of a row-sparse gradient, or the gradient itself."""
    rows = backend.row_sparse(gradient)
    return gradient if rows is None else rows[1]


def coalesced(gradient, shape):
    """A row-sparse gradient of a variable of `shape` with its duplicate
    indices summed (the gradient's own shape may not be known when traced)."""
    rows = backend.row_sparse(gradient)
    if rows is None:
        return gradient
    shape = tuple(shape)
    indices, values = sum_duplicates(*rows, shape)
    return backend.sparse_like(gradient, indices, values, shape)


def touched_rows(gradient, shape, every_row=False, factored=False):
    """The rows a gradient of a variable of `shape` touches, None for all of
    them, and its values there.

    All rows (the gradient made dense) when `every_row` is asked for, or
    when the variable's rank is above 2 (its column statistic has the rows'
    axis too); else the rows of a row-sparse gradient, with duplicates summed
    (the last occurrence of an index carries its rows' sum, the others
    zeros), or, for a factored matrix, a dense gradient's rows that are not
    all zero where few are (see backend.nonzero_rows).
    """
    shape = tuple(shape)
    rows = None if every_row or len(shape) > 2 else backend.row_sparse(gradient)
    if rows is not None:
        return sum_duplicates(*rows, shape)
    if factored and not every_row and len(shape) == 2:
        indices = backend.nonzero_rows(gradient)
        if indices is not None:
            return indices, ops.take(gradient, indices, axis=0)
    return None, backend.dense(gradient)
