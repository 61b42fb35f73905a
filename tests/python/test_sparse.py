"""Gradients sparse along axis 0 (TensorFlow's IndexedSlices, JAX's BCOO):
the row-sparse update equals the dense one and the oracle.

That the model variable is written sparsely (only the touched rows) is
checked by Keras's own optimizer_sparse_test.py, run in test_keras_suite.py.
"""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from helpers import BACKEND, compiled_trajectory, max_rel_diff, to_numpy

pytestmark = pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"), reason="no sparse gradients here"
)

INDICES = [0, 2, 2, 5]  # a duplicate, as an embedding lookup gives
UNTOUCHED = [1, 3, 4]
STEPS = 4


def sparse_gradient(values, shape, indices=None):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        indices = tf.constant(INDICES) if indices is None else indices
        return tf.IndexedSlices(tf.constant(values), indices, tf.constant(shape))
    import jax.experimental.sparse as jax_sparse

    return jax_sparse.BCOO((values, np.asarray(INDICES)[:, None]), shape=shape)


def dense_gradient(values, shape):
    dense = np.zeros(shape, "float32")
    np.add.at(dense, INDICES, values)
    return dense


def problem(shape, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape).astype("float32")
    values = [
        rng.standard_normal((len(INDICES),) + shape[1:]).astype("float32")
        for _ in range(STEPS)
    ]
    return x0, values


def run(kwargs, x0, gradients):
    variable = keras.Variable(x0)
    optimizer = Adafactor(**kwargs)
    for g in gradients:
        optimizer.apply([g], [variable])
    return to_numpy(variable)


@pytest.mark.parametrize("shape", [(6, 4), (6,), (6, 3, 2)])
def test_sparse_equals_dense_and_the_oracle(shape):
    x0, values = problem(shape)
    sparse = run(
        {"learning_rate": 0.1}, x0, [sparse_gradient(v, shape) for v in values]
    )
    dense = [dense_gradient(v, shape) for v in values]
    assert max_rel_diff(sparse, run({"learning_rate": 0.1}, x0, dense)) <= 1e-6
    want = oracle.trajectory(x0, dense, learning_rate=0.1)[-1]
    assert max_rel_diff(sparse, want) <= 2e-5
    # Rows without a gradient did not move.
    np.testing.assert_array_equal(sparse[UNTOUCHED], x0[UNTOUCHED])


OPTIONS = [
    dict(weight_decay=0.1),
    dict(use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2),
    dict(gradient_accumulation_steps=2),
    dict(clipnorm=0.5),
    dict(global_clipnorm=0.5),
    dict(clipvalue=0.3),
    dict(loss_scale_factor=64.0),
    # Momentum moves untouched rows: the dense path, by design.
    dict(beta_1=0.9),
    dict(factored=False),
    dict(relative_step=False, scale_parameter=False),
]


@pytest.mark.parametrize("kwargs", OPTIONS, ids=lambda kw: ",".join(kw))
@pytest.mark.parametrize("shape", [(6, 4), (6, 3, 2)])
def test_sparse_equals_dense_with_every_option(kwargs, shape):
    x0, values = problem(shape, seed=1)
    kwargs = dict(kwargs, learning_rate=0.1)
    sparse = run(kwargs, x0, [sparse_gradient(v, shape) for v in values])
    dense = run(kwargs, x0, [dense_gradient(v, shape) for v in values])
    assert max_rel_diff(sparse, dense) <= 1e-6
    assert max_rel_diff(sparse, x0) > 1e-3


@pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's")
@pytest.mark.parametrize("container", [tuple, list, np.asarray])
def test_indices_in_any_container_tensorflow_accepts(container):
    shape = (6, 4)
    x0, values = problem(shape, seed=2)
    grads = [sparse_gradient(v, shape, container(INDICES)) for v in values]
    dense = [dense_gradient(v, shape) for v in values]
    got = run({}, x0, grads)
    assert max_rel_diff(got, run({}, x0, dense)) <= 1e-6


@pytest.mark.parametrize("shape", [(6, 4), (6, 3, 2)])
def test_compiled_sparse_update(shape):
    x0, values = problem(shape, seed=3)
    # The sparse update inside a compiled step: XLA, or jax.jit.
    sparse = [[sparse_gradient(v, shape)] for v in values]
    got = compiled_trajectory(Adafactor(learning_rate=0.1), [x0], sparse)[0]
    dense = [dense_gradient(v, shape) for v in values]
    want = oracle.trajectory(x0, dense, learning_rate=0.1)[-1]
    assert max_rel_diff(got, want) <= 2e-5
    np.testing.assert_array_equal(got[UNTOUCHED], x0[UNTOUCHED])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's")
def test_embedding_trained_with_fit_matches_the_dense_gradient():
    tokens = np.random.default_rng(1).integers(0, 10, (32, 4))
    targets = np.random.default_rng(2).standard_normal((32, 4, 5)).astype("float32")

    def fit(densify):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((4,), dtype="int32")
        if densify:  # a one-hot product has a dense gradient
            one_hot = keras.layers.Lambda(lambda t: keras.ops.one_hot(t, 10))(inputs)
            outputs = keras.layers.Dense(5, use_bias=False)(one_hot)
        else:
            outputs = keras.layers.Embedding(10, 5)(inputs)
        model = keras.Model(inputs, outputs)
        model.set_weights([np.linspace(-1, 1, 50).reshape(10, 5).astype("float32")])
        model.compile(optimizer=Adafactor(learning_rate=0.1), loss="mse")
        model.fit(tokens, targets, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()[0]

    assert max_rel_diff(fit(False), fit(True)) <= 1e-5
