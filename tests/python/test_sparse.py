"""Sparse gradients give the same result as the dense gradient."""

import keras
import numpy as np
import pytest

from adafactor import Adafactor

BACKEND = keras.backend.backend()
needs_sparse = pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"), reason="no sparse gradients here"
)

INDICES = [0, 2, 2, 5]  # a duplicate, as an embedding lookup gives


def sparse_gradient(values, shape):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.IndexedSlices(
            tf.constant(values), tf.constant(INDICES), tf.constant(shape)
        )
    import jax.experimental.sparse as jax_sparse

    indices = np.asarray(INDICES)[:, None]
    return jax_sparse.BCOO((values, indices), shape=shape)


def dense_gradient(values, shape):
    dense = np.zeros(shape, "float32")
    np.add.at(dense, INDICES, values)
    return dense


@needs_sparse
@pytest.mark.parametrize("shape", [(6, 4), (6,), (6, 3, 2)])
def test_sparse_equals_dense(shape):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(shape).astype("float32")
    sparse_var, dense_var = keras.Variable(x0), keras.Variable(x0)
    sparse_opt, dense_opt = Adafactor(learning_rate=0.1), Adafactor(learning_rate=0.1)
    for _ in range(4):
        values = rng.standard_normal((len(INDICES),) + shape[1:]).astype("float32")
        sparse_opt.apply([sparse_gradient(values, shape)], [sparse_var])
        dense_opt.apply([dense_gradient(values, shape)], [dense_var])
        np.testing.assert_allclose(
            np.asarray(sparse_var), np.asarray(dense_var), rtol=1e-6, atol=1e-7
        )
    # Rows without a gradient did not move.
    np.testing.assert_array_equal(np.asarray(sparse_var)[[1, 3, 4]], x0[[1, 3, 4]])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's")
def test_embedding_gradient_on_tensorflow():
    import tensorflow as tf

    tokens = np.array([[1, 3, 3, 7], [0, 1, 9, 9]])
    targets = np.random.default_rng(1).standard_normal((2, 4, 5)).astype("float32")

    def run(densify):
        keras.utils.set_random_seed(3)
        layer = keras.layers.Embedding(10, 5)
        layer.build((None, 4))
        optimizer = Adafactor(learning_rate=0.1)
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((layer(tokens) - targets) ** 2)
            (grad,) = tape.gradient(loss, layer.trainable_variables)
            assert isinstance(grad, tf.IndexedSlices)
            if densify:
                grad = tf.convert_to_tensor(grad)
            optimizer.apply([grad], layer.trainable_variables)
        return np.asarray(layer.embeddings)

    np.testing.assert_allclose(run(False), run(True), rtol=1e-6, atol=1e-7)
