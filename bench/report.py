"""The report of a run: results.md (a table per section), results.json (the
measurements as they were made), bench.png and table2.png (section h,
bench.findings)."""

import json
import math

from bench import findings, realistic
from bench.models import (
    BF16_VOCAB,
    COPIES_THE_TABLE,
    FLOOR,
    KEPT_RMS,
    OURS,
    RUNS,
    target,
)


def write(results, out):
    """results.md, results.json and bench.png in the directory `out`."""
    write_report(results, out)
    plot(results, out)
    findings.plot(results["table2"], out)


def write_report(results, out):
    lines = (
        _header(results["machine"])
        + _state(results["state"])
        + _timing_table(
            "## b. Update-step time (median ms, compiled: TF XLA, JAX jit; "
            "torch eager)",
            results["step"],
            (OURS, FLOOR),
        )
        + _scaling(results["scaling"])
        + _peak(results["peak"])
        + _peak_sizes(results["peak_sizes"])
        + _bfloat16(results["bfloat16"])
        + _embedding(results["embedding_size"], results["embedding"])
        + _bytes(results)
        + findings.report(results["table2"])
        + realistic.report(results.get("realistic", {}))
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))


def _header(machine):
    return [
        "# Benchmark results",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; "
        f"Python {machine['python']}; {machine['date']}.  ",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + ".",
    ]


