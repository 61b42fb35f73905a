"""The benchmark keeps working: its workers run at the quick sizes, and the
report and the plot are written.

Nothing about timing is asserted here; `make bench` measures."""

import os
import re

import numpy as np
import pytest

import oracle
from bench import models, realistic, report, run, stability, table2, workers
from helpers import BACKEND

pytestmark = pytest.mark.bench

CFG = models.sizes(quick=True)
tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="sections a, c and e run on tensorflow"
)


def spec(kind, backend=BACKEND, **args):
    return dict(kind=kind, backend=backend, quick=True, **args)


@pytest.mark.parametrize(
    "kind, args", [("step", {}), ("embedding", {"jit_compile": "auto"})]
)
def test_per_backend_workers_time_every_contender(kind, args):
    times = workers.work(spec(kind, **args))
    assert set(models.WITH_FLOOR) <= set(times)  # SGD, the floor, too
    assert all(ms > 0 for ms in times.values())


def test_bandwidth_worker_reads_and_copies_with_each_thread_count():
    out = workers.work(spec("bandwidth"))
    assert out["mb"] == CFG["bandwidth"]["mb"] and "1" in out["threads"]
    for rates in out["threads"].values():
        assert set(rates) == {"sum_gb_s", "dot_gb_s", "copy_gb_s"}
        assert all(gb_s > 0 for gb_s in rates.values())


def test_step_bytes_counts_each_pass_as_its_docstring_says():
    n, (k, u), width = 6 * 4, (5, 3), 4  # a 6 x 4 table: 5 rows, 3 distinct
    stats = 6 + 4  # r and c

    def elements(name, rows=None, shape=(6, 4)):
        read, written = models.step_bytes(name, [(shape, rows)])
        return read // 4, written // 4

    assert elements(models.FLOOR) == (2 * n, n)
    assert elements(models.OURS) == (5 * n + stats, n + stats)
    assert elements(models.KEPT_RMS) == (4 * n + stats, n + stats)
    assert elements("keras Adam") == (4 * n, 3 * n)
    # A vector keeps a full v; its statistics are as large as itself.
    assert elements(models.OURS, shape=(8,)) == (5 * 8 + 8, 8 + 8)
    # Row-sparse: the k gradient rows, the u rows of x, and what is whole.
    rows, g, x = (k, u, "sparse"), k * width, u * width
    assert elements(models.FLOOR, rows) == (g + x, x)
    assert elements(models.OURS, rows) == (3 * g + n + x + stats, x + stats)
    assert elements(models.KEPT_RMS, rows) == (3 * g + x + stats, x + stats)
    assert elements("keras Adam", rows) == (g + 3 * n, 3 * n)
    # Dense, zero outside u rows: whole for SGD and Adam; ours reads it
    # once to find the rows, then takes it as u rows.
    rows = (k, u, "dense")
    assert elements(models.FLOOR, rows) == (2 * n, n)
    assert elements("keras Adam", rows) == (4 * n, 3 * n)
    assert elements(models.OURS, rows) == (n + 3 * x + n + x + stats, x + stats)
    assert elements(models.KEPT_RMS, rows) == (n + 4 * x + stats, x + stats)


def test_peak_worker_runs_every_contender():
    for name in models.PEAK:
        cell = workers.work(
            spec("peak", contender=name, size=CFG["peak"], jit_compile="auto")
        )
        # Linux's RSS counters are approximate (kept per thread or per CPU and
        # summed lazily): a step that adds nothing can read a peak a little
        # below the RSS read before it (896.07 against 896.19 MB in CI).
        assert cell["peak_mb"] > cell["before_mb"] - 16 > 0, name


def test_a_spec_for_another_backend_is_refused():
    other = next(b for b in models.BACKENDS if b != BACKEND)
    with pytest.raises(RuntimeError, match=f"asks for {other}"):
        workers.work(spec("state", backend=other))


def table_headers(markdown):
    """Each table's header row, and the letter of each section."""
    lines = markdown.splitlines()
    headers = [a for a, b in zip(lines, lines[1:]) if b.startswith("|---")]
    return headers, [line[:6] for line in lines if line.startswith("## ")]


