"""Adafactor for Keras 3, with factored second moments and nothing else.

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost", https://arxiv.org/abs/1804.04235.

For a variable of rank >= 2 the optimizer keeps only the running means of the
squared gradient over its last axis (``r``, shape ``shape[:-1]``) and over its
second-to-last axis (``c``, shape ``shape[:-2] + shape[-1:]``): Algorithm 4 of
the paper with the factorisation of Section 3 applied to the last two
dimensions. Variables of rank 0 and 1 keep a full second moment ``v``
(Algorithm 2). Nothing else is stored per variable.

The rank-1 estimate ``V = r c / mean(r)`` is never built. The gradient is
scaled by a row factor ``rsqrt(r) * sqrt(mean(r))`` and a column factor
``rsqrt(c)`` instead, which gives the same update without a parameter-sized
temporary, and stays finite where ``V`` or ``r / mean(r)`` falls below
float32's normal range and is flushed to zero (an all-zero gradient row
among large ones).

A gradient sparse along axis 0 (an embedding's) is applied row-sparse: the
same algorithm, in which untouched rows only decay their statistics and
keep their values.

A large matrix is reduced in blocks of rows, so that no temporary the size
of the variable is made (XLA would keep g^2, torch every expression), and on
torch the update is subtracted in place, block by block.
"""

import math
import numbers
import re
import warnings

import keras
import numpy as np
from keras import ops

_LOW_PRECISION = ("float16", "bfloat16")
# Options of keras.optimizers.Optimizer that fail on a sparse gradient (Keras
# 3.15): TensorFlow divides an IndexedSlices by the loss scale with `/`; JAX's
# accumulation and clipping cannot hold a BCOO.
_KERAS_NEEDS_DENSE = {
    "tensorflow": ("loss_scale_factor",),
    "jax": ("gradient_accumulation_steps", "clipnorm", "global_clipnorm", "clipvalue"),
}


def _factored(dims):
    """Row and column parts of a variable's shape (or sharding axes).

    Section 3 of the paper factors a matrix's second moment into row and
    column means; higher-rank variables are factored over their last two
    axes. Returns None for rank 0 and 1, which are not factored.
    """
    dims = tuple(dims)
    if len(dims) < 2:
        return None
    return dims[:-1], dims[:-2] + dims[-1:]


def _factored_layouts(layout):
    """Layouts of r and c derived from the variable's, the reduced axis
    dropped, so that a sharded kernel gets sharded statistics."""
    axes = getattr(layout, "axes", None)
    if axes is None:
        return None, None
    mesh = layout.device_mesh
    row, col = _factored(axes)
    return (
        keras.distribution.TensorLayout(row, mesh),
        keras.distribution.TensorLayout(col, mesh),
    )


def _state_dtype(dtype):
    """Statistics and update are computed in float32 for 16-bit variables."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in _LOW_PRECISION else dtype


def _row_sparse(gradient):
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


def _like(gradient, indices, values, shape):
    """Rows `values` at `indices`, as the same kind of sparse tensor."""
    if type(gradient).__name__ == "IndexedSlices":
        import tensorflow as tf

        return tf.IndexedSlices(values, indices, tf.constant(shape, "int64"))
    return type(gradient)((values, ops.expand_dims(indices, -1)), shape=shape)


def _sum_duplicates(indices, values, num_rows):
    """Sum the rows of a row-sparse gradient that share an index.

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
    if keras.backend.backend() == "jax":
        indices = ops.where(indices < 0, indices + num_rows, indices)
    positions = ops.arange(ops.shape(indices)[0], dtype="int32")
    # The last position of each index stands for all of its occurrences.
    last = ops.segment_max(positions, indices, num_segments=num_rows)
    valid = ops.logical_and(indices >= 0, indices < num_rows)
    indices = ops.cast(ops.where(valid, indices, 0), "int32")
    owner = ops.where(valid, ops.take(last, indices), positions)
    kept = ops.reshape(valid, (-1,) + (1,) * (len(values.shape) - 1))
    values = ops.where(kept, values, ops.zeros((), values.dtype))
    return indices, ops.segment_sum(values, owner, num_segments=ops.shape(owner)[0])


def _coalesced(gradient, shape):
    """A row-sparse gradient of a variable of `shape` with its duplicate
    indices summed (the gradient's own shape may not be known when traced)."""
    rows = _row_sparse(gradient)
    if rows is None:
        return gradient
    shape = tuple(shape)
    indices, values = _sum_duplicates(*rows, num_rows=shape[0])
    return _like(gradient, indices, values, shape)


