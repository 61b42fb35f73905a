"""The update inside compiled steps: TF XLA, jax.jit, torch.compile."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from helpers import (
    BACKEND,
    TOLERANCE,
    compiled_trajectory,
    max_rel_diff,
    random_problem,
    to_numpy,
)

pytestmark = pytest.mark.update_rule

SHAPES = [(), (5,), (1, 9), (9, 1), (4, 6), (2, 3, 4)]
STEPS = 20
KWARGS = dict(learning_rate=0.05, clip_threshold=0.8, relative_step=False)


@pytest.mark.slow  # torch.compile: 20 s
def test_compiled_matches_keras_adafactor_and_oracle():
    x0s, grads = random_problem(SHAPES, steps=STEPS, seed=21)
    ours = compiled_trajectory(Adafactor(**KWARGS), x0s, grads)
    keras_kwargs = dict(KWARGS, relative_step=True)  # Keras caps regardless
    theirs = compiled_trajectory(keras.optimizers.Adafactor(**keras_kwargs), x0s, grads)
    for i, shape in enumerate(SHAPES):
        want = oracle.trajectory(x0s[i], [g[i] for g in grads], **KWARGS)[-1]
        assert max_rel_diff(ours[i], want) <= TOLERANCE, shape
        # Keras caps the rate at 1/sqrt(t) even here: equal while 0.05 < 1/sqrt(t).
        assert max_rel_diff(ours[i], theirs[i]) <= 1e-5, shape
    assert max_rel_diff(ours[4], x0s[4]) > 1e-2


def test_compiled_factoring_of_the_two_largest_dimensions_matches_the_oracle():
    shapes = [(6, 3, 5), (2, 7, 4, 3), (4, 6)]
    kwargs = dict(KWARGS, factor_dims="largest")
    x0s, grads = random_problem(shapes, steps=STEPS, seed=22)
    ours = compiled_trajectory(Adafactor(**kwargs), x0s, grads)
    for i, shape in enumerate(shapes):
        want = oracle.trajectory(x0s[i], [g[i] for g in grads], **kwargs)[-1]
        assert max_rel_diff(ours[i], want) <= TOLERANCE, shape


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's tf.function")
@pytest.mark.parametrize("shape", [(10, 8), (8,)], ids=["matrix", "vector"])
def test_a_step_traced_outside_xla_runs_inside_it(shape):
    """A tf.function of the step, traced outside XLA and then called from a
    function XLA compiles, as Keras Adam and Adafactor allow: no op of the
    dense step is one XLA cannot compile."""
    import tensorflow as tf

    x0s, grads = random_problem([shape], steps=2, seed=23)
    variable = keras.Variable(x0s[0].astype("float32"))
    optimizer = Adafactor(**KWARGS)
    optimizer.build([variable])
    step = tf.function(lambda g: optimizer.apply([g], [variable]))
    step(tf.constant(grads[0][0], "float32"))
    tf.function(lambda g: step(g), jit_compile=True)(
        tf.constant(grads[1][0], "float32")
    )
    want = oracle.trajectory(x0s[0], [g[0] for g in grads], **KWARGS)[-1]
    assert max_rel_diff(to_numpy(variable), want) <= TOLERANCE


# Dense(1) over wide hashed features, and other long thin matrices: each row
# or column sum is over hundreds of thousands of entries.
THIN = [(600000, 1), (1, 600000), (3, 200003)]


@pytest.mark.parametrize("shape", THIN, ids=["column", "row", "three-rows"])
@pytest.mark.parametrize("compiler", ["eager", "default"])
def test_long_thin_matrices_keep_float32_precision(shape, compiler):
    """Sums over hundreds of thousands of entries keep float32's precision
    (a matrix-vector product with ones drifted by 1.7e-4), in the step and
    in the update's RMS."""
    if compiler == "default" and BACKEND == "torch":
        pytest.skip("torch.compile of this step: test_compiled_matches_keras_...")
    rng = np.random.default_rng(24)
    x0 = rng.standard_normal(shape).astype("float32").astype(np.float64)
    g = rng.standard_normal(shape) * rng.random(shape[-1:])
    optimizer = Adafactor(record_statistics=True, **KWARGS)
    got = compiled_trajectory(optimizer, [x0], [[g]], compiler)
    path, want = oracle.run(x0, [g], **KWARGS)
    # The step, to 1e-5 of its size: the weights' own rounding is 5e-6 of
    # it, as for keras.optimizers.Adafactor.
    assert max_rel_diff(got[0] - x0, path[-1] - x0) <= 1e-5
    # TensorFlow's CPU sums add in sequence: 1.4e-6 over 600,000 entries.
    rms = float(to_numpy(optimizer.statistics()["adafactor_update_rms"]))
    assert abs(rms - want.update_rms[0]) <= 3e-6 * want.update_rms[0]
