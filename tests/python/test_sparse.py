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
from helpers import BACKEND, TOLERANCE, compiled_trajectory, max_rel_diff, to_numpy
from tools.harness import state_variables

pytestmark = [
    pytest.mark.update_rule,
    pytest.mark.skipif(
        BACKEND not in ("tensorflow", "jax"), reason="no sparse gradients here"
    ),
]

INDICES = [0, 2, 2, 5]  # a duplicate, as an embedding lookup gives
UNTOUCHED = [1, 3, 4]
STEPS = 4


def sparse_gradient(values, shape, indices=None):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        indices = tf.constant(INDICES) if indices is None else indices
        return tf.IndexedSlices(tf.constant(values), indices, tf.constant(shape))
    import jax.experimental.sparse as jax_sparse

    indices = np.asarray(INDICES if indices is None else indices)
    return jax_sparse.BCOO((values, indices[:, None]), shape=shape)


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
    assert max_rel_diff(sparse, want) <= TOLERANCE
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
    assert max_rel_diff(got, want) <= TOLERANCE
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


def as_read(indices, num_rows):
    """Indices as the backend's dense conversion reads them, which is what
    keras Adam sees: JAX counts negative ones from the end, TensorFlow drops
    them; either drops what is then outside [0, num_rows)."""
    indices = np.asarray(indices)
    if BACKEND == "jax":
        indices = np.where(indices < 0, indices + num_rows, indices)
    return np.where((indices >= 0) & (indices < num_rows), indices, -1)


# Each with a valid duplicate: bad rows must not poison the good ones.
BAD_INDICES = [[0, 2, 9, 2], [0, 2, -1, 2], [0, 2, -9, 2], [6, 2, 2, 0]]
COMPILERS = ["eager", "default"] if BACKEND == "tensorflow" else ["default"]


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("indices", BAD_INDICES, ids=str)
def test_out_of_range_indices_mean_what_they_mean_in_the_dense_gradient(
    compiler, indices
):
    shape = (6, 4)
    x0, values = problem(shape, seed=4)
    read = as_read(indices, shape[0])
    index_tensor = keras.ops.convert_to_tensor(np.asarray(indices, "int32"))
    grads = [[sparse_gradient(v, shape, index_tensor)] for v in values]
    if compiler == "eager" and (np.asarray(indices) >= shape[0]).any():
        # TensorFlow's CPU kernels refuse such an index, for Adam as for us.
        for optimizer in (keras.optimizers.Adam(), Adafactor()):
            with pytest.raises(Exception, match="out of range"):
                compiled_trajectory(optimizer, [x0], grads[:1], compiler)
        return
    got = compiled_trajectory(Adafactor(learning_rate=0.1), [x0], grads, compiler)[0]
    dense = []
    for v in values:
        g = np.zeros(shape)
        np.add.at(g, read[read >= 0], v[read >= 0])
        dense.append(g)
    want = oracle.trajectory(x0, dense, learning_rate=0.1)[-1]
    assert np.all(np.isfinite(got))
    assert max_rel_diff(got, want) <= TOLERANCE
    untouched = np.setdiff1d(np.arange(shape[0]), read)
    np.testing.assert_array_equal(got[untouched], x0[untouched])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="int64 indices are TensorFlow's")
@pytest.mark.parametrize("compiler", ["eager", "default"])
def test_int64_indices_beyond_int32_are_not_wrapped_onto_rows(compiler):
    import tensorflow as tf

    shape = (6, 4)
    x0, values = problem(shape, seed=5)
    indices = tf.constant([0, 2**32 + 1, 2, 2], "int64")  # 2^32 + 1 wraps to 1
    grads = [[sparse_gradient(v, shape, indices)] for v in values]
    if compiler == "eager":
        with pytest.raises(Exception, match="out of range"):
            compiled_trajectory(Adafactor(), [x0], grads[:1], compiler)
        return
    got = compiled_trajectory(Adafactor(learning_rate=0.1), [x0], grads, compiler)[0]
    np.testing.assert_array_equal(got[[1, 3, 4, 5]], x0[[1, 3, 4, 5]])
    assert np.all(np.isfinite(got))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's")
