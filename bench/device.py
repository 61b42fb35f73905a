"""The device check, `python -m bench --device-check`: sections b, d, f and
i on jax and torch, on the device Keras picks (a GPU where there is one),
each step timed until the device is done; results-device.md and
results-device.json. It needs only keras and the backends, and runs on a
CPU too (`--quick` in `make test`)."""

import importlib.util
import json

from bench import realistic
from bench.models import FLOOR, OURS, PEAK, WITH_FLOOR

BACKENDS = tuple(b for b in ("jax", "torch") if importlib.util.find_spec(b))


def check(cfg, run, out, machine):
    """Every measurement, each made by `run` (given a worker's spec); the
    report written into `out`; returns the markdown's path."""

    def measure(kind, backend, **args):
        return run(dict(kind=kind, backend=backend, quick=cfg["quick"], **args))

    results = {"machine": machine, "device": {}}
    for backend in BACKENDS:
        print(f"device check on {backend} ...", flush=True)
        # Sections b, f and i in one process; d's peaks in one each.
        found = results["device"][backend] = measure("device", backend)
        found["d"] = {
            name: measure("device_peak", backend, contender=name, size=cfg["peak"])
            for name in (PEAK if not cfg["quick"] else (OURS, FLOOR))
        }
    (out / "results-device.json").write_text(json.dumps(results, indent=2))
    path = out / "results-device.md"
    path.write_text("\n".join(report(results)) + "\n")
    return path


def report(results):
    m = results["machine"]
    lines = [
        "# Device check",
        "",
        f"Host: {m['cpu']}, {m['cores']} cores; {m['date']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + ".",
    ]
    for backend, found in results["device"].items():
        lines += ["", f"## {backend}: {', '.join(found['devices'])}", ""]
        lines += ["| section | " + " | ".join(WITH_FLOOR) + " | ours / SGD |"]
        lines += ["|---|" + "---:|" * (len(WITH_FLOOR) + 1)]
        for section, title in (
            ("b", "b. update step, ms"),
            ("f", "f. embedding step, ms"),
        ):
            times = found[section]
            cells = [f"{times[n]:.2f}" for n in WITH_FLOOR]
            ratio = times[OURS] / times[FLOOR]
            lines.append(f"| {title} | " + " | ".join(cells) + f" | {ratio:.2f} |")
        peaks = {
            n: d.get("device_peak_mb", d.get("peak_mb")) for n, d in found["d"].items()
        }
        unit = "device" if "device_peak_mb" in found["d"][OURS] else "resident"
        cells = [f"{peaks[n]:.0f}" if n in peaks else "-" for n in WITH_FLOOR]
        lines.append(
            f"| d. peak {unit} memory, MiB | "
            + " | ".join(cells)
            + f" | {peaks[OURS] / peaks[FLOOR]:.2f} |"
        )
        lines += realistic.report(found.get("i", {}))
    return lines


def measure_here(cfg):
    """The device check's sections b, f and i, in this process (its
    backend's): the worker of kind "device"."""
    from bench import workers

    backend = workers.keras_backend()
    found = {"devices": workers.devices(), "b": workers.step(cfg)}
    found["f"] = workers.embedding_step(cfg, "auto")
    found["i"] = {
        label: realistic.measure(cfg, compiler, jit_compile)
        for label, name, compiler, jit_compile in realistic.MODES
        if name == backend
    }
    return found
