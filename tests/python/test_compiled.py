"""The update inside compiled steps: TF XLA, jax.jit, torch.compile."""

import keras
import pytest

import oracle
from adafactor import Adafactor
from helpers import TOLERANCE, compiled_trajectory, max_rel_diff, random_problem

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
