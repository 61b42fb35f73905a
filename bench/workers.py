"""Each measurement, run in a process of its own (a Keras backend is fixed per
process, and peak memory must be a process's own):

    python -m bench.workers '{"kind": "peak", "backend": "tensorflow",
        "quick": false, "contender": "keras Adam", "size": 8192,
        "jit_compile": true}'

prints the measurement as JSON on its last line. A spec names the kind of
measurement, the backend, the sizes (quick or not) and the kind's own
arguments: a contender, a size and jit_compile (true or "auto") for "peak",
jit_compile for "embedding"; "state", "step", "scaling", "bfloat16",
"bandwidth" and "table2" take none. Keras is imported only once the backend is set.
"""

import json
import os
import sys
import time
from pathlib import Path

from bench import table2
from bench.models import (
    BF16_LENGTH,
    BF16_VOCAB,
    FOREACH,
    OURS,
    PEERS,
    STATEFUL,
    WITH_FLOOR,
    dense,
    embedding,
    embedding_batch,
    make,
    optax_state,
    reference_transformer,
    reversing_transformer,
    sizes,
    torch_step,
)

# Ours again in section a, factoring the two largest dimensions (as optax),
# and in section b, skipping a step with a non-finite gradient.
LARGEST = (OURS, {"factor_dims": "largest"})
SKIPPING = (OURS, {"skip_nonfinite": True})


def state(cfg):
    """Optimizer state of the reference Transformer, in elements: the Keras
    contenders, and the peer of this backend (optax on jax, torch's own on
    torch). Each backend runs in a process of its own, as everywhere here."""
    import keras

    from tools.harness import elements, state_variables

    backend = keras.backend.backend()
    params = reference_transformer(cfg).trainable_variables
    shapes = [tuple(v.shape) for v in params]
    if backend in PEERS:
        peer = PEERS[backend]
        out = {peer.name: peer.state(shapes)}
        if backend == "jax":  # optax factoring as ours does, every matrix
            out[f"{peer.name}, min_dim_size_to_factor=1"] = optax_state(
                shapes, min_dim_size_to_factor=1
            )
        return out
    out = {"parameters": elements(params)}
    for name, options in [(n, {}) for n in STATEFUL] + [LARGEST]:
        opt = make(name, **options)
        opt.build(params)
        label = ", ".join([name] + [f"{k}={v!r}" for k, v in options.items()])
        out[label] = elements(state_variables(opt))
    return out


def _timer(fn, warmup=3):
    for _ in range(warmup):
        fn()
        _synchronize()

    def timed():
        start = time.perf_counter()
        fn()
        _synchronize()
        return time.perf_counter() - start

    return timed


def _synchronize():
    """Wait for the device where a step returns before it is done: torch on
    a GPU. (JAX's compiled steps here wait with block_until_ready; a
    training step returns its loss as a number.)"""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def _interleaved(timers, steps):
    """Median ms of each timer, the timers taking turns step by step, so
    that machine noise falls on all alike."""
    import numpy as np

    times = {name: [] for name in timers}
    for _ in range(steps):
        for name, timer in timers.items():  # interleaved
            times[name].append(timer())
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def keras_step(make_optimizer, shapes, seed=0, compiler=None):
    """A function running one compiled optimizer.apply on fresh variables:
    XLA on TensorFlow, jax.jit with the state donated on JAX; eager on torch,
    as Keras runs it there by default (jit_compile="auto" means eager); or
    as `compiler` says (see harness.CompiledStep)."""
    import keras
    import numpy as np

    from tools.harness import CompiledStep

    rng = np.random.default_rng(seed)
    variables = [
        keras.Variable((0.02 * rng.standard_normal(s)).astype("float32"))
        for s in shapes
    ]
    grads = [
        keras.ops.convert_to_tensor(rng.standard_normal(s).astype("float32"))
        for s in shapes
    ]
    if compiler is None:
        compiler = "eager" if keras.backend.backend() == "torch" else "default"
    return CompiledStep(make_optimizer(), variables, compiler).bind(grads)


