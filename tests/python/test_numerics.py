"""The update rule: parity with keras.optimizers.Adafactor, the float64
oracle of the documented algorithm, and relative_step (finiteness:
test_finite.py)."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from adafactor import Adafactor
from helpers import TOLERANCE, apply_steps, max_rel_diff, random_problem

pytestmark = pytest.mark.update_rule

SHAPES = [(), (7,), (1, 9), (9, 1), (5, 6), (3, 4, 5), (2, 3, 4, 5)]
NON_DEFAULT = dict(
    learning_rate=0.01,
    beta_2_decay=-0.5,
    epsilon_1=1e-20,
    epsilon_2=1e-2,
    clip_threshold=0.5,
)


@pytest.mark.parametrize("kwargs", [{}, NON_DEFAULT], ids=["default", "custom"])
def test_parity_with_keras_adafactor(kwargs):
    x0s, grads = random_problem(SHAPES, steps=50)
    ours = apply_steps(Adafactor(**kwargs), x0s, grads)
    theirs = apply_steps(keras.optimizers.Adafactor(**kwargs), x0s, grads)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for shape, x, y in zip(SHAPES, a, b):
            assert max_rel_diff(x, y) <= 1e-5, (step, shape)
    # The run really moved the variables.
    assert max_rel_diff(ours[-1][4], x0s[4]) > 1e-3


@pytest.mark.parametrize("kwargs", [{}, NON_DEFAULT], ids=["default", "custom"])
def test_matches_float64_oracle(kwargs):
    x0s, grads = random_problem(SHAPES, steps=50, seed=1)
    ours = apply_steps(Adafactor(**kwargs), x0s, grads)
    for i, shape in enumerate(SHAPES):
        expected = oracle.trajectory(x0s[i], [g[i] for g in grads], **kwargs)
        for step in (0, 9, 49):
            assert max_rel_diff(ours[step][i], expected[step]) <= TOLERANCE, shape


def _run_single(x0, grads, **kwargs):
    return [p[0] for p in apply_steps(Adafactor(**kwargs), [x0], [[g] for g in grads])]


def test_relative_step_caps_a_constant_rate():
    x0s, grads = random_problem([(6, 5)], steps=20, seed=3)
    grads = [g[0] for g in grads]
    capped = _run_single(x0s[0], grads, learning_rate=0.5, relative_step=True)
    plain = _run_single(x0s[0], grads, learning_rate=0.5, relative_step=False)
    for flag, got in ((True, capped), (False, plain)):
        want = oracle.trajectory(x0s[0], grads, learning_rate=0.5, relative_step=flag)
        assert max(max_rel_diff(a, b) for a, b in zip(got, want)) <= TOLERANCE
    # Up to t = 4 the cap 1/sqrt(t) >= 0.5 does not bite; after it does.
    assert max_rel_diff(capped[3], plain[3]) <= 1e-6
    assert max_rel_diff(capped[-1], plain[-1]) > 1e-2


def test_relative_step_leaves_a_schedule_alone():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, 4, 0.8)
    x0s, grads = random_problem([(5, 3), (3,)], steps=12, seed=4)
    ours = apply_steps(
        Adafactor(learning_rate=schedule, relative_step=True), x0s, grads
    )
    for i in range(2):
        want = oracle.trajectory(
            x0s[i],
            [g[i] for g in grads],
            learning_rate=lambda step: 0.5 * 0.8 ** (step / 4),
        )
        assert max_rel_diff(ours[-1][i], want[-1]) <= TOLERANCE


def test_relative_step_leaves_a_callable_alone():
    x0s, grads = random_problem([(4, 4)], steps=10, seed=5)
    grads = [g[0] for g in grads]
    got = _run_single(x0s[0], grads, learning_rate=lambda: 0.3)
    want = oracle.trajectory(x0s[0], grads, learning_rate=lambda step: 0.3)
    assert max_rel_diff(got[-1], want[-1]) <= TOLERANCE


@settings(max_examples=20, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple),
    learning_rate=st.floats(1e-4, 0.5),
    beta_2_decay=st.floats(-1.0, -0.1),
    epsilon_2=st.floats(0.0, 0.1),
    clip_threshold=st.floats(0.1, 2.0),
    relative_step=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_and_arguments_match_oracle(shape, seed, **kwargs):
    x0s, grads = random_problem([shape], steps=4, seed=seed)
    grads = [g[0] for g in grads]
    got = _run_single(x0s[0], grads, **kwargs)
    want = oracle.trajectory(x0s[0], grads, **kwargs)
    for a, b in zip(got, want):
        assert max_rel_diff(a, b) <= TOLERANCE


ODD_SHAPES = [(0, 4), (3, 0), (0,), (1, 1), (), (2, 1, 3, 1, 2), (1, 2, 1, 2, 1, 3)]


def test_odd_shapes_neither_crash_nor_go_nan():
    x0s, grads = random_problem(ODD_SHAPES, steps=5, seed=8)
    got = apply_steps(Adafactor(learning_rate=0.1), x0s, grads)
    for i, shape in enumerate(ODD_SHAPES):
        assert got[-1][i].shape == shape
        assert np.all(np.isfinite(got[-1][i])), shape
        if 0 not in shape:
            want = oracle.trajectory(x0s[i], [g[i] for g in grads], learning_rate=0.1)
            assert max_rel_diff(got[-1][i], want[-1]) <= TOLERANCE, shape
