"""Gradients sparse along axis 0 (an embedding's), and the rows they touch.

A row a gradient does not touch gets an update of exactly zero, so a step
can read and write only the touched rows; its statistics still decay.
"""

from keras import ops

from adafactor import _kernels


def row_sparse(gradient):
    """(indices, values) of a gradient that is sparse along axis 0, else None.

    TensorFlow's IndexedSlices (an embedding's gradient), with indices in any
    container TensorFlow accepts, and a JAX BCOO whose only sparse axis is
    the first.
    """
    kind = type(gradient).__name__
    if kind == "IndexedSlices":
        return ops.convert_to_tensor(gradient.indices), gradient.values
    if kind == "BCOO" and gradient.n_batch == 0 and gradient.n_sparse == 1:
        return gradient.indices[:, 0], gradient.data
    return None


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
    if _kernels.negative_indices_count_from_end():
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


def coalesced(gradient, shape):
    """A row-sparse gradient of a variable of `shape` with its duplicate
    indices summed (the gradient's own shape may not be known when traced)."""
    rows = row_sparse(gradient)
    if rows is None:
        return gradient
    shape = tuple(shape)
    indices, values = sum_duplicates(*rows, shape)
    return _kernels.sparse_like(gradient, indices, values, shape)


class AllRows:
    """The rows a dense gradient touches: all of them."""

    def take(self, x):
        """x at the touched rows."""
        return x

    def spread(self, update, shape):
        """A statistic's update at the touched rows, as one of `shape`."""
        return update

    def statistic(self, decay, old, new, term):
        """The new row statistic, given `new`, its value at the touched
        rows, and `term`, what they add to it (see _kernels.Moments)."""
        return new

    def subtract(self, optimizer, variable, delta):
        """variable -= `delta` at the touched rows."""
        optimizer.assign_sub(variable, delta)


class SomeRows(AllRows):
    """The rows a row-sparse gradient touches, with duplicates summed: the
    last occurrence of an index carries its rows' sum, the others zeros
    (see sum_duplicates)."""

    def __init__(self, indices, gradient, shape):
        self.indices, self.gradient, self.shape = indices, gradient, shape

    def take(self, x):
        return ops.take(x, self.indices, axis=0)

    def spread(self, update, shape):
        return _kernels.scatter_rows(self.indices, update, shape)

    def statistic(self, decay, old, new, term):
        # Every row decays; the touched ones add their terms, an index's
        # earlier occurrences zeros. (The touched rows' `new` cannot simply
        # replace the old values: a NaN would be lost where an index occurs
        # more than once.)
        return decay(old, self.spread(term, old.shape))

    def subtract(self, optimizer, variable, delta):
        delta = _kernels.sparse_like(self.gradient, self.indices, delta, self.shape)
        optimizer.assign_sub(variable, delta)
        _kernels.copy_on_write(variable)


class FewRows(SomeRows):
    """The rows of a dense gradient that are not all zero, where few are:
    an embedding's, which torch makes dense (see _kernels.nonzero_rows).
    Each index occurs once."""

    def __init__(self, indices, shape):
        super().__init__(indices, None, shape)

    def subtract(self, optimizer, variable, delta):
        _kernels.subtract_rows(variable, self.indices, delta)


def touched_rows(gradient, shape, every_row=False, factored=False):
    """The rows a gradient of a variable of `shape` touches, and its values
    there: all rows (the gradient made dense) when `every_row` is asked
    for, or when the variable's rank is above 2 (its column statistic has
    the rows' axis too); else the rows of a row-sparse gradient, or, for a
    factored variable, a dense gradient's rows that are not all zero where
    few are (on torch; see _kernels.nonzero_rows)."""
    shape = tuple(shape)
    rows = None if every_row or len(shape) > 2 else row_sparse(gradient)
    if rows is None and factored and not every_row and len(shape) == 2:
        indices = _kernels.nonzero_rows(gradient)
        if indices is not None:
            return FewRows(indices, shape), ops.take(gradient, indices, axis=0)
    if rows is None:
        return AllRows(), _kernels.dense(gradient)
    indices, values = sum_duplicates(*rows, shape)
    return SomeRows(indices, gradient, shape), values