def peer_steps(shapes):
    """This backend's peers' steps: optax's on jax; torch's own on torch, as
    it runs by default and with foreach=True (one operation for every
    variable at once)."""
    import keras

    backend = keras.backend.backend()
    peer = PEERS.get(backend)
    if peer is None:
        return {}
    steps = {peer.name: peer.step(shapes)}
    if backend == "torch":
        steps[peer.name + FOREACH] = torch_step(shapes, foreach=True)
    return steps


def realistic(cfg, compiler, jit_compile):
    """Section i (see bench.realistic)."""
    from bench import realistic as section

    return section.measure(cfg, compiler, jit_compile)


def step(cfg):
    """Update-step time of each contender, SGD too, and of this backend's
    peer."""
    import keras

    shapes = [tuple(s) for s in cfg["step_shapes"]]
    fns = {name: keras_step(lambda n=name: make(n), shapes) for name in WITH_FLOOR}
    # The cost of skip_nonfinite: the column "x ours" is its ratio to the
    # same step without it.
    name, options = SKIPPING
    fns[f"{name}, skip_nonfinite=True"] = keras_step(
        lambda: make(name, **options), shapes
    )
    peer = PEERS.get(keras.backend.backend())
    if peer:
        fns[peer.name] = peer.step(shapes)
    return _interleaved({name: _timer(fn) for name, fn in fns.items()}, cfg["steps"])


def scaling(cfg):
    """Update-step time and state of one square variable of growing size."""
    import numpy as np

    from tools.harness import elements, state_variables

    out = {}
    for n in cfg["scaling"]:
        shapes = [(n, n)]
        row = {}
        for name in STATEFUL:
            opt = make(name)
            timer = _timer(keras_step(lambda o=opt: o, shapes))
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


def peak(cfg, contender, size, jit_compile):
    """Peak RSS of a training step of a model dominated by one Dense.

    The first step traces the step and builds the optimizer; the peak is
    then reset (Linux's clear_refs), so that what is measured is a second
    step's, not the building of the model."""
    import numpy as np

    model = dense(size)
    model.compile(optimizer=make(contender), loss="mse", jit_compile=jit_compile)
    x = np.ones((8, size), "float32")
    model.train_on_batch(x, x)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    model.train_on_batch(x, x)
    return {
        "peak_mb": _status_mb("VmHWM"),
        "model_mb": size * (size + 1) * 4 / 2**20,
        "before_mb": before,
    }


def keras_backend():
    import keras

    return keras.backend.backend()


def _device_check(cfg):
    from bench import device

    return device.measure_here(cfg)


