"""torch: eager steps, kept scratch memory, in-place writes, multi-tensor
writes, and float64 sums of squares."""

import math
import threading

import keras
import torch

from adafactor import _limits
from adafactor.backend import generic
from adafactor.backend.generic import (  # noqa: F401
    __all__,
    dense,
    distributed,
    readable,
    refuse_in_distributed_replica,
    row_sparse,
    sparse_like,
)

NAME = "torch"


class _Ops:
    """Keras's operations the step uses, as torch's own: a Keras operation
    on torch costs 7 to 25 microseconds (its arguments converted and
    checked), torch's 2 to 3, and a step of small variables is made of
    them. Any other is Keras's."""

    def __getattr__(self, name):
        return getattr(keras.ops, name)

    @staticmethod
    def cast(x, dtype):
        x, dtype = _tensor(x), _dtype(dtype)
        return x if x.dtype == dtype else x.to(dtype)

    @staticmethod
    def convert_to_tensor(x, dtype=None):
        x = _tensor(x)
        return x if dtype is None else x.to(_dtype(dtype))

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return _reduce(torch.sum, x, axis, keepdims)

    @staticmethod
    def mean(x, axis=None, keepdims=False):
        return _reduce(torch.mean, x, axis, keepdims)

    @staticmethod
    def max(x, axis=None, keepdims=False):
        return _reduce(torch.amax, x, axis, keepdims)

    @staticmethod
    def maximum(x, y):
        return _binary(torch.maximum, torch.clamp_min, x, y)

    @staticmethod
    def minimum(x, y):
        return _binary(torch.minimum, torch.clamp_max, x, y)

    sqrt = staticmethod(lambda x: torch.sqrt(_tensor(x)))
    rsqrt = staticmethod(lambda x: torch.rsqrt(_tensor(x)))
    square = staticmethod(lambda x: torch.square(_tensor(x)))
    abs = staticmethod(lambda x: torch.abs(_tensor(x)))
    expm1 = staticmethod(lambda x: torch.expm1(_tensor(x)))
    isfinite = staticmethod(lambda x: torch.isfinite(_tensor(x)))
    all = staticmethod(lambda x: torch.all(_tensor(x)))
    copy = staticmethod(lambda x: torch.clone(_tensor(x)))
    logical_and = staticmethod(torch.logical_and)
    reshape = staticmethod(lambda x, shape: torch.reshape(_tensor(x), shape))
    transpose = staticmethod(lambda x, axes: _tensor(x).permute(axes))
    expand_dims = staticmethod(lambda x, axis: torch.unsqueeze(_tensor(x), axis))
    take = staticmethod(
        lambda x, indices, axis: torch.index_select(_tensor(x), axis, indices)
    )

    @staticmethod
    def where(condition, x, y):
        return torch.where(condition, _tensor(x), _tensor(y))

    @staticmethod
    def power(x, y):
        return torch.pow(_tensor(x), y)

    @staticmethod
    def zeros(shape, dtype="float32"):  # a scalar's (see _tensor)
        return torch.zeros(shape, dtype=_dtype(dtype))

    @staticmethod
    def stack(tensors, axis=0):
        return torch.stack([_tensor(t) for t in tensors], dim=axis)

    @staticmethod
    def concatenate(tensors, axis=0):
        return torch.cat([_tensor(t) for t in tensors], dim=axis)


def _tensor(x):
    """A torch tensor of x: a Keras variable's value (read as Keras reads
    it), a tensor, or a number."""
    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "value"):
        return x.value
    return torch.as_tensor(x)  # a number: a CPU scalar, which any device takes


def _reduce(reduce, x, axis, keepdims):
    x = _tensor(x)
    return reduce(x) if axis is None else reduce(x, dim=axis, keepdim=keepdims)


def _binary(both, one, x, y):
    """both(x, y) of tensors, or one(tensor, number)."""
    if isinstance(y, (int, float)):
        return one(_tensor(x), y)
    if isinstance(x, (int, float)):
        return one(_tensor(y), x)
    return both(_tensor(x), _tensor(y))


