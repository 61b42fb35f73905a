"""What is measured: the sizes, the contenders and the models.

Nothing here imports Keras when the module is imported: the process that
orchestrates the run stays free of a backend, and each worker imports Keras
once its backend is set.
"""

import importlib
import math
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
            bandwidth=dict(mb=16, repeats=3),
            table2=dict(
                rows=["A", "O", "Q", ADAM],
                grid=[1.0, 4.0, 16.0, 64.0],
                processes=1,  # one start of jax and Keras, beside a suite
                seeds=1,
                steps=60,
                batch=4,
                length=16,
                valid=8,
                model=dict(d_model=8, heads=1, ff=8, blocks=1),
            ),
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
        bandwidth=dict(mb=256, repeats=9),
        table2=dict(
            rows=[*TABLE2, ADAM],
            grid=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            processes=2,  # the rows share the machine's two cores
            seeds=3,
            steps=800,
            batch=16,
            length=32,
            valid=256,
            model=dict(d_model=32, heads=2, ff=64, blocks=2),
        ),
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
# joins the others where a step is timed and where memory is measured
# (sections b, d and f), and the ratios to it are the targets.
FLOOR = "SGD"
OURS = "adafactor (ours)"
STATEFUL = tuple(name for name in CONTENDERS if name != FLOOR)  # a and c
WITH_FLOOR = tuple(CONTENDERS)  # b and f
PEAK = (OURS, FLOOR) + tuple(n for n in STATEFUL if n != OURS)  # d
# Section g: the bytes of a step, for SGD, ours, ours as it would be with
# RMS(x) kept up to date instead of read (allowed only with a test for each
# writer of the weights), and Adam.
KEPT_RMS = f"{OURS}, RMS(x) kept"
BYTES = (FLOOR, OURS, KEPT_RMS, "keras Adam")


def target(section, backend):
    """The largest ratio of ours to SGD that the section's step aims at:
    1.2x for the embedding step (f) on jax, 1.5x elsewhere (b and f)."""
    return 1.2 if (section, backend) == ("f", "jax") else 1.5


def make(name, **options):
    """A new optimizer of the contender `name`."""
    module, cls = CONTENDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


class Peer(NamedTuple):
    """Another library's Adafactor, on the backend it belongs to."""

    name: str
    state: object  # shapes -> elements of state
    step: object  # shapes -> a function running one update step


def optax_state(shapes, **options):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    state = optax.adafactor(1e-3, **options).init([jnp.zeros(s) for s in shapes])
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


def torch_step(shapes, foreach=None):
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    params = [
        torch.tensor(0.02 * rng.standard_normal(s), dtype=torch.float32) for s in shapes
    ]
    for p in params:
        p.requires_grad_(True)
        p.grad = torch.tensor(rng.standard_normal(p.shape), dtype=torch.float32)
    return torch.optim.Adafactor(params, foreach=foreach).step


PEERS = {
    "jax": Peer("optax.adafactor", optax_state, optax_step),
    "torch": Peer("torch.optim.Adafactor", torch_state, torch_step),
}
# Section i's columns of peers: each one's step, and torch's with foreach.
FOREACH = ", foreach=True"
PEER_COLUMNS = tuple(
    sorted([p.name for p in PEERS.values()] + [PEERS["torch"].name + FOREACH])
)

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

# Section f's runs whose forward pass copies the embedding table whole, for
# every contender but ours: TensorFlow without XLA keeps a variable it has
# written sparsely in copy-on-read mode, in which a dense read (the
# Embedding layer's) copies it; ours turns the mode back after its write
# (adafactor.backend.tensorflow.subtract_rows).
COPIES_THE_TABLE = ("tensorflow (default: no XLA on CPU)",)

# ----------------------------------------------------------------- models

# The task of section e: reversing 12 tokens of a vocabulary of 16 (0 unused).
BF16_VOCAB, BF16_LENGTH = 16, 12