def devices():
    """The devices Keras runs on, by the backend's names."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.local_devices()]
    import torch

    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ["cpu"]


def device_peak(cfg, contender, size):
    """Peak memory of the device a training step of section d's model runs
    on, where the backend reports it (a GPU's); else the process's peak
    resident memory, as `peak`."""
    import keras
    import numpy as np

    model = dense(size)
    model.compile(optimizer=make(contender), loss="mse")
    x = np.ones((8, size), "float32")
    model.train_on_batch(x, x)
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            model.train_on_batch(x, x)
            return {"device_peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    if backend == "jax":
        import jax

        stats = jax.local_devices()[0].memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            model.train_on_batch(x, x)  # JAX keeps the peak since the start
            most = jax.local_devices()[0].memory_stats()["peak_bytes_in_use"]
            return {"device_peak_mb": most / 2**20}
    return peak(cfg, contender, size, "auto")


def embedding_step(cfg, jit_compile):
    """Training steps (train_on_batch) of a model dominated by one large
    Embedding, the contenders interleaved step by step. TensorFlow gives the
    embedding an IndexedSlices gradient; JAX and torch a dense one."""
    import keras

    e = cfg["embedding"]
    x, y = embedding_batch(e)
    timers = {}
    for name in WITH_FLOOR:
        keras.utils.set_random_seed(1)
        model = embedding(e)
        model.compile(optimizer=make(name), loss="mse", jit_compile=jit_compile)
        timers[name] = _timer(lambda m=model: m.train_on_batch(x, y))
    return _interleaved(timers, e["steps"])


def bfloat16(cfg):
    """Reversing 12 tokens with float32 weights, and with bfloat16 weights
    (no float32 copy) rounded to nearest or stochastically."""
    import keras
    import numpy as np

    rng = np.random.default_rng(1)
    n, epochs = cfg["bf16_samples"], cfg["bf16_epochs"]
    x = rng.integers(1, BF16_VOCAB, size=(n, BF16_LENGTH)).astype("int32")
    y = np.ascontiguousarray(x[:, ::-1])
    out = {}
    runs = [("float32", False), ("bfloat16", False), ("bfloat16", True)]
    for policy, rounding in runs:
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(7)
        model = reversing_transformer(cfg)
        model.compile(
            optimizer=make(
                OURS,
                learning_rate=cfg["bf16_lr"],
                stochastic_rounding=rounding,
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


def _on_parts(pool, parts, fn):
    """A timer of fn over every part, the parts on the pool's threads."""
    return _timer(lambda: list(pool.map(fn, parts)), warmup=1)


def bandwidth(cfg):
    """Memory bandwidth as NumPy reaches it, in GB/s (1e9 bytes): reading a
    float32 array, by np.add.reduce and by BLAS's dot of the array with
    itself (which reads each element once), and copying it (np.copyto; a
    copy's GB/s count the bytes read and the bytes written). Medians of the
    repeats, the three interleaved; with one thread, and with a thread per
    core, each over a slice of its own (NumPy lets go of the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    b = cfg["bandwidth"]
    src = np.ones(b["mb"] * 2**20 // 4, "float32")
    dst = src.copy()  # its pages mapped before any timing
    out = {"mb": b["mb"], "repeats": b["repeats"], "threads": {}}
    for threads in sorted({1, os.cpu_count() or 1}):
        ends = np.linspace(0, src.size, threads + 1).astype(int)
        parts = [slice(a, z) for a, z in zip(ends, ends[1:])]
        with ThreadPoolExecutor(threads) as pool:
            timers = {
                "sum": _on_parts(pool, parts, lambda s: np.add.reduce(src[s])),
                "dot": _on_parts(pool, parts, lambda s: np.dot(src[s], src[s])),
                "copy": _on_parts(pool, parts, lambda s: np.copyto(dst[s], src[s])),
            }
            ms = _interleaved(timers, b["repeats"])
        moved = {"sum": src.nbytes, "dot": src.nbytes, "copy": 2 * src.nbytes}
        out["threads"][str(threads)] = {
            f"{kind}_gb_s": moved[kind] / ms[kind] / 1e6 for kind in timers
        }
    return out


KINDS = {
    "state": state,
    "step": step,
    "scaling": scaling,
    "peak": peak,
    "embedding": embedding_step,
    "bfloat16": bfloat16,
    "bandwidth": bandwidth,
    "table2": table2.train,
    "realistic": realistic,
    "device_peak": device_peak,
    "device": lambda cfg: _device_check(cfg),
}


def work(spec):
    """One measurement, in this process, which runs the spec's backend."""
    import keras

    args = dict(spec)
    kind, backend, quick = args.pop("kind"), args.pop("backend"), args.pop("quick")
    if keras.backend.backend() != backend:
        raise RuntimeError(
            f"{kind} asks for {backend}, this process runs {keras.backend.backend()}"
        )
    return KINDS[kind](sizes(quick), **args)


def main(argv=None):
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    os.environ["KERAS_BACKEND"] = spec["backend"]  # before Keras is imported
    print(json.dumps(work(spec)))


if __name__ == "__main__":
    main()
