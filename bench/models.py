"""What is measured: the sizes, the contenders and the models.

Nothing here imports Keras when the module is imported: the process that
orchestrates the run stays free of a backend, and each worker imports Keras
once its backend is set.
"""

import importlib
from typing import NamedTuple


def sizes(quick):
    if quick:
        return dict(
            quick=True,
            transformer=dict(d_model=64, heads=2, ff=128, vocab=500, blocks=1, seq=8),
            step_shapes=[(128, 128)] * 2 + [(128,)] * 2,
            steps=5,
            scaling=[256, 512],
            peak=512,
            peak_sizes=[256],
            bf16_samples=64,
            bf16_epochs=1,
            bf16_model=dict(d_model=8, heads=1, ff=8, blocks=1),
            bf16_lr=0.003,
            embedding=dict(vocab=2000, width=16, batch=32, tokens=4, steps=3),
        )
    return dict(
        quick=False,
        transformer=dict(d_model=512, heads=8, ff=2048, vocab=8000, blocks=2, seq=32),
        step_shapes=[(2048, 2048)] * 4 + [(2048,)] * 4,
        steps=30,
        scaling=[1024, 2048, 4096, 8192],
        peak=8192,
        peak_sizes=[2048, 4096, 8192, 12288],
        bf16_samples=4000,
        bf16_epochs=6,
        bf16_model=dict(d_model=64, heads=4, ff=128, blocks=2),
        bf16_lr=0.003,
        embedding=dict(vocab=200_000, width=256, batch=256, tokens=16, steps=30),
    )


# ------------------------------------------------------------- contenders

# The Keras contenders, in the order of the tables, each as the class that
# makes it (imported in the worker).
CONTENDERS = {
    "adafactor (ours)": "adafactor:Adafactor",
    "keras Adafactor": "keras.optimizers:Adafactor",
    "keras Adam": "keras.optimizers:Adam",
    "SGD": "keras.optimizers:SGD",
}
# SGD is the floor of time and memory: no state, and an update in place. It
# joins the others where a training step is measured (sections d and f).
FLOOR = "SGD"
OURS = "adafactor (ours)"
STATEFUL = tuple(name for name in CONTENDERS if name != FLOOR)  # a, b and c
WITH_FLOOR = tuple(CONTENDERS)  # f
PEAK = (OURS, FLOOR) + tuple(n for n in STATEFUL if n != OURS)  # d


def make(name, **options):
    """A new optimizer of the contender `name`."""
    module, cls = CONTENDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


class Peer(NamedTuple):
    """Another library's Adafactor, on the backend it belongs to."""

    name: str
    state: object  # shapes -> elements of state
    step: object  # shapes -> a function running one update step


def optax_state(shapes):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    state = optax.adafactor(1e-3).init([jnp.zeros(s) for s in shapes])
    leaves = jax.tree_util.tree_leaves(state)
    return int(sum(np.prod(x.shape) for x in leaves))


def optax_step(shapes):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    rng = np.random.default_rng(0)
    params = [jnp.asarray(0.02 * rng.standard_normal(s), jnp.float32) for s in shapes]
    grads = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]
    tx = optax.adafactor(1e-3)
    holder = {"params": params, "state": tx.init(params)}

    @jax.jit
    def step(params, state):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def run():
        holder["params"], holder["state"] = step(holder["params"], holder["state"])
        jax.block_until_ready(holder["params"])

    return run


def torch_state(shapes):
    import torch

    tensors = [torch.zeros(s, requires_grad=True) for s in shapes]
    opt = torch.optim.Adafactor(tensors)
    for p in tensors:
        p.grad = torch.ones_like(p)
    opt.step()
    kept = [
        v
        for st in opt.state.values()
        for k, v in st.items()
        if torch.is_tensor(v) and k != "step"
    ]
    return int(sum(v.numel() for v in kept))


def torch_step(shapes):
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    params = [
        torch.tensor(0.02 * rng.standard_normal(s), dtype=torch.float32) for s in shapes
    ]
    for p in params:
        p.requires_grad_(True)
        p.grad = torch.tensor(rng.standard_normal(p.shape), dtype=torch.float32)
    return torch.optim.Adafactor(params).step


PEERS = {
    "jax": Peer("optax.adafactor", optax_state, optax_step),
    "torch": Peer("torch.optim.Adafactor", torch_state, torch_step),
}

# ------------------------------------------------------------------- runs

BACKENDS = ("tensorflow", "jax", "torch")
# (label, backend, jit_compile) of sections d and f. Keras's default compiles
# no XLA for TensorFlow on a CPU; "auto" elsewhere.
RUNS = [
    ("tensorflow (default: no XLA on CPU)", "tensorflow", "auto"),
    ("tensorflow, jit_compile=True", "tensorflow", True),
    ("jax", "jax", "auto"),
    ("torch", "torch", "auto"),
]

# ----------------------------------------------------------------- models

# The task of section e: reversing 12 tokens of a vocabulary of 16 (0 unused).
BF16_VOCAB, BF16_LENGTH = 16, 12


def reference_transformer(cfg):
    """Section a's model, the reference Transformer at the run's size."""
    from tools.harness import transformer

    t = cfg["transformer"]
    return transformer(
        t["vocab"], t["seq"], t["d_model"], t["heads"], t["ff"], t["blocks"]
    )


def reversing_transformer(cfg):
    """Section e's model: the reference Transformer, small."""
    from tools.harness import transformer

    return transformer(BF16_VOCAB, BF16_LENGTH, **cfg["bf16_model"])


def dense(n):
    """Section d's model: one n x n Dense layer."""
    import keras

    return keras.Sequential([keras.Input((n,)), keras.layers.Dense(n)])


def embedding(e):
    """Section f's model, dominated by one large Embedding."""
    import keras

    return keras.Sequential(
        [
            keras.Input((e["tokens"],), dtype="int32"),
            keras.layers.Embedding(e["vocab"], e["width"]),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(8),
        ]
    )