# Section h: Table 2 of Shazeer & Stern (2018) on real text (bench.table2).
# Its reference beside the paper's rows: keras Adam, beta_1 = 0.9 and
# beta_2 = 0.999, at the rate of the paper's Adam rows, 0.1 s_t.
ADAM = "Adam"


class Row(NamedTuple):
    """A row of the paper's Table 2, in its columns, and its BLEU on WMT'14
    En-De with warmup and without (None: diverged)."""

    factored: bool
    beta_1: object  # None: no momentum
    beta_2: float  # a constant in (0, 1), or x < 0 of 1 - t^x
    clip: object  # d, or None: no update clipping
    step: str  # "0.1 s_t": absolute; "s_t": relative (parameter-scaled);
    # "100 s_t": SGD's rate
    bleu: tuple


TABLE2 = {
    "A": Row(False, None, 0.999, None, "0.1 s_t", (25.6, 0.1)),
    "B": Row(False, 0.9, 0.999, None, "0.1 s_t", (25.4, 23.1)),
    "C": Row(True, None, 0.999, None, "0.1 s_t", (25.4, 0.2)),
    "G": Row(False, None, 0.9, None, "0.1 s_t", (18.4, 15.6)),
    "H": Row(False, None, 0.999, 1.0, "0.1 s_t", (25.4, 21.5)),
    "J": Row(True, None, 0.999, 1.0, "0.1 s_t", (25.6, 22.4)),
    "K": Row(False, None, -0.5, None, "0.1 s_t", (25.6, 21.1)),
    "L": Row(False, None, -0.8, None, "0.1 s_t", (25.6, 0.1)),
    "N": Row(False, None, -0.8, 1.0, "0.1 s_t", (25.9, 22.4)),
    "O": Row(True, None, -0.8, 1.0, "s_t", (25.0, 25.5)),
    "P": Row(True, 0.9, -0.8, 1.0, "s_t", (24.9, 25.3)),
    "Q": Row(False, None, None, None, "100 s_t", (22.9, None)),  # SGD
}


def table2_optimizer(letter):
    """The optimizer of a row of Table 2, or of ADAM, and the multiple of s_t
    that the row's rate is. Its rate is a plain number, so that the run can
    set it at each step (the optimizer's `learning_rate` variable)."""
    import numpy as np

    if letter == ADAM:
        return make("keras Adam", learning_rate=1.0, beta_1=0.9, beta_2=0.999), 0.1
    if letter == "Q":
        return make(FLOOR, learning_rate=1.0), 100.0
    row = TABLE2[letter]
    decay = {"beta_2": row.beta_2} if row.beta_2 > 0 else {"beta_2_decay": row.beta_2}
    relative = row.step == "s_t"
    none = float(np.finfo("float32").max)  # a clip that never clips
    optimizer = make(
        OURS,
        learning_rate=1.0,
        relative_step=False,
        scale_parameter=relative,
        factored=row.factored,
        beta_1=row.beta_1,
        clip_threshold=row.clip or none,
        **decay,
    )
    return optimizer, 1.0 if relative else 0.1


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


EMBEDDING_OUTPUTS = 8


def embedding(e):
    """Section f's model, dominated by one large Embedding."""
    import keras

    return keras.Sequential(
        [
            keras.Input((e["tokens"],), dtype="int32"),
            keras.layers.Embedding(e["vocab"], e["width"]),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(EMBEDDING_OUTPUTS),
        ]
    )


