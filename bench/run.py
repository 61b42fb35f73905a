"""The run: every section's measurements, each in a subprocess of its own,
then the report."""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import bench
from bench import device, realistic, report
from bench.models import (
    BACKENDS,
    BYTES,
    FLOOR,
    OURS,
    PEAK,
    RUNS,
    embedding_gradients,
    sizes,
    step_bytes,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def in_subprocess(spec):
    """Run one measurement in a fresh process on the backend it names."""
    env = dict(os.environ, KERAS_BACKEND=spec["backend"], TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "bench.workers", json.dumps(spec)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{json.dumps(spec)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def collect(cfg, run, backends=BACKENDS):
    """Every section's measurements, each made by `run` (given a worker's
    spec) on its backend."""

    def measure(kind, backend, **args):
        return run(dict(kind=kind, backend=backend, quick=cfg["quick"], **args))

    results = {"machine": machine()}
    results["state"] = {}
    for backend in backends:
        print(f"a. state on {backend} ...", flush=True)
        results["state"].update(measure("state", backend))
    results["step"] = {}
    for backend in backends:
        print(f"b. step on {backend} ...", flush=True)
        results["step"][backend] = measure("step", backend)
    print("c. scaling ...", flush=True)
    results["scaling"] = measure("scaling", backends[0])
    results["peak"] = {}
    for label, backend, jit_compile in RUNS:
        if backend in backends:
            results["peak"][label] = {}
            for name in PEAK:
                print(f"d. peak memory, {label}: {name} ...", flush=True)
                results["peak"][label][name] = measure(
                    "peak",
                    backend,
                    contender=name,
                    size=cfg["peak"],
                    jit_compile=jit_compile,
                )
    # TensorFlow's default at several sizes: what grows with the model, and
    # what does not.
    label, backend, jit_compile = RUNS[0]
    results["peak_sizes"] = {}
    for n in cfg["peak_sizes"] if backend in backends else ():
        print(f"d. peak memory, {label}, {n} x {n} ...", flush=True)
        results["peak_sizes"][str(n)] = {
            name: measure(
                "peak", backend, contender=name, size=n, jit_compile=jit_compile
            )
            for name in (OURS, FLOOR)
        }
    print("e. bfloat16 weights ...", flush=True)
    results["bfloat16"] = measure("bfloat16", backends[0])
    results["embedding_size"] = cfg["embedding"]
    results["embedding"] = {}
    for label, backend, jit_compile in RUNS:
        if backend in backends:
            print(f"f. embedding training step: {label} ...", flush=True)
            results["embedding"][label] = measure(
                "embedding", backend, jit_compile=jit_compile
            )
    print("g. memory bandwidth ...", flush=True)
    results["bandwidth"] = measure("bandwidth", backends[0])
    results["bytes"] = traffic(cfg, backends)
    results["realistic"] = {}
    for label, backend, compiler, jit_compile in realistic.MODES:
        if backend in backends:
            print(f"i. the models people train: {label} ...", flush=True)
            results["realistic"][label] = measure(
                "realistic", backend, compiler=compiler, jit_compile=jit_compile
            )
    print("h. the paper's Table 2 on real text ...", flush=True)
    results["table2"] = measure("table2", "jax")  # a loop compiled by jax
    return results


def traffic(cfg, backends):
    """Section g's bytes of each step, read and written (step_bytes): of the
    update step (b) on each backend, and of the embedding step (f) in each
    run, whose gradient is row-sparse on TensorFlow alone."""

    def of(variables):
        return {
            name: dict(zip(("read", "written"), step_bytes(name, variables)))
            for name in BYTES
        }

    shapes = [(tuple(s), None) for s in cfg["step_shapes"]]
    return {
        "b": {backend: of(shapes) for backend in backends},
        "f": {
            label: of(embedding_gradients(cfg["embedding"], backend))
            for label, backend, _ in RUNS
            if backend in backends
        },
    }


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        p: _version(p)
        for p in ("keras", "tensorflow-cpu", "jax", "optax", "torch", "numpy")
    }
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions,
    }


def _version(package):
    try:
        return version(package)
    except PackageNotFoundError:  # the device check runs without TensorFlow
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=bench.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: checks that it works"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE, help="where the report goes (bench/)"
    )
    parser.add_argument(
        "--device-check",
        action="store_true",
        help="sections b, d, f and i on jax and torch, on the device Keras picks "
        "(a GPU where there is one): results-device.md and results-device.json",
    )
    parser.add_argument(
        "--table2",
        action="store_true",
        help="section h alone, put in place of the one in OUT/results.json",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device_check:
        path = device.check(sizes(args.quick), in_subprocess, args.out, machine())
    elif args.table2:
        results = json.loads((args.out / "results.json").read_text())
        spec = dict(kind="table2", backend="jax", quick=args.quick)
        results["table2"] = dict(in_subprocess(spec), machine=machine())
        report.write(results, args.out)
        path = args.out / "results.md"
    else:
        report.write(collect(sizes(args.quick), in_subprocess), args.out)
        path = args.out / "results.md"
    print(path.read_text())
