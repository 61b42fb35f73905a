"""Section h: the rows of Table 2 of Shazeer & Stern (2018) on real text.

A byte-level language model, the reference Transformer made causal, learns
the docstrings of Python's standard library, with every tenth module held
out for validation. First keras Adam (beta_1 = 0.9, beta_2 = 0.999) without
warmup runs at each step size of a grid, to find where it becomes unstable
(bench.stability); then every row runs at three step sizes around that one
without warmup, and at the middle one with warmup too, for each seed. A
step size is a multiple k of each row's own rate (0.1 s_t, s_t relative,
100 s_t for SGD).

The paper's s_t, min(1e-6 t, 1/sqrt(t)) with warmup and min(1e-2, 1/sqrt(t))
without, is compressed from its 100,000 steps to the run's: step t here is
step 100,000 t / steps there. Each row is compiled once, as one loop over
the steps (`jax.lax.scan`) whose rates, batches and starting weights are
its inputs, so that every step size, seed and schedule reuses it.
"""

import ast
import os
import platform
import sysconfig
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bench import stability
from bench.models import ADAM, table2_optimizer

HELD_OUT = 10  # every tenth module of the standard library validates
VOCAB = 128  # bytes; one beyond ASCII becomes 0, which no docstring holds
PLOTTED = ("A", "H", "L", "N", "O", ADAM)  # their curves, seed 0, no warmup
EVERY = 10  # a plotted curve keeps every EVERY-th smoothed value


def _docstrings(path):
    """The docstrings of a module, its classes and its functions."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    nodes = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
    found = (ast.get_docstring(node) for node in nodes if isinstance(node, kinds))
    return [doc for doc in found if doc]


def corpus():
    """The training and validation bytes (as token ids) and what they are."""
    root = Path(sysconfig.get_paths()["stdlib"])
    modules = sorted(root.glob("*.py"))
    parts = {"train": [], "valid": []}
    for i, path in enumerate(modules):
        part = "valid" if i % HELD_OUT == HELD_OUT - 1 else "train"
        parts[part] += _docstrings(path)
    ids = {}
    for part, docs in parts.items():
        raw = np.frombuffer("\n\n".join(docs).encode("utf-8"), np.uint8)
        ids[part] = np.where(raw < VOCAB, raw, 0).astype(np.int32)
    counts = np.bincount(ids["train"], minlength=VOCAB)
    p = counts[counts > 0] / counts.sum()
    about = {
        "python": platform.python_version(),
        "modules": len(modules),
        "train_bytes": len(ids["train"]),
        "valid_bytes": len(ids["valid"]),
        "unigram_entropy": float(-(p * np.log(p)).sum()),
    }
    return ids, about


def rates(steps, warmup):
    """s_t at each of `steps` steps, compressed from the paper's 100,000."""
    t = (np.arange(steps) + 1.0) * 100_000 / steps
    peak = 1e-6 * t if warmup else np.full(steps, 1e-2)
    return np.minimum(peak, 1.0 / np.sqrt(t))


def windows(text, starts, length):
    """Windows of length + 1 bytes (the input and, shifted by one, the
    target) from each start."""
    return text[np.asarray(starts)[..., None] + np.arange(length + 1)]


def sweep(grid, unstable):
    """Three step sizes of the grid (of four or more): the first at which
    Adam without warmup was unstable (bench.stability), the one two below
    it, and the one above it. Where it is among the grid's first two, the
    grid's third instead of it; where it is the last, or Adam was never
    unstable, the one before the last instead."""
    if len(grid) < 4:
        raise ValueError(f"the grid needs four step sizes or more: {grid}")
    i = len(grid) - 2 if unstable is None else grid.index(unstable)
    i = min(max(i, 2), len(grid) - 2)
    return [grid[i - 2], grid[i], grid[i + 1]]


