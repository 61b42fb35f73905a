"""TensorFlow: its graph's loops and branches, IndexedSlices, its variables'
copy modes and tf.distribute."""

import tensorflow as tf

from adafactor.backend import generic
from adafactor.backend.generic import (  # noqa: F401
    SQUARES_DTYPE,
    __all__,
    all_finite,
    assign_each,
    nonzero_rows,
    ops,
    scatter_rows,
    squares,
    stepping,
    subtract_each,
    subtract_product,
    targets,
)

NAME = "tensorflow"
# Keras 3.15 divides an IndexedSlices by the loss scale with `/`.
OPTIONS_NEEDING_DENSE = ("loss_scale_factor",)
NEGATIVE_INDICES_COUNT_FROM_END = False


def fori_loop(lower, upper, body, state):
    """ops.fori_loop, one iteration at a time.

    TensorFlow's graph executor (without XLA) runs up to 10 iterations of a
    loop at once, each with its own block-sized temporaries, which its
    allocator then keeps (bench/, section d), for no speed: the blocks' sums
    depend on each other anyway.
    """
    return tf.while_loop(
        lambda i, _: i < upper,
        lambda i, s: (i + 1, body(i, s)),
        (lower, state),
        parallel_iterations=1,
    )[1]


def cond(pred, true_fn, false_fn):
    return tf.cond(pred, true_fn, false_fn)


def stack(tensors):
    return tf.stack([tf.convert_to_tensor(t) for t in tensors])


def product(g, row, col):
    """g * row[..., :, None] * col[..., None, :], with no temporary beyond
    the result.

    TensorFlow's graph optimizer reorders a chain of products so that the
    broadcast factors meet first, which builds their outer product, a second
    tensor the size of g. The second product is TensorFlow's MulNoNan there,
    which it leaves alone (and which gives 0, not NaN, where col is 0).

    And g * row waits for col: the graph executor would otherwise run it as
    soon as row is known, while the step still reads g for the update's
    RMS, and could not then write the product into g's memory (bench/,
    section d).
    """
    with tf.control_dependencies([col]):
        scaled = g * tf.expand_dims(row, -1)
    return tf.math.multiply_no_nan(scaled, tf.expand_dims(col, -2))


def squared_product(g, row, col):
    return tf.square(product(g, row, col))


def norm(x, dtype):
    """sqrt(sum(x^2)) outside XLA, from one fused pass over the variable as
    it lies in memory, with no temporary (l2_loss is sum(x^2) / 2), or inf;
    inside XLA, None (by blocks: see generic.norm).

    A plain dense read: after its sparse writes the step puts a variable
    back into copy-on-write mode (see subtract_rows), where such a read
    does not copy it; and no op here is one XLA cannot compile, so a step
    traced outside XLA runs inside it too.
    """
    if tf.__internal__.get_enclosing_xla_context() is not None:
        return None
    x = tf.cast(tf.convert_to_tensor(_variable(x)), dtype)
    return tf.sqrt(2.0 * tf.nn.l2_loss(x))


def readable(x):
    """The tf.Variable of a matrix, whose blocks gathers read in place, where
    a dense read of a variable TensorFlow has written sparsely would copy it
    whole; a vector's value."""
    if len(x.shape) >= 2:
        return _variable(x)
    return generic.readable(x)


def over_blocks(reduce, x, r, size, rows, columns, dtype, block=None):
    return generic.over_blocks(reduce, x, r, size, rows, columns, dtype, _rows_of)


def _rows_of(t, start, count):
    if hasattr(t, "sparse_read"):  # a tf.Variable: read its rows in place
        return tf.gather(t, tf.range(count) + start)
    return generic._rows_of(t, start, count)


def _variable(x):
    """The tf.Variable of a Keras variable (Keras's TensorFlow optimizer
    passes update_step the tf.Variable itself)."""
    return x if hasattr(x, "sparse_read") else x.value


def row_sparse(gradient):
    """(indices, values) of an IndexedSlices, with indices in any container
    TensorFlow accepts."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient.indices), gradient.values
    return None


def dense(gradient):
    return tf.convert_to_tensor(gradient)


def sparse_like(gradient, indices, values, shape):
    return tf.IndexedSlices(values, indices, tf.constant(shape, "int64"))


def subtract_rows(optimizer, variable, indices, delta, gradient):
    """variable[indices] -= delta, as an IndexedSlices (a scatter), then the
    variable back into copy-on-write mode, outside XLA.

    A sparse write puts a variable in copy-on-read mode: every dense read
    then copies it whole, as Keras's Embedding does at the next forward
    pass, and as RMS(x) would at the next step. In copy-on-write mode, a
    dense read is not copied; a later write copies the variable first only
    if such a read is still held. Either mode gives the same values; only
    the copies differ (bench/, section f without XLA). XLA cannot compile
    the switch: a step traced outside XLA with a sparse gradient cannot be
    run inside XLA afterwards.
    """
    shape = tuple(int(d) for d in variable.shape)
    optimizer.assign_sub(variable, sparse_like(gradient, indices, delta, shape))
    if tf.__internal__.get_enclosing_xla_context() is None:
        tf.raw_ops.DisableCopyOnRead(resource=_variable(variable).handle)


def distributed():
    return tf.distribute.has_strategy()


def refuse_in_distributed_replica(option):
    """A ValueError naming `option` inside a tf.distribute strategy's
    replica: its branch would have to all-reduce inside a cond, which
    tf.distribute refuses, and a replica's own gradients may be finite where
    the sum of all is not."""
    if tf.distribute.has_strategy():
        raise ValueError(
            f"{option} is not supported under a tf.distribute strategy; "
            "wrap the optimizer in keras.optimizers.LossScaleOptimizer, which "
            "skips a step with non-finite gradients there."
        )