def _dense(gradient):
    """A gradient as a dense tensor, as its backend makes one of a sparse
    gradient (duplicate indices add up; on bad ones, see _sum_duplicates)."""
    if type(gradient).__name__ == "IndexedSlices":
        import tensorflow as tf

        return tf.convert_to_tensor(gradient)
    return ops.convert_to_tensor(gradient, sparse=False)


def _spread(update, indices, shape):
    """A statistic's update given at rows `indices` (None: at every row)."""
    if indices is None:
        return update
    return ops.scatter(ops.expand_dims(indices, -1), update, shape)


def _rows(x, indices):
    return x if indices is None else ops.take(x, indices, axis=0)


def _matmul(a, b):
    """a @ b in full float32 precision (see _row_sums)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.numpy.matmul(a, b, precision="highest")
    return ops.matmul(a, b)


def _row_sums(matrix):
    """Sums over the last axis.

    XLA on CPU sums a row far faster as a matrix-vector product than as a
    reduction (2-11x, measured with JAX). A matrix product keeps float32's
    precision only where it is asked to: GPUs run it in TF32 by default, TPUs in
    bfloat16 passes, either of which keeps about three significant digits
    of the statistics. So JAX is asked for its highest precision, and
    TensorFlow, which has no such switch per product, takes the product
    only where it runs on CPUs alone. torch reduces: its reductions are
    faster than its matrix-vector products, and exact.
    """
    if not _matvec_is_exact():
        return ops.sum(matrix, axis=-1)
    ones = ops.ones(matrix.shape[-1:] + (1,), matrix.dtype)
    return ops.squeeze(_matmul(matrix, ones), -1)


def _column_sums(matrix, weights):
    """Sums over the second-to-last axis, plain and weighted by `weights`
    (one per row). Where _row_sums takes a product, this is one product of
    the stacked vectors (ones, weights) with the matrix: 1.4x faster than
    two reductions, with JAX on a CPU."""
    if not _matvec_is_exact():
        weighted = matrix * ops.expand_dims(weights, -1)
        return ops.sum(matrix, axis=-2), ops.sum(weighted, axis=-2)
    both = ops.stack([ops.ones_like(weights), weights], axis=-2)
    sums = _matmul(both, matrix)
    return sums[..., 0, :], sums[..., 1, :]


def _matvec_is_exact():
    """Whether _row_sums may use a matrix product (see there)."""
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices()
        return all(d.device_type == "CPU" for d in devices)
    return False


# A matrix larger than this many elements (2 MB of float32) is reduced in
# blocks of rows. Compiled, XLA on CPU would otherwise keep g^2 as a
# parameter-sized temporary (it does not fuse a square into a matrix
# product) and reduce it slowly; torch, running eagerly, would allocate it.
# A block stays in cache: bench/, sections b, d and f.
_BLOCK = 1 << 19


def _rows_per_block(shape):
    """Rows in a block of a matrix of this shape, or None for one block
    (also when the shape is not known when the step is traced: the values
    of a sparse gradient, whose rows are the touched ones)."""
    if len(shape) != 2 or None in shape or math.prod(shape) <= _BLOCK:
        return None
    return max(1, _BLOCK // shape[1])


def _square_sums(x, dtype, scale, r=None, weights=None):
    """Sums of (scale * x)^2 in `dtype`, in one pass over x, block by block.

    Scaling before squaring keeps every square and sum inside float32's
    range wherever the mean it stands for is: with scale^2 = 1 / N, the sum
    of N squares is their mean. Returns (row sums,), and, given the row
    statistic `r` (a value per row of x) and `weights(r, row sums)` (a
    weight per row), also the column sums and the column sums weighted:
    the new terms of the factored statistics (Section 3 of the paper) and
    what the update's mean square is made of (Section 5).
    """
    size = _rows_per_block(tuple(x.shape))
    if size is None:
        return _block_square_sums(x, dtype, scale, r, weights)
    n, m = x.shape

    def add(start, stop, sums):
        # Rows start:stop, or in the loop `size` rows from a traced start.
        def block(t):
            if stop is not None:
                return t[start:stop]
            rest = tuple(t.shape[1:])
            return ops.slice(t, (start,) + (0,) * len(rest), (size,) + rest)

        rows = r if r is None else block(r)
        new = _block_square_sums(block(x), dtype, scale, rows, weights)
        row_sums = ops.slice_update(sums[0], (start,), new[0])
        return (row_sums,) + tuple(a + b for a, b in zip(sums[1:], new[1:]))

    columns = 0 if r is None else 2
    sums = (ops.zeros((n,), dtype),) + (ops.zeros((m,), dtype),) * columns
    sums = _fori_loop(0, n // size, lambda i, s: add(i * size, None, s), sums)
    done = n // size * size
    return add(done, n, sums) if done < n else sums


def _fori_loop(lower, upper, body, state):
    """ops.fori_loop, one iteration at a time on TensorFlow.

    TensorFlow's graph executor (without XLA) runs up to 10 iterations of a
    loop at once, each with its own block-sized temporaries, which its
    allocator then keeps: about 20 MB more resident memory with blocks of
    2 MB (bench/, section d), for no speed. The blocks' sums depend on each
    other anyway.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.fori_loop(lower, upper, body, state)
    import tensorflow as tf

    return tf.while_loop(
        lambda i, _: i < upper,
        lambda i, s: (i + 1, body(i, s)),
        (lower, state),
        parallel_iterations=1,
    )[1]


