"""Benchmark: optimizer state, update-step time, scaling and peak memory.

    python bench/bench.py            # the full run (make bench)
    python bench/bench.py --quick    # small sizes; checks that it still works

Each measurement runs in a subprocess of its own (a Keras backend is fixed
per process, and peak memory must be a process's own). Contenders are
interleaved step by step, so that machine noise falls on all alike. Writes
results.md, results.json and bench.png to --out (default: bench/). The tests
run the workers in-process at the quick sizes (tests/python/test_bench.py).
The models and the state count come from the tests' helpers module.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))  # helpers


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


# ---------------------------------------------------------------- workers


def keras_contenders(keras):
    from adafactor import Adafactor

    return {
        "adafactor (ours)": lambda: Adafactor(),
        "keras Adafactor": lambda: keras.optimizers.Adafactor(),
        "keras Adam": lambda: keras.optimizers.Adam(),
    }


def with_sgd(keras):
    """The Keras contenders and SGD, the floor of time and memory: no state,
    and an update in place."""
    return dict(keras_contenders(keras), SGD=lambda: keras.optimizers.SGD())


def worker_state(cfg, backend):
    """Optimizer state of the reference Transformer, in elements: the Keras
    contenders, and the peer of this backend (optax on jax, torch's own on
    torch). Each backend runs in a process of its own, as everywhere here."""
    import keras
    import numpy as np

    from helpers import elements, state_variables, transformer

    t = cfg["transformer"]
    model = transformer(
        t["vocab"], t["seq"], t["d_model"], t["heads"], t["ff"], t["blocks"]
    )
    params = model.trainable_variables
    shapes = [tuple(v.shape) for v in params]
    if backend == "jax":
        import jax
        import jax.numpy as jnp
        import optax

        state = optax.adafactor(1e-3).init([jnp.zeros(s) for s in shapes])
        leaves = jax.tree_util.tree_leaves(state)
        return {"optax.adafactor": int(sum(np.prod(x.shape) for x in leaves))}
    if backend == "torch":
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
        return {"torch.optim.Adafactor": int(sum(v.numel() for v in kept))}
    out = {"parameters": elements(params)}
    for name, make in keras_contenders(keras).items():
        opt = make()
        opt.build(params)
        out[name] = elements(state_variables(opt))
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


def worker_scaling(cfg, backend):
    import keras
    import numpy as np

    from helpers import elements, state_variables

    out = {}
    for n in cfg["scaling"]:
        shapes = [(n, n)]
        row = {}
        for name, make in keras_contenders(keras).items():
            opt = make()
            timer = _timer(keras_step_fn(keras, backend, lambda o=opt: o, shapes))
            row[name] = {
                "ms": 1000
                * float(np.median([timer() for _ in range(cfg["steps"] // 3 or 1)])),
                "state_bytes": 4 * elements(state_variables(opt)),
            }
        out[str(n * n)] = row
    return out


def _status_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def worker_peak(cfg, which, jit_compile="auto"):
    """Peak RSS of a training step of a model dominated by one Dense.

    The first step traces the step and builds the optimizer; the peak is
    then reset (Linux's clear_refs), so that what is measured is a second
    step's, not the building of the model."""
    import keras
    import numpy as np

    n = cfg["peak"]
    model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(n)])
    model.compile(
        optimizer=with_sgd(keras)[which](), loss="mse", jit_compile=jit_compile
    )
    x = np.ones((8, n), "float32")
    model.train_on_batch(x, x)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    model.train_on_batch(x, x)
    return {
        "peak_mb": _status_mb("VmHWM"),
        "model_mb": n * (n + 1) * 4 / 2**20,
        "before_mb": before,
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
    steps = {}
    for name, make in with_sgd(keras).items():
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


def worker_bfloat16(cfg):
    """Reversing 12 tokens with float32 weights, and with bfloat16 weights
    (no float32 copy) rounded to nearest or stochastically."""
    import keras
    import numpy as np

    from adafactor import Adafactor
    from helpers import transformer

    rng = np.random.default_rng(1)
    n, epochs = cfg["bf16_samples"], cfg["bf16_epochs"]
    x = rng.integers(1, 16, size=(n, 12)).astype("int32")
    y = np.ascontiguousarray(x[:, ::-1])
    out = {}
    runs = [("float32", False), ("bfloat16", False), ("bfloat16", True)]
    for policy, rounding in runs:
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(7)
        model = transformer(**cfg["bf16_model"])
        model.compile(
            optimizer=Adafactor(
                learning_rate=cfg["bf16_lr"], stochastic_rounding=rounding
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            run_eagerly=cfg["quick"],  # tracing would take most of a quick run
        )
        history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0).history
        label = f"{policy}{', stochastic rounding' if rounding else ''}"
        out[label] = {"loss": history["loss"], "accuracy": history["accuracy"]}
    keras.config.set_dtype_policy("float32")
    return out


# ---------------------------------------------------------- orchestration

# Keras's default compiles no XLA for TensorFlow on a CPU; "auto" elsewhere.
RUNS = [
    ("tensorflow (default: no XLA on CPU)", "tensorflow", ()),
    ("tensorflow, jit_compile=True", "tensorflow", ("xla",)),
    ("jax", "jax", ()),
    ("torch", "torch", ()),
]


BACKENDS = ("tensorflow", "jax", "torch")
PEAK_CONTENDERS = ("adafactor (ours)", "SGD", "keras Adafactor", "keras Adam")


def work(cfg, kind, *extra):
    """One measurement, on the backend this process runs."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return {
        "state": lambda: worker_state(cfg, backend),
        "step": lambda: worker_step(cfg, backend),
        "scaling": lambda: worker_scaling(cfg, backend),
        "peak": lambda: worker_peak(cfg, *_jit(extra)),
        "peak_size": lambda: worker_peak(
            dict(cfg, peak=int(extra[0])), *_jit(extra[1:])
        ),
        "bfloat16": lambda: worker_bfloat16(cfg),
        "embedding": lambda: worker_embedding(cfg, _jit(extra)[1]),
    }[kind]()


def _jit(extra):
    """(the words before "xla", jit_compile): "xla" last asks for XLA."""
    if extra[-1:] == ("xla",):
        return " ".join(extra[:-1]), True
    return " ".join(extra), "auto"


def in_subprocess(quick):
    """Run each measurement in a fresh process on the backend it names."""

    def run(kind, *extra, backend="tensorflow"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        cmd = [sys.executable, __file__, "--worker", kind, *extra]
        if quick:
            cmd.append("--quick")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            failed = f"{kind} {' '.join(extra)} failed:\n{done.stderr[-4000:]}"
            raise RuntimeError(failed)
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


def collect(cfg, run, backends=BACKENDS):
    """Every section's measurements, each made by `run` on its backend."""
    results = {"machine": machine()}
    results["state"] = {}
    for backend in backends:
        print(f"a. state on {backend} ...", flush=True)
        results["state"].update(run("state", backend=backend))
    results["step"] = {}
    for backend in backends:
        print(f"b. step on {backend} ...", flush=True)
        results["step"][backend] = run("step", backend=backend)
    print("c. scaling ...", flush=True)
    results["scaling"] = run("scaling", backend=backends[0])
    results["peak"] = {}
    for label, backend, extra in RUNS:
        if backend in backends:
            results["peak"][label] = {}
            for name in PEAK_CONTENDERS:
                print(f"d. peak memory, {label}: {name} ...", flush=True)
                cell = run("peak", *name.split(), *extra, backend=backend)
                results["peak"][label][name] = cell
    # TensorFlow's default at several sizes: what grows with the model, and
    # what does not.
    label, backend, extra = RUNS[0]
    results["peak_sizes"] = {}
    for n in cfg["peak_sizes"] if backend in backends else ():
        print(f"d. peak memory, {label}, {n} x {n} ...", flush=True)
        results["peak_sizes"][str(n)] = {
            name: run("peak_size", str(n), *name.split(), *extra, backend=backend)
            for name in ("adafactor (ours)", "SGD")
        }
    print("e. bfloat16 weights ...", flush=True)
    results["bfloat16"] = run("bfloat16", backend=backends[0])
    results["embedding_size"] = cfg["embedding"]
    results["embedding"] = {}
    for label, backend, extra in RUNS:
        if backend in backends:
            print(f"f. embedding training step: {label} ...", flush=True)
            results["embedding"][label] = run("embedding", *extra, backend=backend)
    return results


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


def epochs_of(runs):
    return len(next(iter(runs.values()))["loss"])


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
        "Linear growth keeps the time per parameter constant.",
        "",
        "| parameters | contender | ms | ns per parameter | state bytes |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, row in results["scaling"].items():
        for name, cell in row.items():
            lines.append(
                f"| {int(n):,} | {name} | {cell['ms']:.1f} | "
                f"{1e6 * cell['ms'] / int(n):.2f} | {cell['state_bytes']:,} |"
            )
    lines += [
        "",
        "## d. Peak memory of a training step (RSS, one Dense layer)",
        "",
        "Each optimizer in a process of its own; SGD keeps no state and updates"
        " in place. The peak of a second step: RSS before it (weights, state,"
        " the runtime, what the first step left) plus what the step adds.",
        "",
        "| backend | optimizer | peak RSS MB | x SGD | before MB | step adds MB"
        " | weights MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, cells in results["peak"].items():
        floor = cells["SGD"]["peak_mb"]
        for name, cell in cells.items():
            lines.append(
                f"| {label} | {name} | {cell['peak_mb']:.0f} | "
                f"{cell['peak_mb'] / floor:.2f} | {cell['before_mb']:.0f} | "
                f"{cell['peak_mb'] - cell['before_mb']:.0f} | "
                f"{cell['model_mb']:.0f} |"
            )
    lines += [
        "",
        f"{RUNS[0][0]}: ours and SGD with Dense layers of several sizes, to"
        " tell what grows with the model from what does not.",
        "",
        "| weights MB | ours peak MB | SGD peak MB | ours - SGD MB | x SGD |"
        " ours' step adds MB | SGD's step adds MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cells in results["peak_sizes"].values():
        ours, sgd = cells["adafactor (ours)"], cells["SGD"]
        lines.append(
            f"| {ours['model_mb']:.0f} | {ours['peak_mb']:.0f} | "
            f"{sgd['peak_mb']:.0f} | {ours['peak_mb'] - sgd['peak_mb']:.0f} | "
            f"{ours['peak_mb'] / sgd['peak_mb']:.2f} | "
            f"{ours['peak_mb'] - ours['before_mb']:.0f} | "
            f"{sgd['peak_mb'] - sgd['before_mb']:.0f} |"
        )
    runs = results["bfloat16"]
    reference = runs["float32"]["loss"][-1]
    lines += [
        "",
        "## e. bfloat16 weights on a small Transformer reversing 12 tokens",
        "",
        f"{epochs_of(runs)} epochs: early in training (chance is a loss of "
        "ln 16 = 2.77), not a converged comparison.",
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
        print(json.dumps(work(cfg, *args.worker)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results = collect(cfg, in_subprocess(args.quick))
    write_report(results, args.out)
    plot(results, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
