"""Section i: the step on the models people train, hundreds of variables of
many sizes, where a step per variable pays per variable: many small
variables (Dense(8) layers), the reference Transformer (section a's) and a
BERT-base-like list of variables; the optimizer's step alone (`apply` on
fixed gradients) and the training step (`train_on_batch`); ours against
keras Adam, keras Adafactor, SGD (the floor) and this backend's peers, the
contenders interleaved step by step, in a process per backend and mode."""

import math

from bench.models import FLOOR, OURS, PEER_COLUMNS, make, reference_transformer

# (label, backend, how the step alone is compiled (tools.harness), fit()'s
# jit_compile): Keras's own way on each backend.
MODES = [
    ("torch (eager)", "torch", "eager", "auto"),
    ("tensorflow without XLA", "tensorflow", "graph", False),
    ("tensorflow with XLA", "tensorflow", "default", True),
    ("jax (jit)", "jax", "default", "auto"),
]
MANY, TRANSFORMER, BERT = (
    "many small variables",
    "reference Transformer",
    "BERT-base-like variables",
)
MODELS = (MANY, TRANSFORMER, BERT)
CONTENDERS = (OURS, "keras Adam", "keras Adafactor", FLOOR)
ADAM = "keras Adam"


def sizes(quick):
    if quick:
        bert = dict(vocab=300, positions=32, width=16, heads=2, ff=32, blocks=1)
        return dict(layers=4, width=8, batch=8, steps=3, bert=bert)
    bert = dict(vocab=30522, positions=512, width=768, heads=12, ff=3072, blocks=12)
    return dict(layers=150, width=8, batch=32, steps=15, bert=bert)


def bert_shapes(b):
    """BERT-base's variables (Devlin et al., 2019) as Keras lays them out:
    word, position and type embeddings and a layer norm; per block, the
    query, key and value kernels (width, heads, width / heads) and biases,
    the output kernel and bias, a layer norm, the feed-forward kernels and
    biases, and a layer norm; then the pooler. 199 variables at BERT-base's
    size (12 blocks of width 768), 109,482,240 parameters."""
    w, h, f = b["width"], b["heads"], b["ff"]
    d = w // h
    shapes = [(b["vocab"], w), (b["positions"], w), (2, w), (w,), (w,)]
    block = [(w, h, d)] * 3 + [(h, d)] * 3 + [(h, d, w), (w,), (w,), (w,)]
    block += [(w, f), (f,), (f, w), (w,), (w,), (w,)]
    return shapes + block * b["blocks"] + [(w, w), (w,)]


def many_small(c):
    """A stack of Dense layers of `width` units, with a Dense(1) on top."""
    import keras

    layers = [keras.layers.Dense(c["width"]) for _ in range(c["layers"])]
    return keras.Sequential(
        [keras.Input((c["width"],)), *layers, keras.layers.Dense(1)]
    )


def measure(cfg, compiler, jit_compile):
    """Each model's step alone and training step, median ms per contender
    (and this backend's peers, for the step alone)."""
    import keras
    import numpy as np

    from bench.workers import _interleaved, _timer, keras_step, peer_steps

    c = sizes(cfg["quick"])
    rng = np.random.default_rng(0)
    out = {}
    for name in MODELS:
        if name == BERT:
            model, shapes = None, bert_shapes(c["bert"])
        else:
            model = many_small(c) if name == MANY else reference_transformer(cfg)
            shapes = [tuple(v.shape) for v in model.trainable_variables]
        steps = {
            n: _timer(keras_step(lambda n=n: make(n), shapes, compiler=compiler))
            for n in CONTENDERS
        }
        steps.update({n: _timer(fn) for n, fn in peer_steps(shapes).items()})
        out[name] = {
            "variables": len(shapes),
            "parameters": int(sum(math.prod(s) for s in shapes)),
            "step": _interleaved(steps, c["steps"]),
        }
        if model is None or (cfg["quick"] and name != MANY):
            continue  # quick: the training step of the first model alone
        if name == MANY:
            x = rng.standard_normal((c["batch"], c["width"])).astype("float32")
            y, loss = x.sum(axis=1, keepdims=True), "mse"
        else:
            t = cfg["transformer"]
            x = rng.integers(0, t["vocab"], (c["batch"], t["seq"])).astype("int32")
            y, loss = x, "sparse_categorical_crossentropy"
        trains = {}
        for n in CONTENDERS:
            keras.utils.set_random_seed(1)
            m = many_small(c) if name == MANY else reference_transformer(cfg)
            m.compile(optimizer=make(n), loss=loss, jit_compile=jit_compile)
            trains[n] = _timer(lambda m=m, x=x, y=y: m.train_on_batch(x, y))
        out[name]["train"] = _interleaved(trains, c["steps"])
    return out


def report(by_mode):
    """Section i's tables, one per model, and what they say, computed from
    their numbers."""
    lines = [
        "",
        "## i. The models people train (median ms; ratios of ours)",
        "",
        "Many small variables: Dense(8) layers; the reference Transformer of "
        "section a; BERT-base's variables (the step alone). The optimizer's "
        "step alone is `apply` on fixed gradients, compiled as Keras compiles "
        "its step on each backend; the training step is `train_on_batch`.",
    ]
    wins = {"step": [], "train": []}
    for name in MODELS:
        rows = {label: r[name] for label, r in by_mode.items() if name in r}
        if not rows:
            continue
        first = next(iter(rows.values()))
        # Every peer's column, in every run: "-" where it did not run.
        peers = PEER_COLUMNS
        lines += [
            "",
            f"### {name}: {first['variables']} variables, "
            f"{first['parameters']:,} parameters",
            "",
            "| backend, mode | "
            + " | ".join(f"{n}, step" for n in CONTENDERS + tuple(peers))
            + " | ours / Adam, step | ours / Adam, train | ours / SGD, step |",
            "|---|" + "---:|" * (len(CONTENDERS) + len(peers) + 3),
        ]
        for label, r in rows.items():
            step, train = r["step"], r.get("train")
            cells = [
                f"{step[n]:.1f}" if n in step else "-"
                for n in CONTENDERS + tuple(peers)
            ]
            ratios = [step[OURS] / step[ADAM]]
            ratios.append(train[OURS] / train[ADAM] if train else None)
            ratios.append(step[OURS] / step[FLOOR])
            cells += ["-" if x is None else f"{x:.2f}" for x in ratios]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            for kind, ratio in zip(("step", "train"), ratios):
                if ratio is not None:
                    wins[kind].append((ratio, f"{label}, {name}"))
    lines.append("")
    for kind, words in (("step", "The step alone"), ("train", "The training step")):
        done = [w for ratio, w in wins[kind] if ratio <= 1.0]
        missed = [f"{w} ({ratio:.2f}x)" for ratio, w in wins[kind] if ratio > 1.0]
        sentence = (
            f"{words}: ours took no longer than keras Adam in {len(done)} of "
            f"{len(wins[kind])} cases"
        )
        lines.append(
            sentence + (f"; longer in {', '.join(missed)}." if missed else ".")
        )
    return lines
