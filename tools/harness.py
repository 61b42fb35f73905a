"""What the tests and the benchmark both run: the reference Transformer, an
optimizer's step compiled on each backend, and the count of its state."""

import keras
import numpy as np

from adafactor.statistics import STATISTICS

# Scalars that hold no state of a variable: the step count, the rate, and
# what Adafactor's last step did.
BOOKKEEPING = ("iteration", "learning_rate", *STATISTICS)


def state_variables(optimizer):
    """The optimizer's state: its variables less the bookkeeping scalars."""
    return [v for v in optimizer.variables if v.name not in BOOKKEEPING]


def elements(variables):
    """How many numbers the variables hold."""
    return int(sum(np.prod(tuple(v.shape)) for v in variables))


class CompiledStep:
    """`optimizer.apply(grads, variables)`, compiled: XLA on TensorFlow
    (`jit_compile=True`; its graph without XLA with `compiler="graph"`),
    `jax.jit` of `stateless_apply` on JAX (as `fit()` runs it, the state
    carried from call to call and donated), and `torch.compile` on torch;
    eager with `compiler="eager"`, on any backend.

    On JAX the variables hold their new values only after `sync()`.
    """

    def __init__(self, optimizer, variables, compiler="default"):
        self.optimizer, self.variables = optimizer, list(variables)
        optimizer.build(self.variables)
        backend = keras.backend.backend()
        self.backend = "eager" if compiler == "eager" else backend
        self.xla = compiler != "graph"  # TensorFlow's graph without XLA
        if self.backend == "tensorflow":
            import tensorflow as tf

            # Traced as written, without AutoGraph, as Keras traces its steps.
            self._step = tf.function(self._apply, jit_compile=self.xla, autograph=False)
        elif self.backend == "jax":
            import jax

            self._step = jax.jit(optimizer.stateless_apply, donate_argnums=(0, 2))
            self._state = [v.value for v in optimizer.variables]
            self._values = [v.value for v in self.variables]
        elif self.backend == "torch":
            import torch

            self._step = torch.compile(self._apply)
        else:
            self._step = self._apply

    def _apply(self, grads):
        self.optimizer.apply(grads, self.variables)

    def bind(self, grads):
        """One step with these gradients, as a function of no arguments, for
        timing. On TensorFlow the compiled function holds the gradients:
        passing them at each call costs about 45 us on a CPU, as much as the
        update of a 64 x 64 variable."""
        if self.backend == "tensorflow":
            import tensorflow as tf

            return tf.function(
                lambda: self._apply(grads), jit_compile=self.xla, autograph=False
            )
        return lambda: self(grads)

    def __call__(self, grads):
        """One step; returns when it is done."""
        if self.backend != "jax":
            self._step(grads)
            return
        import jax

        self._values, self._state = self._step(self._state, grads, self._values)
        jax.block_until_ready(self._values)

    def sync(self):
        """Write the values carried on JAX back into the variables and the
        optimizer's state; returns the variables."""
        if self.backend == "jax":
            pairs = zip(
                self.variables + self.optimizer.variables, self._values + self._state
            )
            for variable, value in pairs:
                variable.assign(value)
            self._state = [v.value for v in self.optimizer.variables]
            self._values = [v.value for v in self.variables]
        return self.variables


def transformer(
    vocab=16, length=12, d_model=64, heads=4, ff=128, blocks=2, causal=False
):
    """The reference Transformer encoder of the tests and the benchmark.

    Token embeddings plus sinusoidal positions (Vaswani et al., 2017), then
    `blocks` of self-attention and a feed-forward layer, each with a residual
    connection and layer normalisation; a softmax over the vocabulary at each
    position, in float32 under any dtype policy. `causal`: each position
    attends to those before it alone, as a language model's must.
    """
    tokens = keras.Input((length,), dtype="int32")
    angle = np.arange(length)[:, None] / 10000 ** (
        2 * np.arange(d_model // 2)[None, :] / d_model
    )
    positions = np.concatenate([np.sin(angle), np.cos(angle)], 1).astype("float32")
    x = keras.layers.Embedding(vocab, d_model)(tokens)
    x = x + keras.ops.cast(positions, x.dtype)
    for _ in range(blocks):
        attention = keras.layers.MultiHeadAttention(heads, d_model // heads)
        x = keras.layers.LayerNormalization()(
            x + attention(x, x, use_causal_mask=causal)
        )
        h = keras.layers.Dense(ff, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(d_model)(h))
    out = keras.layers.Dense(vocab, activation="softmax", dtype="float32")(x)
    return keras.Model(tokens, out)
