"""The report of a run: results.md (a table per section), results.json (the
measurements as they were made) and bench.png."""

import json
import math

from bench.models import BF16_VOCAB, FLOOR, OURS, RUNS


def write(results, out):
    """results.md, results.json and bench.png in the directory `out`."""
    write_report(results, out)
    plot(results, out)


def write_report(results, out):
    lines = (
        _header(results["machine"])
        + _state(results["state"])
        + _timing_table(
            "## b. Update-step time (median ms, compiled: TF XLA, JAX jit; "
            "torch eager)",
            results["step"],
            OURS,
        )
        + _scaling(results["scaling"])
        + _peak(results["peak"])
        + _peak_sizes(results["peak_sizes"])
        + _bfloat16(results["bfloat16"])
        + _embedding(results["embedding_size"], results["embedding"])
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


def _timing_table(title, by_backend, reference):
    """Markdown rows: each contender's median ms, and its ratio to one."""
    lines = ["", title, "", f"| backend | contender | ms | x {reference} |"]
    lines.append("|---|---|---:|---:|")
    for backend, times in by_backend.items():
        for name, ms in times.items():
            ratio = ms / times[reference]
            lines.append(f"| {backend} | {name} | {ms:.1f} | {ratio:.2f} |")
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
        "| backend | optimizer | peak RSS MB | x SGD | before MB | step adds MB"
        " | weights MB |",
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
        "| weights MB | ours peak MB | SGD peak MB | ours - SGD MB | x SGD |"
        " ours' step adds MB | SGD's step adds MB |",
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
        "keras Adam",
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
