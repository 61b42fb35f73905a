"""Optimizer state: the factored floor of the paper, and nothing more."""

import keras
import numpy as np

import oracle
from adafactor import Adafactor

BOOKKEEPING = ("iteration", "learning_rate")


def small_transformer(vocab=50, length=8, d_model=16, heads=2):
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocab, d_model)(tokens)
    attention = keras.layers.MultiHeadAttention(heads, d_model // heads)
    x = keras.layers.LayerNormalization()(x + attention(x, x))
    h = keras.layers.Dense(4 * d_model, activation="relu")(x)
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(d_model)(h))
    return keras.Model(tokens, keras.layers.Dense(vocab)(x))


def state_variables(optimizer):
    return [v for v in optimizer.variables if v.name not in BOOKKEEPING]


def test_state_is_the_factored_floor():
    model = small_transformer()
    optimizer = Adafactor()
    optimizer.build(model.trainable_variables)
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    assert any(len(s) == 3 for s in shapes)  # attention kernels
    state = sum(int(np.prod(v.shape)) for v in state_variables(optimizer))
    assert state == oracle.state_size(shapes)
    params = sum(int(np.prod(s)) for s in shapes)
    assert state < 0.25 * params
    # keras.optimizers.Adafactor keeps a full-size copy on top of that.
    theirs = keras.optimizers.Adafactor()
    theirs.build(model.trainable_variables)
    their_state = sum(int(np.prod(v.shape)) for v in state_variables(theirs))
    assert their_state > params


def test_state_is_named_after_each_variable():
    model = small_transformer()
    optimizer = Adafactor()
    optimizer.build(model.trainable_variables)
    expected = []
    for var in model.trainable_variables:
        prefix = var.path.replace("/", "_")
        suffixes = ("r", "c") if len(var.shape) >= 2 else ("v",)
        expected += [f"{prefix}_{s}" for s in suffixes]
    assert [v.name for v in state_variables(optimizer)] == expected


def test_state_shapes():
    variables = [
        keras.Variable(np.zeros(s, "float32"))
        for s in [(), (5,), (3, 4), (2, 3, 4), (2, 2, 3, 4)]
    ]
    optimizer = Adafactor()
    optimizer.build(variables)
    shapes = [tuple(v.shape) for v in state_variables(optimizer)]
    assert shapes == [(), (5,), (3,), (4,), (2, 3), (2, 4), (2, 2, 3), (2, 2, 4)]