@tensorflow_only
def test_report_and_plot_are_written(tmp_path):
    def in_process(spec):
        assert spec["quick"]
        if spec["kind"] == "table2":  # section h compiles its loop with jax
            assert spec["backend"] == "jax"
            return run.in_subprocess(spec)
        assert spec["backend"] == BACKEND
        return workers.work(spec)

    results = run.collect(CFG, in_process, backends=(BACKEND,))
    state = results["state"]
    largest = f"{models.OURS}, factor_dims='largest'"
    assert set(state) == {"parameters", *models.STATEFUL, largest}
    params = models.reference_transformer(CFG).trainable_variables
    shapes = [tuple(v.shape) for v in params]
    # Ours keeps the paper's factored floor, n + m numbers for an n x m
    # matrix, over the last two or the two largest dimensions; Adam two
    # numbers per parameter.
    floor = oracle.state_size(shapes)
    assert state[models.OURS] == floor < 0.25 * state["parameters"]
    assert state[largest] == oracle.state_size(shapes, "largest") < floor
    assert state["keras Adam"] == 2 * state["parameters"]
    assert len(results["peak"]) == 2  # tensorflow, without and with XLA
    for cells in results["peak"].values():
        assert list(cells) == list(models.PEAK)
    assert list(results["peak_sizes"]) == [str(n) for n in CFG["peak_sizes"]]
    assert len(results["bfloat16"]) == 3
    assert list(results["bytes"]["f"]) == list(results["peak"])
    assert list(results["bytes"]["b"]) == [BACKEND]
    report.write(results, tmp_path)
    written = (tmp_path / "results.md").read_text()
    committed = (run.HERE / "results.md").read_text()
    # The same sections and tables as the full run's report, on fewer rows.
    assert table_headers(written) == table_headers(committed)
    headers, sections = table_headers(written)
    assert sections == [f"## {s}. " for s in "abcdefghi"]
    # b and f give the ratios to SGD, the targets' measure, and keep the
    # ratios the README quotes.
    b, f = (h for h in headers if h.startswith("| backend | contender | ms |"))
    assert b.endswith(f"| x {models.OURS} | x SGD |")
    assert f.endswith("| x keras Adam | x SGD |")
    # g: a sentence per step on its target, ours against SGD.
    steps = len(results["bytes"]["f"]) + len(results["bytes"]["b"])
    assert written.count("x SGD, target ") == steps
    assert (tmp_path / "bench.png").stat().st_size > 0
    # h: Adam's search over the grid, then a table per step size of the
    # sweep without warmup, and one with warmup at the middle one, with a
    # row per row trained; a sentence per finding whose rows ran and per
    # pair of rows that differ in clipping or the decay; the plot.
    h = written[written.index("## h. ") : written.index("## i. ")]
    t2 = CFG["table2"]
    assert sum(line.startswith("| (") for line in h.splitlines()) == 3 * 4
    assert h.count("| Adam (keras) |") == 4
    assert h.count("Step size k = ") == 4 and h.count("with warmup:") == 1
    assert h.count("reproduced**") == 1  # SGD's: A, O and Q ran
    assert h.count("(A) → (") == 0  # H, K and L did not run
    assert h.count(" among the paper's rows with no unstable run") == 4
    assert len(results["table2"]["search"]) == len(t2["grid"])
    assert (tmp_path / "table2.png").stat().st_size > 0
    # i: a table per model, a row per mode run, and a sentence each for the
    # step alone and the training step.
    i = written[written.index("## i. ") :]
    assert i.count("\n### ") == len(realistic.MODELS)
    assert sum(line.startswith("| tensorflow") for line in i.splitlines()) == 6
    assert "The step alone: ours took no longer than keras Adam in " in i
    assert "The training step: ours took no longer than keras Adam in " in i


ENTROPY = 3.0  # the unigram entropy the synthetic curves learn past


def curve(steps=1000, start=5.0, floor=1.5):
    """A loss falling smoothly from `start` towards `floor`."""
    t = np.arange(steps)
    return floor + (start - floor) * np.exp(-t / 150.0)