@pytest.mark.parametrize("option", ["clipnorm", "global_clipnorm", "clipvalue"])
def test_clipping_a_sparse_gradient_passed_into_a_traced_step(option):
    # Traced with the gradient as an argument, its dense shape is unknown.
    import tensorflow as tf

    shape = (6, 4)
    x0, values = problem(shape, seed=6)

    def run_traced(gradients):
        variable = keras.Variable(x0)
        optimizer = Adafactor(learning_rate=0.1, **{option: 0.3})
        optimizer.build([variable])
        step = tf.function(lambda g: optimizer.apply([g], [variable]))
        for g in gradients:
            step(g)
        return to_numpy(variable)

    sparse = run_traced([sparse_gradient(v, shape) for v in values])
    dense = run_traced([tf.constant(dense_gradient(v, shape)) for v in values])
    assert max_rel_diff(sparse, dense) <= 1e-6


@pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's")
@pytest.mark.parametrize("shape", [(6, 4), (6, 1)])
def test_a_sparse_gradient_whose_row_shape_tracing_lost(shape):
    # MultiWorkerMirroredStrategy's all-gather of IndexedSlices gives values
    # whose rows' shape is unknown when the step is traced.
    import tensorflow as tf

    x0, values = problem(shape, seed=7)
    variable = keras.Variable(x0)
    optimizer = Adafactor(learning_rate=0.1)
    optimizer.build([variable])
    unknown = tf.TensorSpec([None] * len(shape), tf.float32)

    @tf.function(input_signature=[unknown])
    def step(rows):
        slices = tf.IndexedSlices(rows, tf.constant(INDICES), tf.constant(shape))
        optimizer.apply([slices], [variable])

    for v in values:
        step(v)
    want = run({"learning_rate": 0.1}, x0, [dense_gradient(v, shape) for v in values])
    assert max_rel_diff(to_numpy(variable), want) <= 1e-6


@pytest.mark.skipif(BACKEND != "tensorflow", reason="IndexedSlices are TensorFlow's")
def test_sparse_rows_of_another_shape_than_the_variables_are_refused():
    import tensorflow as tf

    variable = keras.Variable(np.ones((6, 4), "float32"))
    rows = tf.ones((len(INDICES), 2, 2))
    slices = tf.IndexedSlices(rows, tf.constant(INDICES), tf.constant((6, 4)))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        Adafactor().apply([slices], [variable])


@pytest.mark.parametrize("poison", ["duplicate", "dropped"])
def test_a_nan_reaches_the_statistics_as_from_the_dense_gradient(poison):
    """A NaN in a row whose index occurs again, or beside a dropped index
    that stands at row 0, is not lost from the row statistic: the state is
    the dense gradient's, NaN where its is."""
    shape, rng = (6, 4), np.random.default_rng(7)
    # TensorFlow drops a negative index; JAX counts it from the end.
    dropped = -1 if BACKEND == "tensorflow" else 99
    indices = np.asarray([2, 0, 2] if poison == "duplicate" else [0, dropped])
    values = rng.standard_normal((len(indices), 4)).astype("float32")
    values[0, 1] = np.nan
    kept = (indices >= 0) & (indices < 6)
    dense = np.zeros(shape, "float32")
    np.add.at(dense, indices[kept], values[kept])
    states = []
    for g in (sparse_gradient(values, shape, indices), dense):
        variable = keras.Variable(np.ones(shape, "float32"))
        optimizer = Adafactor()
        optimizer.apply([g], [variable])
        states.append([to_numpy(v) for v in state_variables(optimizer)])
    for sparse_state, dense_state in zip(*states):
        np.testing.assert_array_equal(np.isnan(sparse_state), np.isnan(dense_state))
    assert np.isnan(states[0][0]).any()  # r, where the NaN's row is