ops = _Ops()
OPTIONS_NEEDING_DENSE = ()
NEGATIVE_INDICES_COUNT_FROM_END = False
# float64 holds every float32's square and sums of them exactly, on CPUs
# and GPUs alike: no second pass where float32's sum would overflow, and no
# branch on a sum's value, which would wait for the device.
SQUARES_DTYPE = "float64"


def product(g, row, col):
    """g * row[..., :, None] * col[..., None, :], g times its row factor
    first."""
    return g * row.unsqueeze(-1) * col.unsqueeze(-2)


def stack(tensors):
    """Tensors or variables' values, stacked along a new first axis."""
    return torch.stack([getattr(t, "value", t) for t in tensors])


def targets(variables):
    """The variables' tensors, which torch's multi-tensor operations write
    in place (Keras's `value`, read once for a step: it costs microseconds
    a read)."""
    return [v.value for v in variables]


def stepping():
    """The step runs without autograd's records (Keras's torch optimizers
    too); every operation here counts on it."""
    return torch.no_grad()


def fori_loop(lower, upper, body, state):
    return generic.fori_loop(lower, upper, body, state)


def cond(pred, true_fn, false_fn):
    """A plain `if`: torch runs eagerly. It waits for the device; only
    skip_nonfinite decides so (as Keras's LossScaleOptimizer does)."""
    return true_fn() if bool(pred) else false_fn()


def all_finite(x):
    """Whether every entry of x is finite: its least and largest entries,
    made together by aminmax with no temporary the size of x, where a NaN
    propagates (all(isfinite(x)) took about twice as long)."""
    if x.numel() == 0:
        return torch.tensor(True, device=x.device)
    least, largest = torch.aminmax(x)
    return torch.isfinite(least) & torch.isfinite(largest)


def _eager():
    return not torch.compiler.is_compiling()


def squares(x, dtype, scale=1.0):
    """(scale * x)^2 in `dtype`, written into the scratch buffer when eager
    (valid until the next call)."""
    if not _eager():
        return torch.square(x.to(_dtype(dtype)) * scale)
    out = scratch(x.shape, dtype, x.device)
    if x.dtype == out.dtype:  # (no_grad: see stepping; out= needs it)
        torch.mul(x, scale, out=out)
    else:  # cast first: mul would multiply in x's dtype
        out.copy_(x)
        if scale != 1.0:
            out.mul_(scale)
    return out.mul_(out)


def squared_product(g, row, col):
    if not _eager():
        return torch.square(product(g, row, col))
    out = scratch(g.shape, g.dtype, g.device)
    torch.mul(g, row[..., None], out=out)
    out.mul_(col[..., None, :])
    return out.mul_(out)


def norm(x, dtype):
    """sqrt(sum(x^2)) of a variable, in `dtype`, with no temporary the size
    of x: eagerly, each block converted into the scratch buffer and summed
    by a dot product. vector_norm with a dtype converts the whole variable
    first, into new memory (bench/, sections b and d); in float32 it sums
    with float32's rounding."""
    x, dtype = _tensor(x), _dtype(dtype)
    if not _eager():
        return torch.linalg.vector_norm(x, dtype=dtype)
    flat = x.reshape(-1)
    total = torch.zeros((), dtype=dtype, device=x.device)
    for start in range(0, flat.shape[0], _limits.BLOCK):
        part = flat[start : start + _limits.BLOCK]
        block = scratch(part.shape, dtype, x.device)
        block.copy_(part)
        total += torch.dot(block, block)
    return total.sqrt()


def over_blocks(reduce, x, r, size, rows, columns, dtype, block=None):
    """A loop in Python over views of the blocks: torch runs the loop anyway
    (eagerly, or unrolled by torch.compile), and placing each block's
    results as a traced loop does copies them."""

    def part(t, start):
        return None if t is None else t[start : start + size]

    results = [reduce(x[i : i + size], part(r, i)) for i in range(0, x.shape[0], size)]
    placed = [torch.cat(parts) for parts in zip(*(b[:rows] for b in results))]
    summed = [sum(parts[1:], parts[0]) for parts in zip(*(b[rows:] for b in results))]
    return tuple(placed + summed)


_SCRATCH = threading.local()


def _dtype(dtype):
    return getattr(torch, keras.backend.standardize_dtype(dtype))


