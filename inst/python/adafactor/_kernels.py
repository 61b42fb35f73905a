"""The step's reductions and writes, exact in float32 and fast on each backend.

The one module that names a backend: what Keras's ops leave slow, inexact or
memory-hungry somewhere is done here, each trick with the measurement that
justifies it (bench/, sections b, d and f), and so are the backends' forms
of a sparse gradient.
"""

import math
import threading
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

FLOAT32_MAX = float(np.finfo("float32").max)
# The least normal float32: TensorFlow, XLA and GPUs flush smaller numbers
# to zero.
TINY = 2.0**-126

# A matrix larger than this many elements (2 MB of float32) is reduced in
# blocks of rows. Compiled, XLA on CPU would otherwise keep g^2 as a
# parameter-sized temporary (it does not fuse a square into a matrix
# product) and reduce it slowly; torch, running eagerly, would allocate it.
# A block stays in cache: bench/, sections b, d and f.
BLOCK = 1 << 19


# ------------------------------------------------------------ reductions


def rows_per_block(shape):
    """Rows in a block of a matrix of this shape, or None for one block
    (also when the shape is not known when the step is traced: the values
    of a sparse gradient, whose rows are the touched ones)."""
    if len(shape) != 2 or None in shape or math.prod(shape) <= BLOCK:
        return None
    return max(1, BLOCK // shape[1])


def _by_blocks(reduce, x, dtype, r=None, rows=1, columns=0):
    """reduce(rows of x, the same rows of r) over blocks of rows of x, in one
    pass: its first `rows` results (a value per row, in `dtype`) written
    into place, the `columns` others (a value per column) summed."""
    size = rows_per_block(tuple(x.shape))
    if size is None:
        return reduce(x, r)
    if keras.backend.backend() == "torch":
        return _by_views(reduce, x, r, size, rows)
    n, m = x.shape

    def add(start, stop, sums):
        # Rows start:stop, or in the loop `size` rows from a traced start.
        def block(t):
            if t is None:
                return None
            if _is_tensorflow_variable(t):  # see _scaled_root_mean_square
                import tensorflow as tf

                count = size if stop is None else stop - start
                return tf.gather(t, tf.range(count) + start)
            if stop is not None:
                return t[start:stop]
            rest = tuple(t.shape[1:])
            return ops.slice(t, (start,) + (0,) * len(rest), (size,) + rest)

        new = reduce(block(x), block(r))
        placed = tuple(
            ops.slice_update(a, (start,), b) for a, b in zip(sums[:rows], new)
        )
        return placed + tuple(a + b for a, b in zip(sums[rows:], new[rows:]))

    sums = (ops.zeros((n,), dtype),) * rows + (ops.zeros((m,), dtype),) * columns
    sums = _fori_loop(0, n // size, lambda i, s: add(i * size, None, s), sums)
    done = n // size * size
    return add(done, n, sums) if done < n else sums


def _by_views(reduce, x, r, size, rows):
    """_by_blocks on torch, a loop in Python over views of the blocks: it
    runs the loop anyway (eagerly, or unrolled by torch.compile), and
    placing each block's results as the traced loop does copies them."""
    import torch

    def block(t, start):
        return None if t is None else t[start : start + size]

    results = [reduce(x[i : i + size], block(r, i)) for i in range(0, x.shape[0], size)]
    placed = [torch.cat(parts) for parts in zip(*(b[:rows] for b in results))]
    summed = [sum(parts[1:], parts[0]) for parts in zip(*(b[rows:] for b in results))]
    return tuple(placed + summed)


def _is_tensorflow_variable(t):
    return hasattr(t, "sparse_read")  # a tf.Variable: gathers read in place


def _tensorflow_variable(x):
    """The tf.Variable of a Keras variable (Keras's TensorFlow optimizer
    passes update_step the tf.Variable itself)."""
    return x if _is_tensorflow_variable(x) else x.value


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


def _squares(x, dtype, scale):
    """(scale * x)^2 in `dtype`. Scaling before squaring keeps every square
    and sum inside float32's range wherever the mean it stands for is: with
    scale^2 = 1 / N, the sum of N squares is their mean. Eager torch writes
    them into its scratch buffer (see scratch): valid until the next call."""
    if not _runs_eagerly_on_torch():
        return ops.square(ops.cast(x, dtype) * scale)
    import torch

    out = scratch(x.shape, dtype, x.device)
    with torch.no_grad():  # out= refuses a gradient that requires grad
        if x.dtype == out.dtype:
            torch.mul(x, scale, out=out)
        else:  # cast first: mul would multiply in x's dtype
            out.copy_(x).mul_(scale)
        return out.mul_(out)


# --------------------------------------------------------- torch's scratch

_SCRATCH = threading.local()


def _runs_eagerly_on_torch():
    if keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling()


def scratch(shape, dtype, device):
    """A torch buffer of `shape` for a block's temporary: the same memory
    from block to block and step to step, one block's worth per thread,
    dtype and device. (A larger tensor, unsplit, is allocated afresh.)

    torch allocates its CPU tensors from the C library, which maps each one
    of a block's size afresh and returns it to the system when it is freed:
    every temporary of 2 MB costs its 512 page faults again. Measured on
    bench/'s machine: 8 blocks of squares and their row sums took 5.2 ms
    so, 1.1 ms with the memory kept (bench/, sections b and f).
    """
    import torch

    dtype = getattr(torch, keras.backend.standardize_dtype(dtype))
    size = math.prod(shape)
    if size > BLOCK:
        return torch.empty(shape, dtype=dtype, device=device)
    kept = _SCRATCH.__dict__.get((dtype, str(device)))
    if kept is None or kept.numel() < size:
        kept = torch.empty(BLOCK, dtype=dtype, device=device)
        _SCRATCH.__dict__[(dtype, str(device))] = kept
    return kept[:size].view(shape)


def row_square_sums(x, dtype, scale):
    """The sums of the squares of scale * x over its last axis, in `dtype`.
    Reductions sum pairwise on every backend: exact to float32 over any
    length, where a matrix-vector product with ones drifted by 2.5e-4 over
    600,000 rows."""
    return ops.sum(_squares(x, dtype, scale), axis=-1)


class Moments(NamedTuple):
    """What one pass over G_t gives the factored step (see factored_moments)."""

    # R_t at the gradient's rows. Where an index occurs again later, and
    # at a dropped index, only decayed: the gradient's row is zero there
    # (see _sparse.sum_duplicates).
    r: object
    r_term: object  # (1 - beta_2_t) times the row means of G_t^2
    c_term: object  # (1 - beta_2_t) times the column means of G_t^2


def factored_moments(g, r, decay, shape):
    """The new row and column statistics of Section 3, from one pass over
    the gradient, block by block.

    g holds the gradient's rows of a variable of `shape` (its rows, or the
    touched rows of a row-sparse gradient), r the old R at those rows, and
    `decay` the step's beta_2_t and epsilon_1.

    The squares of G_t are summed as they are, exact down to the least
    square float32 holds (entries of 2^-63 and up). Where a sum overflows
    float32 while the mean it stands for may not (entries near 1.8e19 and
    up), the pass is made again with large and small entries apart (see
    _split_square_sums). Squares below float32's least normal number are
    lost, as in any float32 computation of G_t^2: epsilon_1 >= 2^-102
    keeps that loss below float32's rounding of the statistics.
    """
    rows, cols = shape[-2:]
    # A variable is read once, before the loop over its blocks: under JAX's
    # stateless scope a read inside the loop would see the value outside
    # the scope.
    r = ops.convert_to_tensor(r)

    def moments(split):
        def reduce(g, r):
            row_means, col_sums = _square_sums(g, split, max(rows, cols), cols)
            r_term = decay.share * row_means
            return (decay(r, r_term), r_term) + col_sums

        sums = _by_blocks(reduce, g, g.dtype, r, rows=2, columns=1 + split)
        col_means = sums[2] / rows
        if split:
            col_means = sums[2] * (max(rows, cols) / rows) + sums[3] / rows
        return Moments(sums[0], sums[1], decay.share * col_means)

    plain = moments(split=False)
    finite = ops.logical_and(all_finite(plain.r_term), all_finite(plain.c_term))
    return cond(finite, lambda: plain, lambda: moments(split=True))


def _square_sums(g, split, longest, cols):
    """The row means of G^2 and the column sums of G^2 (plain), or the
    column sums of its large and its small entries apart (split).

    Split: an entry below 2^60 / sqrt(longest) is squared as it is, a
    larger one scaled by 1 / sqrt(longest), so that no square or sum of
    either kind overflows, and no square of a large entry is below float32's
    normal range."""
    if not split:
        squares = _squares(g, g.dtype, 1.0)
        return ops.sum(squares, -1) / cols, (ops.sum(squares, -2),)
    small = ops.abs(g) < 2.0**60 / math.sqrt(longest)
    zero = ops.zeros((), g.dtype)
    large = ops.square(ops.where(small, zero, g) * (1.0 / math.sqrt(longest)))
    small = ops.square(ops.where(small, g, zero))
    row_means = ops.sum(large, -1) * (longest / cols) + ops.sum(small, -1) / cols
    return row_means, (ops.sum(large, -2), ops.sum(small, -2))


def mean(x, axis=None, count=None):
    """The mean of x >= 0 over `axis` (kept), or over all of x as if it had
    `count` elements, formed as max(x) * mean(x / max(x)): a plain sum of
    x overflows where the mean is still in range."""
    top = ops.maximum(ops.max(x, axis=axis, keepdims=True), TINY)
    if count is None:
        return top * ops.mean(x / top, axis=axis, keepdims=True)
    return ops.reshape(top, ()) * (ops.sum(x / top) / count)


def root_mean_square(x, dtype):
    """RMS(x) of a variable, computed in `dtype`: from the sum of its squares
    as they are, in one fused pass with no temporary (TensorFlow's l2_loss,
    torch's vector_norm, XLA's fusion), exact down to entries of 2^-63;
    where that sum overflows, from the squares of x / sqrt(size), block by
    block.

    TensorFlow reads the variable as it is: after its sparse writes the step
    puts it back into copy-on-write mode (see copy_on_write), where a dense
    read does not copy it. No op here is one XLA cannot compile, so a step
    traced outside XLA runs inside it too.
    """
    norm = _norm(x, dtype)
    rms = norm * (1.0 / math.sqrt(math.prod(x.shape)))
    return unless_overflow(norm, rms, lambda: _scaled_root_mean_square(x, dtype))


def _norm(x, dtype):
    """sqrt(sum(x^2)) of a variable in `dtype`, or inf where the sum
    overflows."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.cast(tf.convert_to_tensor(_tensorflow_variable(x)), dtype)
        return tf.sqrt(2.0 * tf.nn.l2_loss(x))  # l2_loss: sum(x^2) / 2
    x = ops.convert_to_tensor(x)
    if backend == "torch":
        import torch

        with torch.no_grad():
            dtype = getattr(torch, keras.backend.standardize_dtype(dtype))
            return torch.linalg.vector_norm(x, dtype=dtype)
    return ops.sqrt(ops.sum(ops.square(ops.cast(x, dtype))))


def unless_overflow(value, result, fallback):
    """`result` where `value` is finite, else fallback(): a fast form and
    one that cannot overflow."""
    return cond(ops.all(ops.isfinite(value)), lambda: result, fallback)


def _outside_xla(x):
    """The tf.Variable of x where TensorFlow can switch its copy mode:
    outside XLA, which has no kernel for it; else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if tf.__internal__.get_enclosing_xla_context() is not None:
        return None
    return _tensorflow_variable(x)


def copy_on_write(variable):
    """A variable TensorFlow has just written sparsely put back, outside
    XLA, into the mode in which a dense read does not copy it.

    A sparse write puts a variable in copy-on-read mode: every dense read
    then copies it whole, as Keras's Embedding does at the next forward
    pass, and as RMS(x) would at the next step. In copy-on-write mode, a
    dense read is not copied; a later write copies the variable first only
    if such a read is still held. Either mode gives the same values; only
    the copies differ (bench/, section f without XLA). XLA cannot compile
    the switch: a step traced outside XLA with a sparse gradient cannot be
    run inside XLA afterwards.
    """
    variable = _outside_xla(variable)
    if variable is not None:
        import tensorflow as tf

        tf.raw_ops.DisableCopyOnRead(resource=variable.handle)


def _scaled_root_mean_square(x, dtype):
    """RMS(x) from the squares of x / sqrt(size), by blocks of rows."""
    scale = 1.0 / math.sqrt(math.prod(x.shape))
    if keras.backend.backend() == "tensorflow" and len(x.shape) >= 2:
        # Read block by block through gathers, which read only their rows,
        # where a dense read of a variable TensorFlow has written sparsely
        # would copy it whole (see copy_on_write).
        x = _tensorflow_variable(x)
    else:
        # Read once, before the loop over its blocks (see factored_moments),
        # and as a constant: on torch, whose step is not run under no_grad,
        # autograd would otherwise record every block (7x slower).
        x = ops.stop_gradient(ops.convert_to_tensor(x))
    if len(x.shape) < 2:
        return ops.sqrt(ops.sum(_squares(x, dtype, scale)))
    sums = _by_blocks(lambda x, _: (row_square_sums(x, dtype, scale),), x, dtype)
    return ops.sqrt(ops.sum(sums[0]))


# ---------------------------------------------------------------- writes


class Product(NamedTuple):
    """The factored update, g * row[..., :, None] * col[..., None, :], kept
    as its factors until it is written."""

    g: object
    row: object
    col: object

    def times(self, scale):
        return _product(self.g, self.row, self.col * scale)

    def mean_square(self, count):
        """mean(U^2) over a variable of `count` elements, of which these
        are the rows (the others are 0): the sum of the squares of
        U / sqrt(count), each entry formed as the update is, g times its row
        factor, then its column factor. No square, sum or product then
        leaves float32's range unless U's mean square does: a sum of
        squares of G_t weighted by the factors afterwards would (a spike in
        G_t makes mean(R_t) / C_t huge where G_t^2 / R_t is tiny)."""
        col = self.col * (1.0 / math.sqrt(count))

        def reduce(g, row):
            return (ops.sum(_squared_product(g, row, col), axis=-2),)

        row = ops.convert_to_tensor(self.row)
        (sums,) = _by_blocks(reduce, self.g, self.g.dtype, row, rows=0, columns=1)
        return ops.sum(sums)

    def subtract_in_place(self, variable, scale):
        """variable -= self.times(scale), block by block and in place, on
        torch for a matrix of more than one block; returns whether it did.

        torch runs eagerly: `assign_sub` would allocate the update and the
        new value, each the size of the variable. TensorFlow and JAX compile
        the same expression into one in-place loop.
        """
        shape = tuple(variable.shape)
        if keras.backend.backend() != "torch" or rows_per_block(shape) is None:
            return False
        if tuple(self.g.shape) != shape:  # some rows (see nonzero_rows)
            return False
        subtract_in_place(variable, self.g, self.row, self.col * scale)
        return True


class Elementwise(NamedTuple):
    """An update held whole (the unfactored U_t)."""

    u: object

    def times(self, scale):
        return self.u * scale

    def mean_square(self, count):
        """mean(U^2) over a variable of `count` elements (see Product)."""
        return ops.sum(ops.square(self.u * (1.0 / math.sqrt(count))))

    def subtract_in_place(self, variable, scale):
        return False


class Reordered(NamedTuple):
    """An update computed with the variable's axes in the order `axes`."""

    update: object
    axes: tuple

    def times(self, scale):
        inverse = tuple(int(a) for a in np.argsort(self.axes))
        return ops.transpose(self.update.times(scale), inverse)

    def subtract_in_place(self, variable, scale):
        return False


def _is_identity(axes):
    return tuple(axes) == tuple(range(len(axes)))


def ordered(x, axes):
    """x with its axes in the order `axes`."""
    return x if _is_identity(axes) else ops.transpose(x, axes)


def in_order(update, axes):
    """An update computed on ordered(g, axes), for the variable's own order."""
    return update if _is_identity(axes) else Reordered(update, tuple(axes))


def _product(g, row, col):
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


def _squared_product(g, row, col):
    """_product(g, row, col) squared; eager torch writes it into its
    scratch buffer (see scratch)."""
    if not _runs_eagerly_on_torch():
        return ops.square(_product(g, row, col))
    import torch

    out = scratch(g.shape, g.dtype, g.device)
    with torch.no_grad():
        torch.mul(g, row[..., None], out=out)
        out.mul_(col[..., None, :])
        return out.mul_(out)


def subtract_in_place(variable, g, row, col):
    """variable -= g * row[:, None] * col[None, :], block by block, in place
    (torch; see Product.subtract_in_place)."""
    import torch

    x = variable.value
    size = rows_per_block(tuple(x.shape))
    with torch.no_grad():
        for start in range(0, x.shape[0], size):
            rows = slice(start, start + size)
            if x.dtype != g.dtype or not _runs_eagerly_on_torch():
                x[rows] -= _product(g[rows], row[rows], col).to(x.dtype)
                continue
            block = scratch(g[rows].shape, g.dtype, g.device)
            torch.mul(g[rows], row[rows, None], out=block)
            x[rows].addcmul_(block, col[None, :], value=-1)


def scatter_rows(indices, rows, shape):
    """Zeros of `shape` with `rows` added at `indices` (ops.scatter; on
    torch, whose ops.scatter adds the rows one by one in Python, 30 ms for
    4,096 rows, a tensor's index_add_)."""
    if keras.backend.backend() != "torch":
        return ops.scatter(ops.expand_dims(indices, -1), rows, shape)
    return ops.zeros(shape, rows.dtype).index_add_(0, indices.long(), rows)


def subtract_rows(variable, indices, delta):
    """variable[indices] -= delta, in place, each index once (torch; see
    nonzero_rows)."""
    import torch

    with torch.no_grad():
        variable.value.index_add_(0, indices, delta, alpha=-1)


def stochastic_round(x, seed):
    """float32 to bfloat16, rounding up with probability equal to the part
    of x that bfloat16 cannot hold, so that the rounding is unbiased.

    bfloat16 is the upper half of a float32: uniform noise added to the
    lower 16 bits, then cut off, rounds stochastically.
    """
    bits = ops.view(x, "int32")
    noise = keras.random.randint(ops.shape(x), 0, 1 << 16, dtype="int32", seed=seed)
    bits = ops.bitwise_and(bits + noise, -(1 << 16))
    return ops.cast(ops.view(bits, "float32"), "bfloat16")


# ------------------------------------------------------ sparse gradients

# Options of keras.optimizers.Optimizer that fail on a sparse gradient (Keras
# 3.15): TensorFlow divides an IndexedSlices by the loss scale with `/`; JAX's
# accumulation and clipping cannot hold a BCOO.
_KERAS_NEEDS_DENSE = {
    "tensorflow": ("loss_scale_factor",),
    "jax": ("gradient_accumulation_steps", "clipnorm", "global_clipnorm", "clipvalue"),
}


def all_finite(x):
    """Whether every entry of x is finite, in one pass over it.

    torch: its least and largest entries, made together by aminmax with no
    temporary the size of x, where a NaN propagates (all(isfinite(x)) took
    about twice as long on 4 x 2048^2). Elsewhere all(isfinite(x)), which
    XLA fuses into one reduction: JAX's min and max took more than twice as
    long, and TensorFlow's CPU max can drop a NaN.
    """
    if keras.backend.backend() == "torch":
        import torch

        if x.numel() == 0:  # no rows touched
            return torch.tensor(True)
        least, largest = torch.aminmax(x)
        return torch.isfinite(least) & torch.isfinite(largest)
    return ops.all(ops.isfinite(x))


def cond(pred, true_fn, false_fn):
    """ops.cond, but a plain `if` where JAX runs eagerly: jax.lax.cond would
    trace the branch that writes the variables and leave its tracers in
    them."""
    if keras.backend.backend() == "jax":
        import jax

        if not isinstance(pred, jax.core.Tracer):
            return true_fn() if bool(pred) else false_fn()
    return ops.cond(pred, true_fn, false_fn)


def refuse_in_distributed_replica(option):
    """A ValueError naming `option` inside a tf.distribute strategy's
    replica: its branch would have to all-reduce inside a cond, which
    tf.distribute refuses, and a replica's own gradients may be finite where
    the sum of all is not."""
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if tf.distribute.has_strategy():
        raise ValueError(
            f"{option} is not supported under a tf.distribute strategy; "
            "wrap the optimizer in keras.optimizers.LossScaleOptimizer, which "
            "skips a step with non-finite gradients there."
        )


def nonzero_rows(gradient):
    """The indices of the rows of a dense gradient that are not all zero,
    where at most half are and all are finite, else None: eager torch on a
    CPU, for a matrix of more than a block.

    torch gives an embedding a dense gradient, zero outside the rows its
    batch looked up; the step then reads and writes those rows alone, as
    it does for TensorFlow's sparse gradient, at the cost of two reductions
    over the gradient (each row's largest and least entries; aminmax, in
    one, took 5x as long). bench/, section f: 1.97x SGD's step before, 1.24x
    after. A sample of 64 rows spares them where most rows are touched (a
    Dense layer's). A NaN or an infinity keeps the dense step, which
    spreads it to every row, as before.
    """
    if not _runs_eagerly_on_torch() or len(gradient.shape) != 2:
        return None
    if gradient.device.type != "cpu" or math.prod(gradient.shape) <= BLOCK:
        return None  # (on a GPU, the counts would wait for the device)
    import torch

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


def options_needing_dense():
    """The base optimizer's options that this backend applies only to a
    dense gradient."""
    return _KERAS_NEEDS_DENSE.get(keras.backend.backend(), ())


def dense(gradient):
    """A gradient as a dense tensor, as its backend makes one of a sparse
    gradient (duplicate indices add up; on bad ones, see
    _sparse.sum_duplicates)."""
    if type(gradient).__name__ == "IndexedSlices":
        import tensorflow as tf

        return tf.convert_to_tensor(gradient)
    return ops.convert_to_tensor(gradient, sparse=False)


def sparse_like(gradient, indices, values, shape):
    """Rows `values` at `indices`, as the same kind of sparse tensor."""
    if type(gradient).__name__ == "IndexedSlices":
        import tensorflow as tf

        return tf.IndexedSlices(values, indices, tf.constant(shape, "int64"))
    return type(gradient)((values, ops.expand_dims(indices, -1)), shape=shape)


def negative_indices_count_from_end():
    """Whether the backend's dense form of a sparse gradient counts a
    negative index from the end, as NumPy does (JAX), or drops it."""
    return keras.backend.backend() == "jax"
