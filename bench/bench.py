"""Benchmark: optimizer state, update-step time, scaling and peak memory.

    python bench/bench.py            # the full run (make bench)
    python bench/bench.py --quick    # seconds; checks that it still works

Each measurement runs in a subprocess of its own (a Keras backend is fixed
per process, and peak memory must be a process's own). Contenders are
interleaved step by step, so that machine noise falls on all alike. Writes
results.md, results.json and bench.png to --out (default: bench/).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sizes(quick):
    if quick:
        return dict(
            transformer=dict(d_model=64, heads=2, ff=128, vocab=500, blocks=1, seq=8),
            step_shapes=[(128, 128)] * 2 + [(128,)] * 2,
            steps=5,
            scaling=[256, 512],
            peak=512,
            bf16_samples=256,
            bf16_epochs=1,
            bf16_lr=0.003,
            embedding=dict(vocab=2000, width=16, batch=32, tokens=4, steps=3),
        )
    return dict(
        transformer=dict(d_model=512, heads=8, ff=2048, vocab=8000, blocks=2, seq=32),
        step_shapes=[(2048, 2048)] * 4 + [(2048,)] * 4,
        steps=30,
        scaling=[1024, 2048, 4096, 8192],
        peak=8192,
        bf16_samples=4000,
        bf16_epochs=6,
        bf16_lr=0.003,
        embedding=dict(vocab=200_000, width=256, batch=256, tokens=16, steps=30),
    )


# ---------------------------------------------------------------- workers


def keras_contenders(keras):
    from adafactor import Adafactor

    return {
        "adafactor (ours)": lambda: Adafactor(),
        "keras Adafactor": lambda: keras.optimizers.Adafactor(),
        "keras Adam": lambda: keras.optimizers.Adam(),
    }


def count(values):
    import numpy as np

    return int(sum(np.prod(tuple(v.shape)) for v in values))


def worker_state(cfg):
    """Optimizer state of the reference Transformer, in elements."""
    import keras
    import numpy as np

    t = cfg["transformer"]
    tokens = keras.Input((t["seq"],), dtype="int32")
    x = keras.layers.Embedding(t["vocab"], t["d_model"])(tokens)
    for _ in range(t["blocks"]):
        attention = keras.layers.MultiHeadAttention(
            t["heads"], t["d_model"] // t["heads"]
        )
        x = keras.layers.LayerNormalization()(x + attention(x, x))
        h = keras.layers.Dense(t["ff"], activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(t["d_model"])(h))
    model = keras.Model(tokens, keras.layers.Dense(t["vocab"])(x))
    params = model.trainable_variables
    shapes = [tuple(v.shape) for v in params]
    out = {"parameters": count(params)}
    for name, make in keras_contenders(keras).items():
        opt = make()
        opt.build(params)
        out[name] = count(
            v for v in opt.variables if v.name not in ("iteration", "learning_rate")
        )

    import jax
    import jax.numpy as jnp
    import optax

    tree = [jnp.zeros(s) for s in shapes]
    state = optax.adafactor(1e-3).init(tree)
    out["optax.adafactor"] = int(
        sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state))
    )
    import torch

    tensors = [torch.zeros(s, requires_grad=True) for s in shapes]
    opt = torch.optim.Adafactor(tensors)
    for p in tensors:
        p.grad = torch.ones_like(p)
    opt.step()
    out["torch.optim.Adafactor"] = int(
        sum(
            v.numel()
            for st in opt.state.values()
            for k, v in st.items()
            if torch.is_tensor(v) and k != "step"
        )
    )
    return out


def _timer(fn, warmup=3):
    for _ in range(warmup):
        fn()

    def timed():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return timed


def keras_step_fn(keras, backend, make, shapes, seed=0):
    """A function running one compiled optimizer.apply on fresh variables."""
    import numpy as np

    rng = np.random.default_rng(seed)
    variables = [
        keras.Variable((0.02 * rng.standard_normal(s)).astype("float32"))
        for s in shapes
    ]
    grads = [
        keras.ops.convert_to_tensor(rng.standard_normal(s).astype("float32"))
        for s in shapes
    ]
    opt = make()
    opt.build(variables)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda: opt.apply(grads, variables), jit_compile=True)
    if backend == "jax":
        import jax

        step = jax.jit(opt.stateless_apply, donate_argnums=(0, 2))
        holder = {
            "state": [v.value for v in opt.variables],
            "values": [v.value for v in variables],
        }

        def run():
            holder["values"], holder["state"] = step(
                holder["state"], grads, holder["values"]
            )
            jax.block_until_ready(holder["values"])

        return run
    return lambda: opt.apply(grads, variables)


def other_step_fns(backend, shapes):
    import numpy as np

    rng = np.random.default_rng(0)
    if backend == "jax":
        import jax
        import jax.numpy as jnp
        import optax

        params = [
            jnp.asarray(0.02 * rng.standard_normal(s), jnp.float32) for s in shapes
        ]
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

        return {"optax.adafactor": run}
    if backend == "torch":
        import torch

        params = [
            torch.tensor(0.02 * rng.standard_normal(s), dtype=torch.float32)
            for s in shapes
        ]
        for p in params:
            p.requires_grad_(True)
            p.grad = torch.tensor(rng.standard_normal(p.shape), dtype=torch.float32)
        opt = torch.optim.Adafactor(params)
        return {"torch.optim.Adafactor": opt.step}
    return {}


def worker_step(cfg, backend):
    import keras
    import numpy as np

    shapes = [tuple(s) for s in cfg["step_shapes"]]
    fns = {
        name: keras_step_fn(keras, backend, make, shapes)
        for name, make in keras_contenders(keras).items()
    }
    fns.update(other_step_fns(backend, shapes))
    timers = {name: _timer(fn) for name, fn in fns.items()}
    times = {name: [] for name in timers}
    for _ in range(cfg["steps"]):
        for name, timer in timers.items():  # interleaved
            times[name].append(timer())
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def worker_scaling(cfg):
    import keras
    import numpy as np

    out = {}
    for n in cfg["scaling"]:
        shapes = [(n, n)]
        row = {}
        for name, make in keras_contenders(keras).items():
            opt = make()
            timer = _timer(keras_step_fn(keras, "tensorflow", lambda o=opt: o, shapes))
            row[name] = {
                "ms": 1000
                * float(np.median([timer() for _ in range(cfg["steps"] // 3 or 1)])),
                "state_bytes": 4
                * count(
                    v
                    for v in opt.variables
                    if v.name not in ("iteration", "learning_rate")
                ),
            }
        out[str(n * n)] = row
    return out


def worker_peak(cfg, which):
    """Peak RSS of one training step of a model dominated by one Dense."""
    import keras
    import numpy as np

    n = cfg["peak"]
    model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(n)])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.compile(optimizer=keras_contenders(keras)[which](), loss="mse")
    x = np.ones((8, n), "float32")
    model.train_on_batch(x, x)
    model.train_on_batch(x, x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_mb": peak / 1024,
        "model_mb": n * (n + 1) * 4 / 2**20,
        "before_mb": baseline / 1024,
    }


def worker_embedding(cfg, jit_compile):
    """Training steps (train_on_batch) of a model dominated by one large
    Embedding, the contenders interleaved step by step. TensorFlow gives the
    embedding an IndexedSlices gradient; JAX and torch a dense one."""
    import keras
    import numpy as np

    e = cfg["embedding"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, e["vocab"], (e["batch"], e["tokens"])).astype("int32")
    y = rng.standard_normal((e["batch"], 8)).astype("float32")
    contenders = dict(keras_contenders(keras), SGD=lambda: keras.optimizers.SGD())
    steps = {}
    for name, make in contenders.items():
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.Input((e["tokens"],), dtype="int32"),
                keras.layers.Embedding(e["vocab"], e["width"]),
                keras.layers.GlobalAveragePooling1D(),
                keras.layers.Dense(8),
            ]
        )
        model.compile(optimizer=make(), loss="mse", jit_compile=jit_compile)
        steps[name] = _timer(lambda m=model: m.train_on_batch(x, y))
    times = {name: [] for name in steps}
    for _ in range(e["steps"]):
        for name, timer in steps.items():  # interleaved
            times[name].append(timer())
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def reversal_transformer(keras, vocab=16, length=12, d_model=64, heads=4, ff=128):
    """The demo's model: reverse a sequence of tokens."""
    import numpy as np

    tokens = keras.Input((length,), dtype="int32")
    angle = np.arange(length)[:, None] / 10000 ** (
        2 * np.arange(d_model // 2)[None, :] / d_model
    )
    positions = np.concatenate([np.sin(angle), np.cos(angle)], 1).astype("float32")
    x = keras.layers.Embedding(vocab, d_model)(tokens)
    x = x + keras.ops.cast(positions, x.dtype)
    for _ in range(2):
        attention = keras.layers.MultiHeadAttention(heads, d_model // heads)
        x = keras.layers.LayerNormalization()(x + attention(x, x))
        h = keras.layers.Dense(ff, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(d_model)(h))
    out = keras.layers.Dense(vocab, activation="softmax", dtype="float32")(x)
    return keras.Model(tokens, out)


def worker_bfloat16(cfg):
    """The demo task with float32 weights, and with bfloat16 weights (no
    float32 copy) rounded to nearest or stochastically."""
    import keras
    import numpy as np

    from adafactor import Adafactor

    rng = np.random.default_rng(1)
    n, epochs = cfg["bf16_samples"], cfg["bf16_epochs"]
    x = rng.integers(1, 16, size=(n, 12)).astype("int32")
    y = np.ascontiguousarray(x[:, ::-1])
    out = {}
    runs = [("float32", False), ("bfloat16", False), ("bfloat16", True)]
    for policy, rounding in runs:
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(7)
        model = reversal_transformer(keras)
        model.compile(
            optimizer=Adafactor(
                learning_rate=cfg["bf16_lr"], stochastic_rounding=rounding
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0).history
        label = f"{policy}{', stochastic rounding' if rounding else ''}"
        out[label] = {"loss": history["loss"], "accuracy": history["accuracy"]}
    keras.config.set_dtype_policy("float32")
    return out


# ---------------------------------------------------------- orchestration

# Keras's default compiles no XLA for TensorFlow on a CPU; "auto" elsewhere.
EMBEDDING_RUNS = [
    ("tensorflow (default: no XLA on CPU)", "tensorflow", ()),
    ("tensorflow, jit_compile=True", "tensorflow", ("xla",)),
    ("jax", "jax", ()),
    ("torch", "torch", ()),
]


def run_worker(args, *extra, backend="tensorflow"):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, __file__, "--worker", *extra]
    if args.quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(extra)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    versions = {
        p: version(p)
        for p in ("keras", "tensorflow-cpu", "jax", "optax", "torch", "numpy")
    }
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions,
    }


def timing_table(title, by_backend, reference):
    """Markdown rows: each contender's median ms, and its ratio to one."""
    lines = ["", title, "", f"| backend | contender | ms | x {reference} |"]
    lines.append("|---|---|---:|---:|")
    for backend, times in by_backend.items():
        for name, ms in times.items():
            ratio = ms / times[reference]
            lines.append(f"| {backend} | {name} | {ms:.1f} | {ratio:.2f} |")
    return lines


def timing_bars(ax, by_backend, xlabel, title, color):
    names, values = [], []
    for backend, times in by_backend.items():
        for name, ms in times.items():
            names.append(f"{backend}: {name}")
            values.append(ms)
    ax.barh(names[::-1], values[::-1], color=color)
    ax.set(xlabel=xlabel, title=title)
    ax.tick_params(axis="y", labelsize=7)


def write_report(results, out):
    state = results["state"]
    params = state["parameters"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
        f"Python {results['machine']['python']}; {results['machine']['date']}.  ",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["machine"]["versions"].items())
        + ".",
        "",
        "## a. Optimizer state on the reference Transformer",
        "",
        f"{params:,} parameters.",
        "",
        "| optimizer | state elements | x parameters |",
        "|---|---:|---:|",
    ]
    for name, n in state.items():
        if name != "parameters":
            lines.append(f"| {name} | {n:,} | {n / params:.3f} |")
    lines += timing_table(
        "## b. Update-step time (median ms, compiled: TF XLA, JAX jit; torch eager)",
        results["step"],
        "adafactor (ours)",
    )
    lines += [
        "",
        "## c. Scaling on TensorFlow (one square variable)",
        "",
        "| parameters | contender | ms | state bytes |",
        "|---:|---|---:|---:|",
    ]
    for n, row in results["scaling"].items():
        for name, cell in row.items():
            lines.append(
                f"| {int(n):,} | {name} | {cell['ms']:.1f} | {cell['state_bytes']:,} |"
            )
    lines += [
        "",
        "## d. Peak memory of a training step (RSS, one Dense layer)",
        "",
        "| optimizer | peak RSS MB | weights MB |",
        "|---|---:|---:|",
    ]
    for name, cell in results["peak"].items():
        lines.append(f"| {name} | {cell['peak_mb']:.0f} | {cell['model_mb']:.0f} |")
    runs = results["bfloat16"]
    reference = runs["float32"]["loss"][-1]
    lines += [
        "",
        "## e. bfloat16 weights on the demo task (reversing 12 tokens)",
        "",
        "| weights | final loss | x float32 | accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, run in runs.items():
        loss = run["loss"][-1]
        lines.append(
            f"| {name} | {loss:.4f} | {loss / reference:.3f} | "
            f"{run['accuracy'][-1]:.3f} |"
        )
    e = results["embedding_size"]
    lines += timing_table(
        f"## f. Training step of a model dominated by Embedding({e['vocab']:,}, "
        f"{e['width']}) (median ms, train_on_batch, {e['batch']} x {e['tokens']}"
        " tokens)",
        results["embedding"],
        "keras Adam",
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))