class Trainer:
    """Trains the language model with the optimizer of each row: a compiled
    loop per row, fed a run's rates, batches and starting weights."""

    def __init__(self, h):
        import jax
        import keras

        from tools.harness import transformer

        self.h = h
        text, self.about = corpus()

        def model():
            return transformer(VOCAB, h["length"], causal=True, **h["model"])

        self.model = model()
        self.starts = []  # each seed's starting weights and batches
        for seed in range(h["seeds"]):
            keras.utils.set_random_seed(seed)
            weights = [v.value for v in model().trainable_variables]
            rng = np.random.default_rng(seed)
            high = len(text["train"]) - h["length"] - 1
            starts = rng.integers(0, high, (h["steps"], h["batch"]))
            self.starts.append((weights, windows(text["train"], starts, h["length"])))
        spaced = np.linspace(0, len(text["valid"]) - h["length"] - 2, h["valid"])
        valid = windows(text["valid"], spaced.astype(int), h["length"])
        self.valid_loss = jax.jit(lambda weights: self.loss(weights, valid))
        self.compiled = {}

    def loss(self, weights, batch):
        import keras

        state = [v.value for v in self.model.non_trainable_variables]
        probs, _ = self.model.stateless_call(weights, state, batch[:, :-1])
        return keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(batch[:, 1:], probs)
        )

    def loop(self, letter):
        """The row's compiled loop, its optimizer's starting state, and the
        multiple of s_t its rate is."""
        import jax

        if letter not in self.compiled:
            optimizer, multiple = table2_optimizer(letter)
            optimizer.build(self.model.trainable_variables)
            rate = [v is optimizer._learning_rate for v in optimizer.variables]
            at = rate.index(True)

            def step(carry, batch_and_rate):
                weights, state = carry
                batch, lr = batch_and_rate
                loss, grads = jax.value_and_grad(self.loss)(weights, batch)
                state = state[:at] + [lr] + state[at + 1 :]
                weights, state = optimizer.stateless_apply(state, grads, weights)
                return (weights, state), loss

            def run(weights, state, batches, lrs):
                (weights, _), losses = jax.lax.scan(
                    step, (weights, state), (batches, lrs)
                )
                return weights, losses

            start = [v.value for v in optimizer.variables]
            self.compiled[letter] = (jax.jit(run), start, multiple)
        return self.compiled[letter]

    def train(self, letter, k, warmup):
        """A run per seed: its measures (bench.stability) and validation
        loss; and the smoothed curve of the first seed."""
        run, state, multiple = self.loop(letter)
        lrs = (k * multiple * rates(self.h["steps"], warmup)).astype(np.float32)
        runs, curves = [], []
        for weights, batches in self.starts:
            weights, losses = run(weights, state, batches, lrs)
            losses = np.asarray(losses, dtype=np.float64)
            finite = all(bool(np.isfinite(w).all()) for w in weights)
            out = stability.outcome(losses, self.about["unigram_entropy"], finite)
            runs.append(dict(out, valid=float(self.valid_loss(weights))))
            curves.append(stability.smoothed(losses)[::EVERY])
        return runs, [float(v) if np.isfinite(v) else None for v in curves[0]]


_trainer = None  # a pool process's own


def _start(h):
    global _trainer
    _trainer = Trainer(h)


def _runs(letter, schedules):
    """A row's runs at each (k, warmup), in a pool process."""
    return [_trainer.train(letter, *kw) for kw in schedules]


def _about():
    """What the text is, as a pool process read it."""
    return _trainer.about


def train(cfg):
    """The section's runs (a worker of bench.workers, on jax): each row in
    one of the configuration's processes (one per core, at most), which
    compiles it once."""
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError("section h runs on jax, whose loop is compiled here")
    began = time.perf_counter()
    h = cfg["table2"]
    spawn = get_context("spawn")  # no fork of a process that runs jax
    processes = min(h["processes"], os.cpu_count() or 1)
    with ProcessPoolExecutor(processes, spawn, _start, (h,)) as pool:
        # Adam without warmup at each step size of the grid, first.
        done = pool.map(
            _runs, [ADAM] * len(h["grid"]), [[(k, False)] for k in h["grid"]]
        )
        search = {k: runs[0] for k, runs in zip(h["grid"], done)}
        unstable = next(
            (k for k in h["grid"] if any(map(stability.unstable, search[k][0]))),
            None,
        )
        ks = sweep(h["grid"], unstable)
        # Every row without warmup at each k; with warmup at the middle one
        # alone, for time. Adam's runs without warmup are the search's.
        schedules = {
            letter: [(k, False) for k in ks if letter != ADAM] + [(ks[1], True)]
            for letter in h["rows"]
        }
        done = dict(zip(schedules, pool.map(_runs, *zip(*schedules.items()))))
        about = pool.submit(_about).result()
    runs, curves = {}, {}
    for k in ks:
        runs[f"{k:g}"], curves[f"{k:g}"] = {}, {}
    for letter, made in done.items():
        made = dict(zip(schedules[letter], made))
        if letter == ADAM:
            made.update({(k, False): search[k] for k in ks})
        for (k, warmup), (by_seed, curve) in made.items():
            runs[f"{k:g}"].setdefault(letter, {})["warmup" if warmup else "none"] = (
                by_seed
            )
            if letter in PLOTTED and not warmup:
                curves[f"{k:g}"][letter] = curve
    return {
        "corpus": about,
        **{
            name: h[name]
            for name in ("steps", "batch", "length", "seeds", "valid", "model")
        },
        "window": stability.WINDOW,
        "collapse": stability.COLLAPSE,
        "stall": stability.STALL,
        "every": EVERY,
        "processes": processes,
        "search": {f"{k:g}": by_seed for k, (by_seed, _) in search.items()},
        "unstable": None if unstable is None else f"{unstable:g}",
        "runs": runs,
        "curves": curves,
        "seconds": time.perf_counter() - began,
    }
