"""Section h's report: a table per step size, the paper's findings tested on
this run, what clipping and the increasing decay changed, the rows this run
recommends, and the plot of the curves (bench.table2 makes the runs)."""

import math
import statistics

from bench.models import ADAM, TABLE2
from bench.stability import unstable

# The paper's findings from Table 2 (its Sections 3.2 to 9.1): each as a
# claim and how this run tests it, with the rows it needs, at each step
# size. Counts of unstable runs (collapsed, diverged or stalled) decide when
# they differ by a majority of the seeds (2 of 3); otherwise the validation
# losses do, when they differ by more than twice the larger spread and 1%
# of the larger. "worse": the first row is worse by that rule; "less
# stable": it had more unstable runs by that majority, whatever the loss;
# "same": neither row is worse; "no worse": the first is not worse.
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
        [("less stable", "A", b, "none") for b in "BHK"],
    ),
    (
        "The fast decay β2 = 0.9 (G) converges worse, with warmup",
        [("worse", "G", "A", "warmup")],
    ),
    (
        "The decay 1 - t^-0.8 alone (L) is unstable without warmup; with "
        "clipping (N) it is as stable as β2 = 0.999 with clipping (H)",
        [("less stable", "L", "N", "none"), ("same", "N", "H", "none")],
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
# What update clipping (d = 1) and the increasing decay 1 - t^c change, as
# pairs of rows that differ in that alone.
CHANGES = [
    ("Update clipping", [("A", "H"), ("C", "J"), ("L", "N")]),
    ("The increasing decay", [("A", "K"), ("A", "L"), ("H", "N")]),
]
WHEN = {"none": "without warmup", "warmup": "with warmup"}


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


def _decay(beta_2):
    if beta_2 is None:
        return ""
    return f"{beta_2}" if beta_2 > 0 else f"1 - t^{beta_2}"


def _columns(letter):
    if letter == ADAM:
        return ["Adam (keras)", "", "0.9", "0.999", "", "0.1 s_t", ""]
    row = TABLE2[letter]
    return [
        f"({letter})",
        "yes" if row.factored else "",
        "" if row.beta_1 is None else f"{row.beta_1}",
        _decay(row.beta_2),
        "" if row.clip is None else f"{row.clip}",
        "SGD, lr = 100 s_t" if letter == "Q" else row.step,
        " / ".join("diverged" if b is None else f"{b}" for b in row.bleu),
    ]


def _cells(runs):
    rise = max(r["rise"] for r in runs)
    return [
        _spread([r["train"] for r in runs]),
        _spread([r["valid"] for r in runs]),
        "inf" if math.isinf(rise) else f"{rise:.2f}",
    ] + [f"{sum(r[k] for r in runs)}/{len(runs)}" for k in OUTCOMES]


OUTCOMES = ("collapsed", "diverged", "stalled")
COLUMNS = "| train | valid | rise | collapsed | diverged | stalled |"


def report(h):
    """Section h's lines, from the run's results (bench.table2.train)."""
    c = h["corpus"]
    lines = [
        "",
        "## h. The paper's Table 2 on real text",
        "",
        f"Shazeer & Stern (2018), Table 2, on a byte-level language model: the "
        f"reference Transformer, causal ({_model(h['model'])}), reading "
        f"{h['length']} bytes to predict each next one, trained on the "
        f"docstrings of {c['modules']} modules of Python {c['python']}'s standard "
        f"library ({c['train_bytes']:,} bytes; every tenth module, "
        f"{c['valid_bytes']:,} bytes, held out for validation). The bytes' "
        f"unigram entropy is {c['unigram_entropy']:.2f} nats. {h['steps']} steps "
        f"of {h['batch']} windows, {h['seeds']} seeds per row, on JAX in "
        f"{h['processes']} processes; the section took "
        f"{h['seconds'] / 60:.1f} minutes. The paper's s_t "
        "(min(1e-6 t, 1/sqrt(t)) with warmup, min(1e-2, 1/sqrt(t)) without) is "
        "compressed from its 100,000 steps to these, and each row's rate (0.1 "
        "s_t, s_t relative to the weights' RMS, SGD's 100 s_t) is multiplied "
        "by a step size k. keras Adam without warmup ran first at each k of a "
        "grid, to find where it becomes unstable; the rows then ran at k = "
        f"{', '.join(h['runs'])} (bench.table2.sweep). Only the rates are "
        "compressed: the decays count the run's own steps, so over "
        f"{h['steps']} steps, fewer than the 1,000 over which β2 = 0.999 "
        "averages, its bias correction keeps it close to 1 - 1/t, and rows "
        "A, K and L differ less here than in the paper.",
        "",
        f"Measures (bench.stability): the training loss is smoothed by a "
        f"moving mean over {h['window']} steps; *train* is its last value, "
        f"*valid* the loss on {h['valid']} held-out windows at the end, both a "
        "mean ± spread over the seeds; *rise* is the largest rise of the "
        "smoothed loss above its running minimum, the largest over the seeds. "
        f"A run *collapsed* when it rose by {h['collapse']} nats or more, and "
        "*diverged* when a weight ended not finite or its final loss ended "
        "above its first; these two were fixed before any run. Trial runs "
        "then showed a failure they miss: at large step sizes the loss falls "
        "to the unigram entropy within the first window and stays there, or "
        f"leaves it late. So a run also *stalled* when its final loss ended "
        f"less than {h['stall']} nats below the unigram entropy: it learned "
        "little beyond the bytes' frequencies within the run. A run is "
        "*unstable* when it collapsed, diverged or stalled. A blow-up within "
        "the first window shows as divergence, not as a rise.",
        "",
        "Cut for time: every row ran without warmup at three step sizes, and "
        "with warmup at the middle one alone; rows F, I and M (other decays "
        "and d = 2) were left out. Rows D and E (row or column means only) "
        "were left out too: no option of the optimizer makes them.",
    ]
    if "machine" in h:  # run alone, after the rest of the report
        m = h["machine"]
        lines += [
            "",
            f"This section ran on its own, on {m['date']} ({m['cpu']}, "
            f"{m['cores']} cores; jax {m['versions']['jax']}, keras "
            f"{m['versions']['keras']}), in place of the full run's.",
        ]
    lines += _search(h) + ["", "### Every row, at three step sizes", ""]
    for k, rows in h["runs"].items():
        for when in ("none", "warmup"):
            if all(when in by_warmup for by_warmup in rows.values()):
                lines += _table(k, when, rows)
    return lines + _findings(h["runs"]) + _changes(h["runs"]) + _best(h["runs"])


def _model(m):
    return (
        f"{m['blocks']} blocks, d_model = {m['d_model']}, {m['heads']} heads, "
        f"feed-forward {m['ff']}"
    )


def _search(h):
    lines = [
        "",
        "### Where Adam without warmup becomes unstable",
        "",
        "keras Adam (β1 = 0.9, β2 = 0.999) without warmup, at k × 0.1 s_t:",
        "",
        "| k " + COLUMNS,
        "|---:" * 7 + "|",
    ]
    lines += [
        f"| {k} | " + " | ".join(_cells(r)) + " |" for k, r in h["search"].items()
    ]
    ks = list(h["search"])
    if h["unstable"] is None:
        found = f"It was stable at every step size tried, up to k = {ks[-1]}."
    else:
        found = f"It first became unstable at k = {h['unstable']}."
    return lines + ["", found]


def _table(k, when, rows):
    lines = [
        f"Step size k = {k}, {WHEN[when]}:",
        "",
        "| row | factored | β1 | β2 | d | step | paper BLEU, warmup / none " + COLUMNS,
        "|---|---|---|---|---|---|---:|" + "---:|" * 6,
    ]
    for letter, by_warmup in rows.items():
        cells = _columns(letter) + _cells(by_warmup[when])
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _of(runs, letter, when):
    """Mean and spread of the validation loss, and the unstable runs."""
    mean, spread = _mean_and_spread([r["valid"] for r in runs[letter][when]])
    return mean, spread, sum(unstable(r) for r in runs[letter][when])


def _compare(runs, kind, a, b, when):
    first, second = when.split("/") if "/" in when else (when, when)
    (ma, sa, ua), (mb, sb, ub) = _of(runs, a, first), _of(runs, b, second)
    seeds = len(runs[a][first])
    majority = seeds // 2 + 1
    finite = [m for m in (ma, mb) if math.isfinite(m)]
    margin = max(2 * max(sa, sb), 0.01 * max(finite, default=0.0))
    if abs(ua - ub) >= majority:
        worse, better = ua > ub, ub > ua
    else:
        worse, better = ma - mb > margin, mb - ma > margin
    holds = {
        "same": not (worse or better),
        "worse": worse,
        "no worse": not worse,
        "less stable": ua - ub >= majority,
    }
    if a == b:
        label = f"({a}) {ma:.3f} {WHEN[first]}, {mb:.3f} {WHEN[second]}"
    else:
        label = f"({a}) {ma:.3f} vs ({b}) {mb:.3f} {WHEN[when]}"
    if ua or ub:
        label += f" (unstable {ua} and {ub})"
    return holds[kind], label


def _ran(runs, checks):
    """Whether the runs that the checks compare were made."""
    return all(
        letter in runs and when in runs[letter]
        for _, a, b, whens in checks
        for letter, when in zip((a, b), whens.split("/") * 2)
    )


def _findings(by_k):
    """A sentence per finding whose rows ran: reproduced at every step size,
    at some (partly) or at none, with the validation losses."""
    lines = ["Findings of the paper, and whether this run reproduces them:", ""]
    for claim, checks in FINDINGS:
        at = {k: runs for k, runs in by_k.items() if _ran(runs, checks)}
        if not at:
            continue
        held, details = [], []
        for k, runs in at.items():
            results = [_compare(runs, *check) for check in checks]
            held.append(all(h for h, _ in results))
            details.append(f"k = {k}: " + "; ".join(label for _, label in results))
        verdict = (
            "reproduced"
            if all(held)
            else "partly reproduced"
            if any(held)
            else "not reproduced"
        )
        where = [k for k, h in zip(at, held) if h]
        said = f" (at k = {', '.join(where)})" if where and not all(held) else ""
        lines.append(
            f"- {claim}: **{verdict}**{said}. Validation loss: "
            + ". ".join(details)
            + "."
        )
    return lines


def _changes(by_k):
    """What clipping and the increasing decay changed in the counts of
    collapsed and of unstable runs without warmup, at each step size."""
    lines, collapses = [], 0
    for what, pairs in CHANGES:
        for a, b in pairs:
            at = [(k, r) for k, r in by_k.items() if _ran(r, [("", a, b, "none")])]
            if not at:
                continue
            said = []
            for k, runs in at:
                ua, ub = _of(runs, a, "none")[2], _of(runs, b, "none")[2]
                ca, cb = (sum(r["collapsed"] for r in runs[x]["none"]) for x in (a, b))
                collapses += ca + cb
                n = len(runs[a]["none"])
                change = (
                    "no change"
                    if ua == ub
                    else f"{abs(ua - ub)} {'fewer' if ub < ua else 'more'}"
                )
                said.append(
                    f"at k = {k}, {ua}/{n} → {ub}/{n} ({change}; collapsed "
                    f"{ca}/{n} → {cb}/{n})"
                )
            lines.append(f"- {what}, ({a}) → ({b}): " + "; ".join(said) + ".")
    if not lines:
        return []
    none = (
        " None of them collapsed: the changes are in runs that diverged or stalled."
        if collapses == 0
        else ""
    )
    return [
        "",
        "Unstable runs (collapsed, diverged or stalled) without warmup, in "
        "pairs of rows that differ in one setting, and the runs that "
        f"collapsed.{none}",
        "",
    ] + lines


def _best(by_k):
    """The rows this run recommends: at each step size, the lowest mean
    validation loss among rows with no unstable run, all and factored."""
    lines = [""]
    always = [
        letter
        for letter in next(iter(by_k.values()))
        if all(
            all(map(unstable, by_warmup))
            for runs in by_k.values()
            for by_warmup in runs.get(letter, {}).values()
        )
    ]
    if always:
        rows = ", ".join(f"({x})" if x != ADAM else x for x in always)
        lines.append(
            f"- Unstable in every run, at every step size run: {rows}; no k of "
            "this sweep had every row stable, and a finding that rests on "
            "them shows only that their rate was too large for this model."
        )
    for k, runs in by_k.items():
        for when in ("none", "warmup"):
            ran = [r for r in runs if r not in ("Q", ADAM) and when in runs[r]]
            if not ran:
                continue
            stable = [letter for letter in ran if _of(runs, letter, when)[2] == 0]
            factored = [letter for letter in stable if TABLE2[letter].factored]
            said = []
            for kind, among in (("", stable), (" factored", factored)):
                if among:
                    best = min(among, key=lambda x: _of(runs, x, when)[0])
                    said.append(f"best{kind} ({best}), {_of(runs, best, when)[0]:.3f}")
            lines.append(
                f"- At k = {k} {WHEN[when]}, among the paper's rows with no "
                "unstable run: "
                + ("; ".join(said) if said else "none was stable")
                + "."
            )
    return lines


def plot(h, out):
    """bench/table2.png: the smoothed training loss of the plotted rows,
    seed 0 without warmup, at each step size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = h["curves"]
    fig, axes = plt.subplots(
        1, len(curves), figsize=(6 * len(curves), 4.2), squeeze=False
    )
    for ax, (k, rows) in zip(axes[0], curves.items()):
        for letter, curve in rows.items():
            steps = [h["window"] + i * h["every"] for i in range(len(curve))]
            values = [math.nan if v is None else v for v in curve]
            ax.plot(steps, values, label=letter if letter == ADAM else f"({letter})")
        entropy = h["corpus"]["unigram_entropy"]
        ax.axhline(entropy, color="gray", linestyle="--", label="unigram entropy")
        ax.set(
            xlabel="step",
            ylabel=f"training loss, moving mean of {h['window']}",
            title=f"h. No warmup, step size k = {k}"
            + (" (Adam first unstable)" if k == h["unstable"] else ""),
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "table2.png", dpi=110)
    plt.close(fig)