def plot(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(25, 4.2))
    timing_bars(
        axes[0],
        results["step"],
        "ms per update step (median)",
        "b. Update step",
        "#4c72b0",
    )
    scaling = results["scaling"]
    ns = [int(n) for n in scaling]
    for name in next(iter(scaling.values())):
        axes[1].loglog(ns, [scaling[str(n)][name]["ms"] for n in ns], "o-", label=name)
        axes[2].loglog(
            ns, [scaling[str(n)][name]["state_bytes"] for n in ns], "o-", label=name
        )
    axes[1].set(xlabel="parameters", ylabel="ms", title="c. Step time (TF)")
    axes[2].set(xlabel="parameters", ylabel="bytes", title="c. Optimizer state")
    axes[1].legend(fontsize=8)
    for name, run in results["bfloat16"].items():
        epochs = range(1, len(run["loss"]) + 1)
        axes[3].plot(epochs, run["loss"], "o-", label=name)
    axes[3].set(xlabel="epoch", ylabel="training loss", title="e. bfloat16 weights")
    axes[3].legend(fontsize=8)
    timing_bars(
        axes[4],
        results["embedding"],
        "ms per training step (median)",
        "f. Large embedding",
        "#55a868",
    )
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--worker", nargs="+")
    args = parser.parse_args()
    cfg = sizes(args.quick)

    if args.worker:
        kind, *rest = args.worker
        backend = os.environ.get("KERAS_BACKEND", "tensorflow")
        result = {
            "state": lambda: worker_state(cfg),
            "step": lambda: worker_step(cfg, backend),
            "scaling": lambda: worker_scaling(cfg),
            "peak": lambda: worker_peak(cfg, " ".join(rest)),
            "bfloat16": lambda: worker_bfloat16(cfg),
            "embedding": lambda: worker_embedding(cfg, rest == ["xla"] or "auto"),
        }[kind]()
        print(json.dumps(result))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine()}
    print("a. state ...", flush=True)
    results["state"] = run_worker(args, "state")
    results["step"] = {}
    for backend in ("tensorflow", "jax", "torch"):
        print(f"b. step on {backend} ...", flush=True)
        results["step"][backend] = run_worker(args, "step", backend=backend)
    print("c. scaling ...", flush=True)
    results["scaling"] = run_worker(args, "scaling")
    results["peak"] = {}
    for name in ("adafactor (ours)", "keras Adafactor", "keras Adam"):
        print(f"d. peak memory: {name} ...", flush=True)
        results["peak"][name] = run_worker(args, "peak", *name.split())
    print("e. bfloat16 weights ...", flush=True)
    results["bfloat16"] = run_worker(args, "bfloat16")
    results["embedding_size"] = cfg["embedding"]
    results["embedding"] = {}
    for label, backend, extra in EMBEDDING_RUNS:
        print(f"f. embedding training step: {label} ...", flush=True)
        results["embedding"][label] = run_worker(
            args, "embedding", *extra, backend=backend
        )
    write_report(results, args.out)
    plot(results, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