def _block_square_sums(x, dtype, scale, r, weights):
    squares = ops.square(ops.cast(x, dtype) * scale)
    rows = _row_sums(squares)
    if r is None:
        return (rows,)
    return (rows,) + _column_sums(squares, weights(r, rows))


def _weight_scale(epsilon_1):
    """The weight w of the update's mean square, a power of two: w / r is
    kept finite (at most a quarter of float32's largest) for every statistic
    r >= epsilon_1, and as large as that allows, so that the terms
    w g^2 / r of small gradients stay above float32's normal range; unless
    w / r would then fall below it for the largest r, where w is the
    geometric middle of what the two ends allow."""
    highest = _FLOAT32_MAX * epsilon_1 / 4
    lowest = _FLOAT32_MAX * _TINY  # w / float32's largest is normal
    w = highest if highest >= lowest else math.sqrt(highest * lowest)
    return 2.0 ** math.floor(math.log2(w))


def _mean(x, axis=None, count=None):
    """The mean of x >= 0 over `axis` (kept), or over all of x as if it had
    `count` elements, formed as max(x) * mean(x / max(x)): a plain sum of
    x overflows where the mean is still in range."""
    top = ops.maximum(ops.max(x, axis=axis, keepdims=True), _TINY)
    if count is None:
        return top * ops.mean(x / top, axis=axis, keepdims=True)
    return ops.reshape(top, ()) * (ops.sum(x / top) / count)


def _mean_square(x, dtype):
    """mean(x^2), computed in `dtype`."""
    # Read a variable once, before the loop over its blocks: under JAX's
    # stateless scope a read inside the loop would see the value outside
    # the scope, and TensorFlow would read it at every block (a whole copy
    # each time, once the variable has been written sparsely). The value is
    # read as a constant: on torch, whose step is not run under no_grad,
    # autograd would otherwise record every block (7x slower).
    x = ops.stop_gradient(ops.convert_to_tensor(x))
    scale = 1.0 / math.sqrt(math.prod(x.shape))
    if len(x.shape) >= 2:
        return ops.sum(_square_sums(x, dtype, scale)[0])
    return ops.sum(ops.square(ops.cast(x, dtype) * scale))


def _scale(g, row, col):
    """g * row[..., :, None] * col[..., None, :], with no temporary beyond
    the result.

    TensorFlow's graph optimizer reorders a chain of products so that the
    broadcast factors meet first, which builds their outer product, a second
    tensor the size of g. The second product is TensorFlow's MulNoNan there,
    which it leaves alone (and which gives 0, not NaN, where col is 0).
    """
    scaled = g * ops.expand_dims(row, -1)
    col = ops.expand_dims(col, -2)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.math.multiply_no_nan(scaled, col)
    return scaled * col


def _subtract_in_place(variable, g, row, col):
    """variable -= g * row[:, None] * col[None, :], block by block, in place.

    For torch, which runs eagerly: `assign_sub` would allocate the update
    and the new value, each the size of the variable. TensorFlow and JAX
    compile the same expression into one in-place loop.
    """
    import torch

    x = variable.value
    size = _rows_per_block(tuple(x.shape))
    with torch.no_grad():
        for start in range(0, x.shape[0], size):
            rows = slice(start, start + size)
            x[rows] -= _scale(g[rows], row[rows], col).to(x.dtype)


def _stochastic_round(x, seed):
    """float32 to bfloat16, rounding up with probability equal to the part
    of x that bfloat16 cannot hold, so that the rounding is unbiased.

    bfloat16 is the upper half of a float32: uniform noise added to the
    lower 16 bits, then cut off, rounds stochastically.
    """
    bits = ops.view(x, "int32")
    noise = keras.random.randint(ops.shape(x), 0, 1 << 16, dtype="int32", seed=seed)
    bits = ops.bitwise_and(bits + noise, -(1 << 16))
    return ops.cast(ops.view(bits, "float32"), "bfloat16")


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value):
    if isinstance(value, numbers.Integral):
        return not isinstance(value, bool)
    try:
        return _is_real(value) and float(value).is_integer()
    except OverflowError:  # a Fraction beyond any float
        return False