def test_stability_measures_tell_spikes_divergence_and_smooth_curves_apart():
    window, collapse = stability.WINDOW, stability.COLLAPSE
    smooth = curve()
    # The moving mean, against NumPy's convolution.
    want = np.convolve(smooth, np.ones(window) / window, mode="valid")
    np.testing.assert_allclose(stability.smoothed(smooth), want, rtol=1e-12)
    calm = stability.outcome(smooth, ENTROPY)
    assert calm["rise"] == 0.0 and not stability.unstable(calm)
    assert calm["train"] == pytest.approx(want[-1])
    # A spike held for 100 steps rises by its height, less the fall under it.
    spiked = smooth.copy()
    spiked[600:700] += 0.8
    out = stability.outcome(spiked, ENTROPY)
    assert 0.8 - 0.05 < out["rise"] <= 0.8 and out["collapsed"]
    assert not out["diverged"] and not out["stalled"]
    # A spike of one step is smoothed away: 5 nats over 50 steps.
    blip = smooth.copy()
    blip[600] += 5.0
    out = stability.outcome(blip, ENTROPY)
    assert out["rise"] == pytest.approx(5.0 / window, abs=0.01)
    assert not stability.unstable(out) and out["rise"] < collapse
    # Climbing back above the first loss diverges, and collapses on the way.
    climbing = np.concatenate([smooth[:500], np.linspace(smooth[499], 6.0, 500)])
    out = stability.outcome(climbing, ENTROPY)
    assert out["diverged"] and out["collapsed"] and out["train"] > climbing[0]
    # A non-finite loss or weight diverges; the rise after NaN is infinite.
    broken = smooth.copy()
    broken[700:] = np.nan
    out = stability.outcome(broken, ENTROPY)
    assert out["diverged"] and out["collapsed"] and out["rise"] == np.inf
    assert stability.outcome(smooth, ENTROPY, finite=False)["diverged"]
    # One infinite loss leaves the curve not finite from its first window on,
    # though the losses after it are finite again.
    once = smooth.copy()
    once[600] = np.inf
    curve_of_once = stability.smoothed(once)
    assert np.isfinite(curve_of_once[: 600 - window + 1]).all()
    assert np.isinf(curve_of_once[600 - window + 1 :]).all()
    # A loss that falls to the unigram entropy and stays stalls, and one that
    # ends just STALL nats below it does not.
    for floor, stalled in ((ENTROPY, True), (ENTROPY - stability.STALL - 0.01, False)):
        out = stability.outcome(curve(floor=floor), ENTROPY)
        assert out["stalled"] is stalled and not out["collapsed"]


def test_the_sweep_surrounds_the_first_unstable_step_size():
    grid = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert table2.sweep(grid, 4.0) == [1.0, 4.0, 8.0]
    assert table2.sweep(grid, 0.5) == [0.5, 2.0, 4.0]  # the grid's first
    assert table2.sweep(grid, 16.0) == [2.0, 8.0, 16.0]  # and last
    assert table2.sweep(grid, None) == [2.0, 8.0, 16.0]
    with pytest.raises(ValueError, match="four step sizes"):
        table2.sweep(grid[:3], 1.0)


def test_section_i_says_where_ours_was_no_slower_than_adam():
    """The sentences follow the numbers they are given."""
    row = {"variables": 3, "parameters": 30}
    step = {name: 1.0 for name in realistic.CONTENDERS}
    slower = dict(row, step=dict(step, **{models.OURS: 1.5}), train=step)
    lines = realistic.report({"mode a": {realistic.MANY: slower}})
    text = "\n".join(lines)
    assert "The step alone: ours took no longer than keras Adam in 0 of 1 cases" in text
    assert "longer in mode a, many small variables (1.50x)" in text
    assert (
        "The training step: ours took no longer than keras Adam in 1 of 1 cases."
        in text
    )


@pytest.mark.device_check
def test_the_device_check_runs_without_tensorflow(tmp_path, monkeypatch):
    """The device check, quick: sections b, d, f and i on jax and torch,
    each in processes of their own, where TensorFlow cannot be imported."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "tensorflow.py").write_text("raise ImportError('hidden')\n")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hidden), path])))
    specs, measure = [], run.in_subprocess

    def in_subprocess(spec):
        specs.append(spec)
        return measure(spec)

    monkeypatch.setattr(run, "in_subprocess", in_subprocess)
    out = tmp_path / "out"
    run.main(["--device-check", "--quick", "--out", str(out)])
    assert {s["backend"] for s in specs} == {"jax", "torch"}
    written = (out / "results-device.md").read_text()
    for backend in ("jax", "torch"):
        assert f"## {backend}: " in written
    assert written.count("| b. update step, ms |") == 2
    assert written.count("## i. ") == 2
    assert (out / "results-device.json").stat().st_size > 0


# A figure of the benchmark in the README: a ratio, such as "0.019x", or a
# loss of section h, such as "2.329".
RATIO = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)x\b")
LOSS = re.compile(r"(?<![\w.])(\d\.\d{3})(?![\d.x])")


def figures_not_in(text, results):
    """The ratios and losses quoted in `text`, outside its code blocks, that
    the report `results` does not contain as a number."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    measured = set(re.findall(r"\d[\d,]*(?:\.\d+)?", results))
    quoted = RATIO.findall(prose) + LOSS.findall(prose)
    return [figure for figure in quoted if figure not in measured]


def test_the_readme_quotes_only_figures_of_the_last_run():
    readme = (run.HERE.parent / "README.md").read_text()
    results = (run.HERE / "results.md").read_text()
    assert "bench/results.md" in readme
    assert len(RATIO.findall(readme)) >= 3  # memory and speed, from the run
    assert len(LOSS.findall(readme)) >= 3  # the recommended settings' losses
    assert figures_not_in(readme, results) == []
    # A figure that the run did not measure is found.
    assert figures_not_in("ours took 0.123456x Adam's time", results) == ["0.123456"]
    assert figures_not_in("row H reached 9.876", results) == ["9.876"]