def scratch(shape, dtype, device):
    """A buffer of `shape` for a block's temporary: the same memory from
    block to block and step to step, one block's worth per thread, dtype and
    device. (A larger tensor, unsplit, is allocated afresh.)

    torch allocates its CPU tensors from the C library, which maps each one
    of a block's size afresh and returns it to the system when it is freed:
    every temporary of 2 MiB would cost its 512 page faults again (bench/,
    sections b and f).
    """
    dtype = _dtype(dtype)
    size = math.prod(shape)
    if size > _limits.BLOCK:
        return torch.empty(shape, dtype=dtype, device=device)
    kept = _SCRATCH.__dict__.get((dtype, str(device)))
    if kept is None or kept.numel() < size:
        kept = torch.empty(_limits.BLOCK, dtype=dtype, device=device)
        _SCRATCH.__dict__[(dtype, str(device))] = kept
    return kept[:size].view(shape)


def scatter_rows(indices, rows, shape):
    """Zeros of `shape` with `rows` added at `indices` (ops.scatter adds the
    rows one by one in Python)."""
    return torch.zeros(shape, dtype=rows.dtype, device=rows.device).index_add_(
        0, indices.long(), rows
    )


def subtract_rows(optimizer, variable, indices, delta, gradient):
    """variable[indices] -= delta, in place, each index once."""
    variable.value.index_add_(0, indices, delta.to(variable.value.dtype), alpha=-1)


def subtract_product(variable, g, row, col):
    """variable -= product(g, row, col), block by block and in place, for a
    matrix of more than one block, eagerly: `assign_sub` would allocate the
    update and the new value, each the size of the variable. TensorFlow and
    JAX compile the same expression into one in-place loop."""
    x = variable.value
    shape = tuple(x.shape)
    if len(shape) != 2 or math.prod(shape) <= _limits.BLOCK or tuple(g.shape) != shape:
        return False
    size = max(1, _limits.BLOCK // shape[1])
    for start in range(0, shape[0], size):
        rows = slice(start, start + size)
        if x.dtype != g.dtype or not _eager():
            x[rows] -= product(g[rows], row[rows], col).to(x.dtype)
            continue
        block = scratch(g[rows].shape, g.dtype, g.device)
        torch.mul(g[rows], row[rows, None], out=block)
        x[rows].addcmul_(block, col[None, :], value=-1)
    return True


def nonzero_rows(gradient):
    """The indices of the rows of a dense gradient that are not all zero,
    where at most half are and all are finite, else None: eagerly on a CPU
    (the counts are read on the host), for a matrix of more than a block.

    torch gives an embedding a dense gradient, zero outside the rows its
    batch looked up; the step then reads and writes those rows alone, as it
    does for TensorFlow's sparse gradient, at the cost of two reductions
    over the gradient, each row's largest and least entries (bench/,
    section f). A sample of 64 rows spares them where most rows are touched
    (a Dense layer's). A NaN or an infinity keeps the dense step, which
    spreads it to every row.
    """
    if not _eager() or len(gradient.shape) != 2 or gradient.device.type != "cpu":
        return None
    if math.prod(gradient.shape) <= _limits.BLOCK:
        return None

    def extremes(g):
        return torch.amax(g, dim=1), torch.amin(g, dim=1)

    n = gradient.shape[0]
    largest, least = extremes(gradient[:: max(1, n // 64)])
    if 2 * int(((largest != 0) | (least != 0)).sum()) > largest.shape[0]:
        return None
    largest, least = extremes(gradient)
    touched = (largest != 0) | (least != 0)
    finite = torch.isfinite(largest).all() & torch.isfinite(least).all()
    if 2 * int(touched.sum()) > n or not bool(finite):
        return None
    return touched.nonzero()[:, 0]


def assign_each(optimizer, targets, values):
    """targets[i] = values[i], in one multi-tensor copy."""
    torch._foreach_copy_(targets, list(values.unbind(0)))


def subtract_each(optimizer, targets, deltas):
    """targets[i] -= deltas[i], in one multi-tensor subtraction."""
    torch._foreach_sub_(targets, list(deltas.to(targets[0].dtype).unbind(0)))