def _is_flag(value):
    return isinstance(value, bool)


_FLOAT32_MAX = float(np.finfo("float32").max)
# The step computes in float32 (or wider): a number must stay finite there,
# and keep to its rule once rounded.
_AS_FLOAT32 = " (as a float32)"
# Whole numbers meet int32 step counts on JAX, whose default integers they
# are: a larger one overflows there.
_INT32_MAX = 2**31 - 1
_IN_INT32 = f" (at most {_INT32_MAX})"


def _finite(x):
    try:
        return abs(float(x)) <= _FLOAT32_MAX
    except OverflowError:
        return False


def _number(ok, allowed, none_ok=False, note=_AS_FLOAT32):
    """A number's rule, which must hold for the number rounded to float32 too
    (1e-320 is 0 there, 0.99999999 is 1)."""

    def holds(x):
        return _finite(x) and ok(x) and ok(float(np.float32(x)))

    return (_is_real, holds, allowed, none_ok, note)


def _whole(ok, allowed, none_ok=False):
    return (_is_whole, lambda x: ok(x) and x <= _INT32_MAX, allowed, none_ok, _IN_INT32)


_FLAG = (_is_flag, lambda x: True, "True or False", False, "")
# The least normal float32. The statistics and the update are float32 (or
# wider); a smaller epsilon_1 or clip_threshold is 0 once flushed to zero, as
# TensorFlow, XLA and GPUs do, and a zero gradient row then gives 0 / 0.
_TINY = 2.0**-126
_NORMAL = (
    "a normal float32 >= 1.1754944e-38 (the least normal float32: a smaller"
    " one is 0 on backends that flush subnormals to zero, and an all-zero"
    " gradient row then divides 0 by 0)"
)
# TensorFlow's rule for a name scope, less the `/` Keras refuses: any other
# name breaks training there.
_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\>-]*")
_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")

# What each argument allows: (type test, value test, phrase, None allowed,
# a note after the phrase).
_RULES = {
    "beta_2_decay": _number(lambda x: x < 0, "a number < 0"),
    "epsilon_1": _number(lambda x: x >= _TINY, _NORMAL, note=""),
    "epsilon_2": _number(lambda x: x >= 0, "a number >= 0"),
    "clip_threshold": _number(lambda x: x >= _TINY, _NORMAL, note=""),
    "relative_step": _FLAG,
    "weight_decay": _number(lambda x: x >= 0, "a number >= 0", True),
    "clipnorm": _number(lambda x: x > 0, "a number > 0", True),
    "clipvalue": _number(lambda x: x >= 0, "a number >= 0", True),
    "global_clipnorm": _number(lambda x: x > 0, "a number > 0", True),
    "use_ema": _FLAG,
    "ema_momentum": _number(lambda x: 0 <= x <= 1, "a number in [0, 1]"),
    "ema_overwrite_frequency": _whole(lambda x: x >= 1, "a whole number >= 1", True),
    "loss_scale_factor": _number(lambda x: x > 0, "a number > 0", True),
    "gradient_accumulation_steps": _whole(
        lambda x: x >= 2, "a whole number >= 2", True
    ),
    "beta_1": _number(lambda x: 0 <= x < 1, "a number in [0, 1)", True),
    "momentum_dtype": (
        lambda x: isinstance(x, str),
        lambda x: x in _FLOAT_DTYPES,
        "one of " + ", ".join(f'"{d}"' for d in _FLOAT_DTYPES),
        False,
        "",
    ),
    "scale_parameter": _FLAG,
    "min_dim_size_to_factor": _whole(lambda x: x >= 1, "a whole number >= 1", True),
    "factored": _FLAG,
    "decay_offset": _whole(lambda x: x >= 0, "a whole number >= 0"),
    "stochastic_rounding": _FLAG,
    "name": (
        lambda x: isinstance(x, str),
        lambda x: _NAME.fullmatch(x) is not None,
        "a string of letters, digits and `_.>-\\` that starts with a letter,"
        " a digit or `.` (a valid TensorFlow name scope)",
        True,
        "",
    ),
}


_LR_ALLOWED = "a number > 0, a LearningRateSchedule or a callable"


