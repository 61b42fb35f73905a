"""What every Keras optimizer offers, through model.fit, against a NumPy
simulation of a linear model trained with the float64 oracle."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from helpers import TOLERANCE, max_rel_diff

N, D, U = 16, 3, 2


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((N, D)).astype("float32"),
        rng.standard_normal((N, U)).astype("float32"),
        rng.standard_normal((D, U)).astype("float32"),
        rng.standard_normal((U,)).astype("float32"),
    )


def fit(optimizer, epochs=6, batch_size=N, exclude_bias=False):
    X, Y, W, b = data()
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(U)])
    model.set_weights([W, b])
    if exclude_bias:
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    # Compiled as fit() compiles: XLA on TensorFlow and JAX.
    jit = keras.backend.backend() != "torch"
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit)
    history = model.fit(
        X, Y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0
    )
    return model.get_weights(), history.history["loss"]


def linear_grads(params, X, Y):
    W, b = params
    dpred = 2 * (X @ W + b - Y) / Y.size
    return [X.T @ dpred, dpred.sum(axis=0)]


def simulate(
    epochs=6,
    batch_size=N,
    clip=lambda grads: grads,
    weight_decay=None,
    exclude_bias=False,
    accumulation=1,
    ema=None,
    ema_every=None,
    **kwargs,
):
    """Keras's optimizer pipeline for the linear model, in float64."""
    X, Y, W, b = (a.astype(np.float64) for a in data())
    opt = oracle.Adafactor(**kwargs)
    params, average = [W, b], [W, b]
    pending = [np.zeros_like(W), np.zeros_like(b)]
    micro = 0  # every batch, as Keras's own counter
    for _ in range(epochs):
        for start in range(0, N, batch_size):
            rows = slice(start, start + batch_size)
            grads = linear_grads(params, X[rows], Y[rows])
            micro += 1
            if micro % accumulation:
                pending = [p + g for p, g in zip(pending, grads)]
                continue
            grads = [(p + g) / accumulation for p, g in zip(pending, grads)]
            pending = [np.zeros_like(p) for p in pending]
            t = micro // accumulation
            grads = clip(grads)
            if weight_decay is not None:
                decayed = [True, not exclude_bias]
                params = [
                    x - x * weight_decay * opt.rate(t) if d else x
                    for x, d in zip(params, decayed)
                ]
            params = [
                opt.step(i, x, g, t) for i, (x, g) in enumerate(zip(params, grads))
            ]
            if ema is not None:
                m = ema if t > 1 else 0.0
                average = [m * a + (1 - m) * x for a, x in zip(average, params)]
                if ema_every and t % ema_every == 0:
                    params = list(average)
    return average if ema is not None else params


def assert_matches(got, want, unlike=None):
    for g, w in zip(got, want):
        assert max_rel_diff(g, w) <= TOLERANCE
    if unlike is not None:  # the feature made a difference
        assert max(max_rel_diff(w, u) for w, u in zip(want, unlike)) > 50 * TOLERANCE


PLAIN = dict(learning_rate=0.05)


def test_plain_fit_matches_oracle_and_learns():
    weights, losses = fit(Adafactor(**PLAIN))
    assert_matches(weights, simulate(**PLAIN))
    assert losses[-1] < losses[0]


def test_weight_decay_with_exclusion():
    weights, _ = fit(Adafactor(weight_decay=0.5, **PLAIN), exclude_bias=True)
    want = simulate(weight_decay=0.5, exclude_bias=True, **PLAIN)
    assert_matches(weights, want, unlike=simulate(**PLAIN))
    # The bias took no decay: it equals a run that decays only the kernel.
    all_decayed = simulate(weight_decay=0.5, **PLAIN)
    assert max_rel_diff(want[1], all_decayed[1]) > 50 * TOLERANCE


def clip_norm(c):
    return lambda gs: [g * min(1.0, c / np.linalg.norm(g)) for g in gs]


def clip_global(c):
    def clip(gs):
        norm = np.sqrt(sum(np.sum(g**2) for g in gs))
        return [g * min(1.0, c / norm) for g in gs]

    return clip


@pytest.mark.parametrize(
    "kwargs, clip",
    [
        (dict(clipnorm=0.05), clip_norm(0.05)),
        (dict(clipvalue=0.02), lambda gs: [np.clip(g, -0.02, 0.02) for g in gs]),
        (dict(global_clipnorm=0.05), clip_global(0.05)),
    ],
    ids=["clipnorm", "clipvalue", "global_clipnorm"],
)
def test_gradient_clipping(kwargs, clip):
    weights, _ = fit(Adafactor(**kwargs, **PLAIN))
    assert_matches(weights, simulate(clip=clip, **PLAIN), simulate(**PLAIN))


def test_ema_with_overwrite_frequency():
    weights, _ = fit(
        Adafactor(use_ema=True, ema_momentum=0.7, ema_overwrite_frequency=3, **PLAIN)
    )
    want = simulate(ema=0.7, ema_every=3, **PLAIN)
    assert_matches(weights, want, unlike=simulate(ema=0.7, **PLAIN))


def test_loss_scale_factor_is_undone():
    weights, _ = fit(Adafactor(loss_scale_factor=1024.0, **PLAIN))
    assert_matches(weights, simulate(**PLAIN))


def test_gradient_accumulation():
    weights, _ = fit(
        Adafactor(gradient_accumulation_steps=2, **PLAIN), batch_size=N // 2
    )
    want = simulate(batch_size=N // 2, accumulation=2, **PLAIN)
    assert_matches(weights, want, unlike=simulate(batch_size=N // 2, **PLAIN))


def test_learning_rate_schedule():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.2, 0.05])
    weights, _ = fit(Adafactor(learning_rate=schedule))
    want = simulate(learning_rate=lambda step: 0.2 if step <= 2 else 0.05)
    assert_matches(weights, want, unlike=simulate(learning_rate=0.2))


def test_callable_learning_rate():
    weights, _ = fit(Adafactor(learning_rate=lambda: 0.07))
    assert_matches(weights, simulate(learning_rate=lambda step: 0.07))
