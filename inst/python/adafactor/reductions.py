"""The step's reductions, exact in float32 and block by block for a large
matrix, on any backend (each reaches its backend through
adafactor.backend)."""

import math

from adafactor import _limits, backend
from adafactor.backend import ops


def rows_per_block(shape):
    """Rows in a block of a matrix of this shape, or None for one block
    (also when the shape is not known when the step is traced: the values
    of a sparse gradient, whose rows are the touched ones)."""
    if len(shape) != 2 or None in shape or math.prod(shape) <= _limits.BLOCK:
        return None
    return max(1, _limits.BLOCK // shape[1])


def by_blocks(reduce, x, dtype, r=None, rows=1, columns=0):
    """reduce(rows of x, the same rows of r) over blocks of rows of x, in one
    pass: its first `rows` results (a value per row, in `dtype`) written
    into place, the `columns` others (a value per column) summed."""
    size = rows_per_block(tuple(x.shape))
    if size is None:
        return reduce(x, r)
    return backend.over_blocks(reduce, x, r, size, rows, columns, dtype)


def factored_means(g, shape):
    """The means of G^2 over each row (the last axis) and over each column
    (the second to last) of the gradient of a variable of `shape`; g holds
    its rows (all, or the touched rows of a row-sparse gradient), with any
    axes before them as batch axes.

    The squares are summed as they are, exact down to the least square
    float32 holds (entries of 2^-63 and up), in one pass, block by block.
    Where a sum overflows float32 while the mean it stands for may not
    (entries near 1.8e19 and up), the pass is made again with large and
    small entries apart (see _squares_of). A backend that sums squares in a
    wider dtype (backend.SQUARES_DTYPE) needs no second pass. Squares below
    float32's least normal number are lost, as in any float32 computation
    of G^2: epsilon_1 >= 2^-102 keeps that loss below float32's rounding of
    the statistics.
    """
    rows, cols = shape[-2:]
    longest = max(rows, cols)
    wide = backend.SQUARES_DTYPE

    def means(split):
        weights = (longest, 1.0) if split else (1.0,)

        def reduce(block, _):
            parts = _squares_of(block, split, longest, wide or block.dtype)
            row = sum(ops.sum(p, -1) * (w / cols) for p, w in zip(parts, weights))
            return (row,) + tuple(ops.sum(p, -2) for p in parts)

        sums = by_blocks(reduce, g, wide or g.dtype, rows=1, columns=len(weights))
        col = sum(s * (w / rows) for s, w in zip(sums[1:], weights))
        return ops.cast(sums[0], g.dtype), ops.cast(col, g.dtype)

    plain = means(split=False)
    if wide is not None:
        return plain
    finite = ops.logical_and(backend.all_finite(plain[0]), backend.all_finite(plain[1]))
    return backend.cond(finite, lambda: plain, lambda: means(split=True))


def _squares_of(x, split, longest, dtype):
    """The squares of x in `dtype`: as one part, or split, so that no
    square or sum of either part overflows and no square of a large entry is
    below float32's normal range. An entry below 2^60 / sqrt(longest) is
    squared as it is; a larger one scaled by 1 / sqrt(longest) (its part
    weighs `longest`)."""
    if not split:
        return (backend.squares(x, dtype),)
    small = ops.abs(x) < 2.0**60 / math.sqrt(longest)
    zero = ops.zeros((), x.dtype)
    large = ops.square(ops.where(small, zero, x) * (1.0 / math.sqrt(longest)))
    return large, ops.square(ops.where(small, x, zero))


def mean(x, axis=None, count=None):
    """The mean of x >= 0 over `axis` (kept), or over all of x as if it had
    `count` elements, formed as max(x) * mean(x / max(x)): a plain sum of
    x overflows where the mean is still in range."""
    top = ops.maximum(ops.max(x, axis=axis, keepdims=True), _limits.TINY)
    if count is None:
        return top * ops.mean(x / top, axis=axis, keepdims=True)
    return ops.reshape(top, ()) * (ops.sum(x / top) / count)


def root_mean_square(x, dtype, members=0):
    """RMS(x) of a variable, in `dtype`, or of each of a stack of them along
    axis 0 (members=1): from the sum of the squares as they are, in one pass
    with no temporary (the backend's norm, or block by block), exact down
    to entries of 2^-63; where that sum overflows, from the squares of
    x / sqrt(size), block by block."""
    wide = backend.SQUARES_DTYPE
    if members:
        size = math.prod(x.shape[1:])
        plain = _member_sums(ops.square(ops.cast(x, wide or dtype))) / size
        if wide is not None:
            return ops.cast(ops.sqrt(plain), dtype)
        scaled = ops.cast(x, dtype) * (1.0 / math.sqrt(size))
        return backend.cond(
            backend.all_finite(plain),
            lambda: ops.sqrt(plain),
            lambda: ops.sqrt(_member_sums(ops.square(scaled))),
        )
    size = math.prod(x.shape)
    norm = backend.norm(x, wide or dtype)
    if norm is None:
        norm = _norm_by_blocks(x, wide or dtype)
    rms = ops.cast(norm * (1.0 / math.sqrt(size)), dtype)
    if wide is not None:
        return rms
    return backend.cond(
        ops.isfinite(norm),
        lambda: rms,
        lambda: _norm_by_blocks(x, dtype, 1.0 / math.sqrt(size)),
    )


def _member_sums(x):
    """The sum of each member of a stack along axis 0."""
    axes = tuple(range(1, len(x.shape)))
    return ops.sum(x, axis=axes) if axes else x


def _norm_by_blocks(x, dtype, scale=1.0):
    """sqrt(sum((scale * x)^2)) of a variable, by blocks of rows (of x as a
    matrix, its last axis kept)."""
    x = backend.readable(x)
    if len(x.shape) > 2:
        x = ops.reshape(x, (-1, x.shape[-1]))
    if len(x.shape) < 2:
        return ops.sqrt(ops.sum(backend.squares(x, dtype, scale)))

    def reduce(block, _):
        return (ops.sum(backend.squares(block, dtype, scale), axis=-1),)

    return ops.sqrt(ops.sum(by_blocks(reduce, x, dtype)[0]))