def _state(state):
    params = state["parameters"]
    lines = [
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
    return lines


def _timing_table(title, by_backend, references):
    """Markdown rows: each contender's median ms, and its ratio to each of
    the references."""
    ratios = "".join(f" x {name} |" for name in references)
    lines = ["", title, "", f"| backend | contender | ms |{ratios}"]
    lines.append("|---|---|---:|" + "---:|" * len(references))
    for backend, times in by_backend.items():
        for name, ms in times.items():
            ratios = "".join(f" {ms / times[r]:.2f} |" for r in references)
            lines.append(f"| {backend} | {name} | {ms:.1f} |{ratios}")
    return lines


def _scaling(scaling):
    lines = [
        "",
        "## c. Scaling on TensorFlow (one square variable)",
        "",
        "Linear growth keeps the time per parameter constant.",
        "",
        "| parameters | contender | ms | ns per parameter | state bytes |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, row in scaling.items():
        for name, cell in row.items():
            lines.append(
                f"| {int(n):,} | {name} | {cell['ms']:.1f} | "
                f"{1e6 * cell['ms'] / int(n):.2f} | {cell['state_bytes']:,} |"
            )
    return lines


def _peak(peak):
    lines = [
        "",
        "## d. Peak memory of a training step (RSS, one Dense layer)",
        "",
        "Each optimizer in a process of its own; SGD keeps no state and updates"
        " in place. The peak of a second step: RSS before it (weights, state,"
        " the runtime, what the first step left) plus what the step adds.",
        "",
        "| backend | optimizer | peak RSS MiB | x SGD | before MiB | step adds MiB"
        " | weights MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, cells in peak.items():
        floor = cells[FLOOR]["peak_mb"]
        for name, cell in cells.items():
            lines.append(
                f"| {label} | {name} | {cell['peak_mb']:.0f} | "
                f"{cell['peak_mb'] / floor:.2f} | {cell['before_mb']:.0f} | "
                f"{cell['peak_mb'] - cell['before_mb']:.0f} | "
                f"{cell['model_mb']:.0f} |"
            )
    return lines


def _peak_sizes(peak_sizes):
    lines = [
        "",
        f"{RUNS[0][0]}: ours and SGD with Dense layers of several sizes, to"
        " tell what grows with the model from what does not.",
        "",
        "| weights MiB | ours peak MiB | SGD peak MiB | ours - SGD MiB | x SGD |"
        " ours' step adds MiB | SGD's step adds MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cells in peak_sizes.values():
        ours, sgd = cells[OURS], cells[FLOOR]
        lines.append(
            f"| {ours['model_mb']:.0f} | {ours['peak_mb']:.0f} | "
            f"{sgd['peak_mb']:.0f} | {ours['peak_mb'] - sgd['peak_mb']:.0f} | "
            f"{ours['peak_mb'] / sgd['peak_mb']:.2f} | "
            f"{ours['peak_mb'] - ours['before_mb']:.0f} | "
            f"{sgd['peak_mb'] - sgd['before_mb']:.0f} |"
        )
    return lines


def _bfloat16(runs):
    reference = runs["float32"]["loss"][-1]
    lines = [
        "",
        "## e. bfloat16 weights on a small Transformer reversing 12 tokens",
        "",
        f"{_epochs(runs)} epochs: early in training (chance is a loss of "
        f"ln {BF16_VOCAB} = {math.log(BF16_VOCAB):.2f}), not a converged "
        "comparison.",
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
    return lines


def _embedding(e, by_backend):
    return _timing_table(
        f"## f. Training step of a model dominated by Embedding({e['vocab']:,}, "
        f"{e['width']}) (median ms, train_on_batch, {e['batch']} x {e['tokens']}"
        " tokens)",
        by_backend,
        ("keras Adam", FLOOR),
    )


def _bytes(results):
    """Section g: the bytes of each step (bench.models.step_bytes), their
    time at the measured bandwidth, the measured time, and a sentence per
    step on what the bytes say of its target."""
    bw = results["bandwidth"]
    by_threads = bw["threads"].values()

    def fastest(*kinds):  # bytes per ms
        return 1e6 * max(t[f"{kind}_gb_s"] for t in by_threads for kind in kinds)

    def listed(kind):
        return ", ".join(f"{t[f'{kind}_gb_s']:.1f}" for t in by_threads)

    rates = {"read": fastest("sum", "dot"), "copy": fastest("copy")}

    lines = [
        "",
        "## g. Bytes each contender must move per step, and what they cost at"
        " this machine's memory bandwidth",
        "",
        f"Memory bandwidth, NumPy on {bw['mb']} MiB of float32 with "
        f"{' and '.join(bw['threads'])} threads, median of {bw['repeats']}: "
        f"read, np.add.reduce {listed('sum')} GB/s and np.dot(a, a) "
        f"{listed('dot')} GB/s; copy (np.copyto, the bytes read and written) "
        f"{listed('copy')} GB/s (here MB and GB are 10^6 and 10^9 bytes). The"
        " times below are at the fastest read and"
        " the fastest copy. The bytes are a lower bound of what the"
        " optimizer's step reads and writes (bench.models.step_bytes: an"
        " array's bytes for each pass over it that the algorithm's"
        " dependencies force). Measured: b's update step, and f's whole"
        " training step, whose forward and backward passes are the same for"
        " every contender, except on TensorFlow without XLA: there a table"
        " written sparsely is in copy-on-read mode, and the next forward pass"
        " copies it whole, for every contender but ours, which turns the mode"
        " back after its write. Each sentence below adds to SGD's measured"
        " step the time of the bytes ours moves beyond SGD's, at the faster"
        " of the two: what ours would take as SGD plus its extra bytes; and"
        " where the forward pass copies the table, what that copy takes.",
        "",
        "| step | contender | MB read | MB written | ms at read GB/s |"
        " ms at copy GB/s | measured ms | x SGD, bytes | x SGD, measured |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = [""]
    for section, key, label, backend in _byte_steps(results):
        cells, times = results["bytes"][section][label], results[key][label]
        moved = {name: sum(cell.values()) for name, cell in cells.items()}
        for name, cell in cells.items():
            ms = times.get(name)
            ratio = None if ms is None else ms / times[FLOOR]
            lines.append(
                f"| {section}, {label} | {name} | {cell['read'] / 1e6:.1f} | "
                f"{cell['written'] / 1e6:.1f} | {moved[name] / rates['read']:.2f}"
                f" | {moved[name] / rates['copy']:.2f} | {_maybe(ms)} | "
                f"{moved[name] / moved[FLOOR]:.2f} | "
                f"{_maybe(ratio, '.2f')} |"
            )
        fastest = max(rates.values())
        verdict = _verdict(section, label, backend, moved, times, fastest)
        if section == "f" and label in COPIES_THE_TABLE:
            e = results["embedding_size"]
            table = 4 * e["vocab"] * e["width"]
            verdict = _with_the_copy(verdict, times, 2 * table, rates["copy"])
        verdicts.append(verdict)
    return lines + verdicts


def _with_the_copy(verdict, times, copied, rate):
    """A verdict of a run whose forward pass copies the table (`copied`
    bytes read and written, at `rate` bytes per ms) for SGD but not ours."""
    verdict = verdict.replace(_FASTER_THAN_NUMPY, "")
    ms = copied / rate
    sgd = times[FLOOR] - ms
    verdict += (
        f" Here SGD's forward pass also copies the table, and ours' does not:"
        f" the copy reads and writes {copied / 1e6:.0f} MB, {ms:.2f} ms at the"
        f" copy rate, and SGD's step less the copy takes {sgd:.1f} ms"
    )
    if sgd <= 0:
        return verdict + "."
    return verdict + f", ours {times[OURS] / sgd:.2f}x that."


def _against(ratio, goal):
    return "within the target" if ratio <= goal else "over it"


def _maybe(value, spec=".1f"):
    return "–" if value is None else format(value, spec)


def _byte_steps(results):
    """(section, results key, label, backend) of each step of section g."""
    steps = [("f", "embedding", label, backend) for label, backend, _ in RUNS]
    steps += [("b", "step", backend, backend) for backend in results["step"]]
    return [s for s in steps if s[2] in results["bytes"][s[0]]]


def _verdict(section, label, backend, moved, times, fastest):
    """A sentence on one step, from the run's numbers: ours against SGD,
    measured, and as the bytes alone put it at the fastest bandwidth
    measured (bytes per ms): SGD's measured step plus the time of the bytes
    ours moves beyond SGD's, as a ratio to SGD's step."""
    goal, sgd = target(section, backend), times[FLOOR]
    ratio = times[OURS] / sgd
    extra = (moved[OURS] - moved[FLOOR]) / fastest
    bound = (sgd + extra) / sgd
    kept = (sgd + (moved[KEPT_RMS] - moved[FLOOR]) / fastest) / sgd
    more = extra >= 0
    sentence = (
        f"- {section}, {label}: ours {ratio:.2f}x SGD, target {goal}x: "
        f"{'met' if ratio <= goal else 'not met'}. Its optimizer moves "
        f"{moved[OURS] / moved[FLOOR]:.2f}x SGD's bytes; the "
        f"{abs(moved[OURS] - moved[FLOOR]) / 1e6:.0f} MB "
        f"{'more take' if more else 'fewer save'} {abs(extra):.2f} ms, and "
        f"SGD's {sgd:.1f} ms {'plus' if more else 'less'} those make "
        f"{bound:.2f}x SGD, {_against(bound, goal)} (with RMS(x) kept: "
        f"{kept:.2f}x)."
    )
    if ratio < bound:
        sentence += _FASTER_THAN_NUMPY
    return sentence


_FASTER_THAN_NUMPY = (
    " Ours measures under that: this step moves bytes faster than NumPy did."
)


def _epochs(runs):
    return len(next(iter(runs.values()))["loss"])


def _timing_bars(ax, by_backend, xlabel, title, color):
    names, values = [], []
    for backend, times in by_backend.items():
        for name, ms in times.items():
            names.append(f"{backend}: {name}")
            values.append(ms)
    ax.barh(names[::-1], values[::-1], color=color)
    ax.set(xlabel=xlabel, title=title)
    ax.tick_params(axis="y", labelsize=7)


def plot(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(25, 4.2))
    _timing_bars(
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
    _timing_bars(
        axes[4],
        results["embedding"],
        "ms per training step (median)",
        "f. Large embedding",
        "#55a868",
    )
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)