def _validate(args):
    """Raise a TypeError or ValueError naming the argument and its value."""
    lr = args["learning_rate"]
    checks = [(name, args[name], rule) for name, rule in _RULES.items()]
    if _is_real(lr) or not callable(lr):  # schedules and callables pass
        checks.insert(0, ("learning_rate", lr, _number(lambda x: x > 0, _LR_ALLOWED)))
    for name, value, (kind, ok, allowed, none_ok, note) in checks:
        if value is None and none_ok:
            continue
        allowed += (" or None" if none_ok else "") + note
        if not kind(value) or not ok(value):
            shown = f"{name}={_shown(value)}"
            if not kind(value):  # a TypeError: say of what type
                shown += f" of type {_type_name(value)}"
            error = ValueError if kind(value) else TypeError
            raise error(f"Argument `{name}` must be {allowed}. Received: {shown}")


def _type_name(value):
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    return module + kind.__qualname__


def _shown(value, width=60):
    """repr(value), shortened to `width` characters with `...`."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def warn(message):
    """Warn with `message` as a UserWarning. The R package puts a function
    that calls R's warning() in its place, so that R code can catch it."""
    warnings.warn(message, UserWarning, stacklevel=3)


def _restorable(learning_rate):
    """Whether Keras can deserialize what it saves for this learning rate."""
    schedules = keras.optimizers.schedules.LearningRateSchedule
    if not callable(learning_rate) or isinstance(learning_rate, schedules):
        return True
    saving = keras.saving
    try:
        with warnings.catch_warnings():  # Keras's advice on saving lambdas
            warnings.simplefilter("ignore")
            saved = saving.serialize_keras_object(learning_rate)
            return callable(saving.deserialize_keras_object(saved))
    except Exception:  # what load_model would raise
        return False


def _pairing(variables, saved, learning_rate):
    """An optimizer's variables and the saved values to load into them: all,
    or all but a learning rate (a scalar, after `iterations`) where only one
    side has a learning-rate variable; None if the counts allow neither."""
    has_rate = isinstance(learning_rate, keras.Variable)
    if len(variables) == len(saved):
        return variables, saved
    if has_rate and len(variables) == len(saved) + 1:
        return [v for v in variables if v is not learning_rate], saved
    if not has_rate and len(saved) == len(variables) + 1 and saved[1].shape == ():
        return variables, saved[:1] + saved[2:]
    return None


def _holds(variable, value):
    """Whether a saved value can be what `variable` holds: the same shape, and
    numbers of the same kind (floating point, or not)."""

    def floating(dtype):
        return "float" in keras.backend.standardize_dtype(dtype)

    same_kind = floating(variable.dtype) == floating(value.dtype)
    return tuple(value.shape) == tuple(variable.shape) and same_kind


def _as_int(value):
    return None if value is None else int(value)


