"""The report of a run: results.md (a table per section), results.json (the
measurements as they were made) and bench.png."""

import json
import math
import statistics

from bench import realistic
from bench.models import (
    BF16_VOCAB,
    COPIES_THE_TABLE,
    FLOOR,
    KEPT_RMS,
    OURS,
    RUNS,
    SORT_LENGTH,
    SORT_VOCAB,
    TABLE2,
    target,
)


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
            (OURS, FLOOR),
        )
        + _scaling(results["scaling"])
        + _peak(results["peak"])
        + _peak_sizes(results["peak_sizes"])
        + _bfloat16(results["bfloat16"])
        + _embedding(results["embedding_size"], results["embedding"])
        + _bytes(results)
        + _table2(results["table2"])
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


def _table2(t2):
    """Section h: the paper's Table 2 beside the miniature, and a sentence on
    each of the paper's findings, from this run's numbers."""
    rows = t2["rows"]
    lines = [
        "",
        "## h. The paper's Table 2, in miniature",
        "",
        f"Shazeer & Stern (2018), Table 2, on a small Transformer sorting "
        f"{SORT_LENGTH} tokens of a vocabulary of {SORT_VOCAB - 1} (chance: a loss "
        f"of ln {SORT_VOCAB} = {math.log(SORT_VOCAB):.2f}): {t2['steps']} steps "
        f"of {t2['batch']}, {t2['seeds']} seed(s) per row, on JAX. The paper's "
        "s_t (min(1e-6 t, 1/sqrt(t)) with warmup, min(1e-2, 1/sqrt(t)) without) "
        "is compressed from its 100,000 steps to these. Loss: the final "
        "cross-entropy, mean (and spread) over the seeds, on 1,024 training "
        "examples and on 1,024 new ones; a run diverged when a weight is not "
        "finite or its training loss ended above where it started. Rows D and E "
        "(row or column means only), F, I and M (other decays and d = 2) are "
        "left out.",
        "",
        "| row | factored | β1 | β2 | d | step | paper BLEU, warmup / none "
        "| warmup: train | valid | diverged | no warmup: train | valid | diverged |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for letter, by_warmup in rows.items():
        row = TABLE2[letter]
        cells = [
            f"({letter})",
            "yes" if row.factored else "",
            "" if row.beta_1 is None else f"{row.beta_1}",
            _decay(row.beta_2),
            "" if row.clip is None else f"{row.clip}",
            "SGD, lr = 100 s_t" if letter == "Q" else row.step,
            " / ".join("diverged" if b is None else f"{b}" for b in row.bleu),
        ]
        for when in ("warmup", "none"):
            runs = by_warmup[when]
            cells += [
                _spread([r["train"] for r in runs]),
                _spread([r["valid"] for r in runs]),
                f"{sum(r['diverged'] for r in runs)}/{len(runs)}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""] + _findings(rows)


def _decay(beta_2):
    if beta_2 is None:
        return ""
    return f"{beta_2}" if beta_2 > 0 else f"1 - t^{beta_2}"


def _mean_and_spread(values):
    """Mean and standard deviation of the finite values (inf, 0 if none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.inf, 0.0
    spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return statistics.fmean(finite), spread


def _spread(values):
    mean, spread = _mean_and_spread(values)
    if not math.isfinite(mean):
        return "not finite"
    return f"{mean:.3f}" if len(values) < 2 else f"{mean:.3f} ± {spread:.3f}"


# The paper's findings from Table 2 (its Sections 3.2 to 9.1): each as a
# claim and how this run tests it, with the rows it needs. "same": the
# validation losses' means differ by less than twice the larger spread and
# 1% of the larger; "worse": higher by more than that, or more runs diverged;
# "no worse": not worse.
FINDINGS = [
    (
        "Factoring the second moment changes little",
        [("same", "A", "C", "warmup"), ("same", "A", "C", "none")]
        + [("same", "H", "J", "warmup"), ("same", "H", "J", "none")],
    ),
    (
        "Without warmup, β1 = 0 with β2 = 0.999 and no clipping (A) is "
        "unstable, and momentum (B), update clipping (H) or the decay "
        "1 - t^-0.5 (K) relieve it",
        [("worse", "A", b, "none") for b in "BHK"],
    ),
    (
        "The fast decay β2 = 0.9 (G) converges worse, with warmup",
        [("worse", "G", "A", "warmup")],
    ),
    (
        "The decay 1 - t^-0.8 alone (L) is unstable without warmup; with "
        "clipping (N) it is as stable as β2 = 0.999 with clipping (H)",
        [("worse", "L", "N", "none"), ("same", "N", "H", "none")],
    ),
    (
        "With relative step sizes (O, P), warmup is not needed",
        [("no worse", "O", "O", "none/warmup"), ("no worse", "P", "P", "none/warmup")],
    ),
    (
        "SGD (Q) trains worse than the adaptive methods",
        [("worse", "Q", "A", "warmup"), ("worse", "Q", "O", "none")],
    ),
    (
        "Momentum (β1 = 0.9) makes little difference with warmup",
        [("same", "B", "A", "warmup"), ("same", "P", "O", "warmup")],
    ),
]


WHEN = {"none": "without warmup", "warmup": "with warmup", "none/warmup": ""}


def _findings(rows):
    """A sentence per finding whose rows ran: reproduced or not, with the
    numbers; then the best rows of this run."""

    def loss(letter, when):
        runs = rows[letter][when]
        mean, spread = _mean_and_spread([r["valid"] for r in runs])
        return mean, spread, sum(r["diverged"] for r in runs)

    def compare(kind, a, b, when):
        first, second = when.split("/") if "/" in when else (when, when)
        (ma, sa, da), (mb, sb, db) = loss(a, first), loss(b, second)
        margin = max(2 * max(sa, sb), 0.01 * max(ma, mb))
        worse = da > db or (da == db and ma - mb > margin)
        if kind == "same":
            holds = abs(ma - mb) <= margin and da == db
        else:
            holds = worse if kind == "worse" else not worse
        if a == b:
            label = f"({a}) {ma:.3f} {WHEN[first]}, {mb:.3f} {WHEN[second]}"
        else:
            label = f"({a}) {ma:.3f} vs ({b}) {mb:.3f} {WHEN[when]}"
        if da or db:
            label += f" (diverged {da} and {db})"
        return holds, label

    lines = ["Findings of the paper, and whether this run reproduces them:", ""]
    for claim, checks in FINDINGS:
        needed = {c[1] for c in checks} | {c[2] for c in checks}
        if not needed <= set(rows):
            continue
        results = [compare(*check) for check in checks]
        verdict = "reproduced" if all(h for h, _ in results) else "not reproduced"
        details = "; ".join(label for _, label in results)
        lines.append(f"- {claim}: **{verdict}**. Validation loss: {details}.")
    for when in ("none", "warmup"):
        words = WHEN[when]
        stable = [
            letter for letter in rows if letter != "Q" and loss(letter, when)[2] == 0
        ]
        factored = [letter for letter in stable if TABLE2[letter].factored]
        for kind, among in (("", stable), (" factored", factored)):
            if among:
                best = min(among, key=lambda letter: loss(letter, when)[0])
                lines.append(
                    f"- Best{kind} row {words}, among those with no run "
                    f"diverged: ({best}), validation loss {loss(best, when)[0]:.3f}."
                )
    return lines


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