def embedding_batch(e):
    """Section f's batch: (tokens, targets), the same at every step."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, e["vocab"], (e["batch"], e["tokens"])).astype("int32")
    y = rng.standard_normal((e["batch"], EMBEDDING_OUTPUTS)).astype("float32")
    return x, y


# -------------------------------------------------------- bytes of a step


def embedding_gradients(e, backend):
    """Section f's variables as step_bytes takes them, (shape, rows) pairs.
    TensorFlow gives the embedding a row-sparse gradient (IndexedSlices) of
    batch x tokens rows, touching the distinct tokens of the batch; jax and
    torch give it a dense one, zero outside those rows, which ours applies
    at those rows alone on torch (adafactor.backend.torch.nonzero_rows). The
    Dense layer's are dense everywhere."""
    import numpy as np

    x, _ = embedding_batch(e)
    found = {"tensorflow": "sparse", "torch": "dense"}.get(backend)
    rows = (x.size, len(np.unique(x)), found) if found else None
    w, out = e["width"], EMBEDDING_OUTPUTS
    return [((e["vocab"], w), rows), ((w, out), None), ((out,), None)]


def step_bytes(name, variables):
    """A lower bound of the bytes one optimizer step of `name` (in BYTES)
    must read and write, as (read, written), for float32 variables given as
    (shape, rows) pairs: rows is None for a dense gradient, (k, u, kind)
    for one touching u <= k distinct rows: "sparse", a row-sparse one of k
    rows, or "dense", a dense one, zero outside the u rows.

    Each pass over an array that the algorithm's dependencies force counts
    the array's bytes once, and nothing is taken to stay in a cache from
    one pass to the next. Left out: the gradient's indices, the step count,
    scalars, and what an implementation adds (Keras's Adam on TensorFlow
    makes a sparse gradient dense, for m, and its square, for v: up to 4n
    more, each written and read). For n elements, the gradient dense:

    - SGD, x -= lr g: reads g and x, writes x. 3n.
    - ours: the update needs every row's and column's statistic, and its
      clipping the RMS of the whole update, before it writes any row: one
      pass over g for R_t and C_t, a second for RMS(U_t), taken of the
      update as it is formed (a sum of G^2 weighted by the statistics
      afterwards overflows under a spike; adafactor.updates), and a third
      for the update. RMS(x), of the weights before the step, must be
      complete before the write: a pass of its own over x (none with
      RMS(x) kept). Then the write reads x and writes it. 6n (5n kept),
      plus the statistics read and written once: r and c, of n/w + w
      elements for an n/w x w matrix, or v, of n, for a vector.
    - keras Adam: reads g, m, v and x, writes m, v and x. 7n.

    A row-sparse gradient of k rows of width w (u distinct):

    - SGD reads the k rows of g, and reads and writes the u rows of x.
    - ours reads the k rows three times, as above; reads and writes the u rows of
      x, and reads x whole for RMS(x) (not kept). Every row's statistic
      decays, so r and c are still read and written whole.
    - keras Adam: m and v decay at every row and x moves at every row, so
      it reads and writes x, m and v whole, and reads the k rows once.

    A dense gradient zero outside u rows: SGD and Adam take it as dense;
    ours reads it whole once to find the u rows, then as a row-sparse one
    of u rows.
    """
    read = written = 0
    for shape, rows in variables:
        n = math.prod(shape)
        # g: the gradient's elements read per pass; moved: the elements of
        # x moved; found: those read to find the touched rows.
        g, moved, found = n, n, 0
        if rows is not None:
            (k, u, kind), width = rows, n // shape[0]
            if kind == "sparse":
                g, moved = k * width, u * width
            elif name not in (FLOOR, "keras Adam"):
                g, moved, found = u * width, u * width, n
        if name == FLOOR:
            r, w = g + moved, moved
        elif name == "keras Adam":
            r, w = g + 3 * n, 3 * n
        else:
            rms_x = 0 if name == KEPT_RMS else n
            stats = _statistics(shape)
            r, w = found + 3 * g + rms_x + moved + stats, moved + stats
        read, written = read + 4 * r, written + 4 * w
    return read, written


def _statistics(shape):
    """Elements of ours' statistics: r and c for rank >= 2, else v."""
    if len(shape) < 2:
        return math.prod(shape)
    return math.prod(shape[:-1]) + math.prod(shape[:-2]) * shape[-1]