@keras.saving.register_keras_serializable(package="adafactor")
class Adafactor(keras.optimizers.Optimizer):
    """Adafactor with sublinear memory (Shazeer & Stern, 2018).

    A drop-in replacement for `keras.optimizers.Adafactor`: same arguments,
    same defaults, and the same updates where Keras follows its documentation
    (`beta_2_t = 1 - t^beta_2_decay`, `epsilon_1` added to the squared
    gradient, the step scaled by `max(epsilon_2, RMS(x))`, the update clipped
    to `RMS <= clip_threshold`, the last two axes factored).

    It differs from `keras.optimizers.Adafactor` in these ways:

    - Memory. A variable of rank >= 2 keeps only its row statistic `r`
      (`shape[:-1]`) and column statistic `c` (`shape[:-2] + shape[-1:]`);
      Keras also keeps a full-size copy of the estimate for every variable.
    - Finiteness. The second-moment estimate is applied as a row factor times
      a column factor, formed so that no intermediate falls below float32's
      normal range, and the statistics are kept >= `epsilon_1`: an all-zero
      gradient row no longer turns the variable into NaN on backends that
      flush subnormals to zero (TensorFlow, XLA, GPUs).
    - Sparse gradients. IndexedSlices and row BCOO gradients have their
      duplicate indices summed before squaring (and before Keras clips
      them), and only the touched rows of the variable are written.
    - `relative_step`. As documented, the step size is
      `min(learning_rate, 1 / sqrt(t))` only when `learning_rate` is a
      constant and `relative_step=True`. With `relative_step=False` a constant
      rate stays constant, and a schedule or callable is used as it is; Keras
      applies the cap in every case.

    For float16 and bfloat16 variables the statistics are kept, and the update
    computed, in float32.

    Args:
        learning_rate: A float > 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no arguments and returns the value to use.
        beta_2_decay: Float < 0. The decay rate of `beta_2`:
            `beta_2_t = 1 - t^beta_2_decay`.
        epsilon_1: Float >= 1.1754944e-38 (the least normal float32), added
            to the squared gradient.
        epsilon_2: Float >= 0, the least parameter scale the step is scaled by.
        clip_threshold: Float >= 1.1754944e-38. Updates are clipped to this
            RMS; part of Adafactor, independent of `clipnorm`, `clipvalue` and
            `global_clipnorm`.
        relative_step: Bool. If `learning_rate` is a constant and this is
            True, the step size is `min(learning_rate, 1 / sqrt(t))`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps: as for every
            `keras.optimizers.Optimizer`.
        name: The optimizer's name, a valid TensorFlow name scope.

    Options beyond `keras.optimizers.Adafactor` (the defaults keep its
    documented behaviour):
        beta_1: None or a float in [0, 1). Momentum: an exponential moving
            average of the final update, in one parameter-sized buffer.
        momentum_dtype: The dtype of that buffer ("bfloat16" halves it).
        scale_parameter: Bool. False drops the `max(epsilon_2, RMS(x))`
            factor (optax's `multiply_by_parameter_scale`).
        min_dim_size_to_factor: None or an int >= 1. Factor a variable only
            when both of its last two dimensions are at least this size.
        factored: Bool. False keeps a full second moment for every variable.
        decay_offset: An int >= 0. The `beta_2` schedule counts steps from
            this iteration on (optax's `decay_offset`); before it, beta_2 = 0.
        stochastic_rounding: Bool. Round the new value of a bfloat16 variable
            stochastically rather than to nearest, so that updates smaller
            than half an ulp survive on average.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="adafactor",
        beta_1=None,
        momentum_dtype="float32",
        scale_parameter=True,
        min_dim_size_to_factor=None,
        factored=True,
        decay_offset=0,
        stochastic_rounding=False,
        **kwargs,
    ):
        _validate(locals())
        if _is_real(learning_rate):
            learning_rate = float(learning_rate)
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=_as_int(ema_overwrite_frequency),
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=_as_int(gradient_accumulation_steps),
            **kwargs,
        )
        self.beta_2_decay = float(beta_2_decay)
        self.epsilon_1 = float(epsilon_1)
        self.epsilon_2 = float(epsilon_2)
        self.clip_threshold = float(clip_threshold)
        self.relative_step = relative_step
        self.beta_1 = None if beta_1 is None else float(beta_1)
        self.momentum_dtype = momentum_dtype
        self.scale_parameter = scale_parameter
        self.min_dim_size_to_factor = _as_int(min_dim_size_to_factor)
        self.factored = factored
        self.decay_offset = int(decay_offset)
        self.stochastic_rounding = stochastic_rounding
        if stochastic_rounding:
            self._seed_generator = keras.random.SeedGenerator(name="rounding")
            self._track_variable(self._seed_generator.state)

    def _factors(self, shape):
        """Whether a variable of this shape keeps factored statistics."""
        shape = tuple(shape)
        if not self.factored or len(shape) < 2:
            return False
        least = self.min_dim_size_to_factor
        return least is None or min(shape[-2:]) >= least

    def build(self, var_list):
        """Create `r` and `c` for variables of rank >= 2, `v` for the rest.
        A variable that is not of a floating-point dtype is refused."""
        if self.built:
            return
        for var in var_list:
            dtype = keras.backend.standardize_dtype(var.dtype)
            if "float" not in dtype:
                raise ValueError(
                    "Adafactor updates floating-point variables only. Received: "
                    f"variable {getattr(var, 'path', var.name)!r} of dtype {dtype}"
                )
        super().build(var_list)
        self._r, self._c, self._v, self._m = [], [], [], []
        for var in var_list:
            r = c = v = m = None
            if not self._overwrite_variable_with_gradient(var):
                layout = getattr(var, "_layout", None)
                if self._factors(var.shape):
                    shapes = _factored(var.shape)
                    layouts = _factored_layouts(layout)
                    r = self._add_state(var, "r", shapes[0], layouts[0])
                    c = self._add_state(var, "c", shapes[1], layouts[1])
                else:
                    v = self._add_state(var, "v", var.shape, layout)
                if self.beta_1 is not None:
                    m = self._add_state(
                        var, "m", var.shape, layout, self.momentum_dtype
                    )
            self._r.append(r)
            self._c.append(c)
            self._v.append(v)
            self._m.append(m)

    def _add_state(self, var, suffix, shape, layout, dtype=None):
        """A zero-initialised statistic named `{variable path}_{suffix}`."""
        prefix = getattr(var, "path", None) or str(var.name)
        prefix = prefix.replace("/", "_").replace(":", "_")
        return self.add_variable(
            shape=shape,
            dtype=dtype or _state_dtype(var.dtype),
            name=f"{prefix}_{suffix}",
            layout=layout,
        )

    def _step_size(self, learning_rate, step, dtype):
        """rho_t: the learning rate, capped at 1/sqrt(t) as documented."""
        lr = ops.cast(learning_rate, dtype)
        constant = isinstance(self._learning_rate, keras.Variable)
        if constant and self.relative_step:
            lr = ops.minimum(lr, ops.rsqrt(step))
        return lr

    def apply(self, grads, trainable_variables=None):
        """As Keras's, but a sparse gradient is made dense first where an
        option of Keras's base optimizer cannot take it sparse, and has its
        duplicate indices summed first where Keras clips: the gradient is
        clipped, not its slices."""
        grads = list(grads)
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
        options = _KERAS_NEEDS_DENSE.get(keras.backend.backend(), ())
        if any(getattr(self, option) for option in options):
            grads = [g if _row_sparse(g) is None else _dense(g) for g in grads]
        elif self.clipnorm or self.global_clipnorm or self.clipvalue:
            variables = trainable_variables or self._trainable_variables
            grads = [_coalesced(g, v.shape) for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def _sparse_rows(self, gradient, variable, momentum):
        """(indices, values) when the update can be written row-sparse.

        A row without a gradient gets an update of exactly zero, so only the
        rows of a row-sparse gradient change. Momentum moves every row, and
        stochastic rounding rewrites every row: those take the dense path.
        """
        if momentum is not None or self._rounds_stochastically(variable):
            return None
        return _row_sparse(gradient)

    def _rounds_stochastically(self, variable):
        return self.stochastic_rounding and variable.dtype == "bfloat16"

    def update_step(self, gradient, variable, learning_rate):
        """One Adafactor step for one variable (Algorithms 2 and 4).

        A gradient sparse along axis 0 (an embedding's) is handled row by
        row: duplicate indices are summed first, every statistic decays, only
        the touched rows add their squares, and only they are written back.
        A dense gradient is the case in which every row is touched.

        Finite wherever float32 holds the documented update: the statistics
        are kept >= epsilon_1, the row factor is formed as
        rsqrt(r) * sqrt(mean(r)) rather than rsqrt(r / mean(r)), whose
        quotient is a subnormal that flush-to-zero backends (TensorFlow and
        XLA on CPU, GPUs) turn into 0, and a zero gradient meets only finite
        factors. No sum of squares is formed where it could overflow while
        the mean it stands for is in range: the statistics, the update's RMS
        and the weights' RMS are made from means and scaled squares.
        """
        shape = tuple(variable.shape)
        if 0 in shape:
            return
        index = self._get_variable_index(variable)
        r, c, v, m = self._r[index], self._c[index], self._v[index], self._m[index]
        dtype = _state_dtype(variable.dtype)
        sparse = self._sparse_rows(gradient, variable, m)
        if sparse is None:
            indices, g = None, _dense(gradient)
        else:
            indices, g = _sum_duplicates(*sparse, num_rows=shape[0])
        g = ops.cast(g, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        decay_step = ops.maximum(step - float(self.decay_offset), 1.0)
        # 1 - beta_2_t, formed as itself: as 1 - beta it would round to 0.
        new_share = ops.power(decay_step, self.beta_2_decay)
        beta = 1.0 - new_share

        def decayed(stat, term):
            # beta stat + (1 - beta) (g^2 + epsilon_1), where `term` is
            # (1 - beta) g^2, formed without overflow.
            new = beta * stat + (term + new_share * self.epsilon_1)
            # >= epsilon_1 exactly; rounding and flush-to-zero could go below.
            return ops.maximum(new, self.epsilon_1)

        def ema(stat, term):
            new = decayed(stat, term)
            self.assign(stat, new)
            return new

        size = math.prod(shape)
        if v is None:
            # Means of g^2 over columns and over rows, from the squares of
            # g / sqrt(max(rows, cols)): no square or sum of them leaves
            # float32's range unless the mean does.
            rows, cols = shape[-2:]
            longest = max(rows, cols)
            weight = _weight_scale(self.epsilon_1)

            def new_term(sums, length):
                return new_share * sums * (longest / length)

            # c and the mean of r have axis 0 of the variable from rank 3 on.
            sliced = len(shape) > 2
            row_sums, col_sums, weighted = _square_sums(
                g,
                dtype,
                1.0 / math.sqrt(longest),
                _rows(ops.convert_to_tensor(r), indices),
                lambda old, sums: weight / decayed(old, new_term(sums, cols)),
            )
            row_terms = _spread(new_term(row_sums, cols), indices, r.shape)
            # Column means over all rows, touched or not.
            col_terms = new_term(col_sums, rows)
            if sliced:
                col_terms = _spread(col_terms, indices, c.shape)
            new_r, new_c = ema(r, row_terms), ema(c, col_terms)
            mean_r = _mean(new_r, axis=-1)
            if sliced:
                mean_r, new_c = _rows(mean_r, indices), _rows(new_c, indices)
            root_mean_r = ops.sqrt(mean_r)
            row = ops.rsqrt(_rows(new_r, indices)) * root_mean_r
            col = ops.rsqrt(new_c)
            # mean u_ij^2 = mean_ij g_ij^2 mean(r) / (r_i c_j): `weighted`
            # holds sum_i weight g_ij^2 / (max(rows, cols) r_i); each factor
            # stays in range, and so does each column's term.
            factor = col * root_mean_r
            terms = weighted * factor * factor
            mean_u2 = _mean(terms, count=size // rows) * (longest / (rows * weight))
        else:
            square = ops.square(g * ops.sqrt(new_share))
            new_v = ema(v, _spread(square, indices, v.shape))
            u = g * ops.rsqrt(_rows(new_v, indices))
            mean_u2 = ops.sum(ops.square(u)) / size

        rms_u = ops.sqrt(mean_u2)
        scale = self._step_size(learning_rate, step, dtype) / ops.maximum(
            1.0, rms_u / self.clip_threshold
        )
        if self.scale_parameter:
            rms_x = ops.sqrt(_mean_square(variable, dtype))
            scale = scale * ops.maximum(self.epsilon_2, rms_x)
        rounds = self._rounds_stochastically(variable)
        in_place = keras.backend.backend() == "torch" and _rows_per_block(shape)
        if v is None and m is None and indices is None and not rounds and in_place:
            _subtract_in_place(variable, g, row, col * scale)
            return
        if v is None:
            # Two full-size products, each factor finite: a zero row or
            # column of g meets finite factors and stays zero.
            delta = _scale(g, row, col * scale)
        else:
            delta = u * scale
        if m is not None:
            delta = self.beta_1 * ops.cast(m, dtype) + (1.0 - self.beta_1) * delta
            self.assign(m, ops.cast(delta, m.dtype))
        if rounds:
            new_x = ops.cast(variable, "float32") - delta
            self.assign(variable, _stochastic_round(new_x, self._seed_generator))
            return
        delta = ops.cast(delta, variable.dtype)
        if indices is not None:
            delta = _like(gradient, indices, delta, shape)
        self.assign_sub(variable, delta)

    def load_own_variables(self, store):
        """As Keras's, but the saved state is matched to this optimizer's
        variables by what each holds, its shape and kind, and is loaded
        whole or not at all.

        Only the learning-rate variable may be missing on one side: a model
        saved with a learning-rate function has none, and an optimizer given
        a function needs none. Any other difference (momentum, factoring,
        stochastic rounding, another model) skips the optimizer's state with
        Keras's warning and leaves this optimizer's as it is.
        """
        saved = [store[str(i)] for i in range(len(store.keys()))]
        ours = list(self.variables)
        pairs = _pairing(ours, saved, self._learning_rate)
        if pairs is not None and all(map(_holds, *pairs)):
            for variable, value in zip(*pairs):
                variable.assign(value)
            return
        warnings.warn(
            f"Skipping variable loading for optimizer '{self.name}', because "
            f"its {len(ours)} variables do not match the {len(saved)} saved "
            "ones (an optimizer made with other options, or for another "
            "model, or not built yet); its state is left as it is.",
            stacklevel=2,
        )

    def get_config(self):
        """The config Keras saves. A learning rate that is a function Keras
        cannot restore (an R function, a lambda) is saved as its current
        value, with a warning, so that the file always loads."""
        function = self._learning_rate
        if _restorable(function):
            config = super().get_config()
        else:
            rate = ops.convert_to_tensor(self.learning_rate)
            warn(
                "The learning rate is a function that a saved model cannot "
                f"restore; its current value, {float(rate):g}, is saved instead, "
                "and a loaded model trains at that constant rate. To save a "
                "schedule, use a keras.optimizers.schedules."
                "LearningRateSchedule (in R, keras3's learning_rate_schedule_*())."
            )
            # Keras serializes any callable; let it see the value instead.
            try:
                self._learning_rate = rate
                config = super().get_config()
            finally:
                self._learning_rate = function
            # The function was used as it is; so is the value that replaces it.
            config["relative_step"] = False
        config.update(
            {
                "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold,
                "relative_step": config.get("relative_step", self.relative_step),
                "beta_1": self.beta_1,
                "momentum_dtype": self.momentum_dtype,
                "scale_parameter": self.scale_parameter,
                "min_dim_size_to_factor": self.min_dim_size_to_factor,
                "factored": self.factored,
                "decay_offset": self.decay_offset,
                "stochastic_rounding": self.stochastic_rounding,
            }
        )
        return config
