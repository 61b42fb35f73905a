"""The benchmark keeps working: its workers run at the quick sizes, and the
report and the plot are written.

Nothing about timing is asserted here; `make bench` measures."""

import pytest

import oracle
from bench import models, report, run, workers
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
    assert elements(models.OURS) == (4 * n + stats, n + stats)
    assert elements(models.KEPT_RMS) == (3 * n + stats, n + stats)
    assert elements("keras Adam") == (4 * n, 3 * n)
    # A vector keeps a full v; its statistics are as large as itself.
    assert elements(models.OURS, shape=(8,)) == (4 * 8 + 8, 8 + 8)
    # Row-sparse: the k gradient rows, the u rows of x, and what is whole.
    rows, g, x = (k, u, "sparse"), k * width, u * width
    assert elements(models.FLOOR, rows) == (g + x, x)
    assert elements(models.OURS, rows) == (2 * g + n + x + stats, x + stats)
    assert elements(models.KEPT_RMS, rows) == (2 * g + x + stats, x + stats)
    assert elements("keras Adam", rows) == (g + 3 * n, 3 * n)
    # Dense, zero outside u rows: whole for SGD and Adam; ours reads it
    # once to find the rows, then takes it as u rows.
    rows = (k, u, "dense")
    assert elements(models.FLOOR, rows) == (2 * n, n)
    assert elements("keras Adam", rows) == (4 * n, 3 * n)
    assert elements(models.OURS, rows) == (n + 2 * x + n + x + stats, x + stats)
    assert elements(models.KEPT_RMS, rows) == (n + 3 * x + stats, x + stats)


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
        assert spec["quick"] and spec["backend"] == BACKEND
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
    assert sections == [f"## {s}. " for s in "abcdefgh"]
    # b and f give the ratios to SGD, the targets' measure, and keep the
    # ratios the README quotes.
    b, f = (h for h in headers if h.startswith("| backend | contender | ms |"))
    assert b.endswith(f"| x {models.OURS} | x SGD |")
    assert f.endswith("| x keras Adam | x SGD |")
    # g: a sentence per step on its target, ours against SGD.
    steps = len(results["bytes"]["f"]) + len(results["bytes"]["b"])
    assert written.count("x SGD, target ") == steps
    assert (tmp_path / "bench.png").stat().st_size > 0
    # h: a row per row trained, and a sentence per finding whose rows ran.
    h = written[written.index("## h. ") :]
    assert sum(line.startswith("| (") for line in h.splitlines()) == 3
    assert h.count("reproduced**") == 1


def table2_rows(valid):
    """Section h's results with these validation losses per (row, warmup):
    three seeds each, a loss of inf for a diverged run."""
    rows = {}
    for (letter, when), losses in valid.items():
        runs = [{"train": v, "valid": v, "diverged": v == float("inf")} for v in losses]
        rows.setdefault(letter, {"warmup": runs, "none": runs})[when] = runs
    return rows


def test_table2_findings_follow_the_numbers():
    stable = [1.0, 1.01, 0.99]
    rows = {("A", "none"): [float("inf")] * 3}
    rows.update({(b, "none"): stable for b in "BHK"})
    sentence = next(
        line for line in report._findings(table2_rows(rows)) if "(K)" in line
    )
    assert "**reproduced**" in sentence and "diverged 3 and 0" in sentence
    # (A) no worse than (H): not reproduced.
    rows[("A", "none")] = [1.0, 1.0, 1.0]
    sentence = next(
        line for line in report._findings(table2_rows(rows)) if "(K)" in line
    )
    assert "**not reproduced**" in sentence
    # The best row without warmup is the lowest of those that never diverged.
    rows[("B", "none")] = [0.5, 0.5, 0.5]
    best = report._findings(table2_rows(rows))[-2]
    assert best.startswith("- Best row without warmup")
    assert "(B), validation loss 0.500" in best


@tensorflow_only
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_peers_state_is_counted_in_a_process_of_its_own(backend):
    peer = models.PEERS[backend].name
    state = run.in_subprocess(spec("state", backend=backend))
    assert list(state)[0] == peer and state[peer] > 0
    if backend == "jax":
        # optax factoring every matrix over its two largest dimensions keeps
        # ours with factor_dims="largest", and a placeholder or two per
        # variable and its step count.
        params = models.reference_transformer(CFG).trainable_variables
        shapes = [tuple(v.shape) for v in params]
        extra = state[f"{peer}, min_dim_size_to_factor=1"] - oracle.state_size(
            shapes, "largest"
        )
        assert 0 <= extra <= 2 * len(shapes) + 1
    else:
        assert list(state) == [peer]


@pytest.mark.parametrize("ours_mb", [5, 2], ids=["more-bytes", "fewer-bytes"])
def test_a_bytes_verdict_follows_the_numbers_it_is_given(ours_mb):
    """Section g's sentence, from synthetic numbers: 1 MB a ms, SGD 3 MB
    in 10 ms, ours 12 ms and `ours_mb`, more or fewer bytes than SGD's."""
    moved = {models.FLOOR: 3e6, models.OURS: ours_mb * 1e6, models.KEPT_RMS: 1e6}
    times = {models.FLOOR: 10.0, models.OURS: 12.0}
    got = report._verdict("f", "torch", "torch", moved, times, 1e6)
    assert "ours 1.20x SGD, target 1.5x: met" in got
    if ours_mb > 3:
        assert "the 2 MB more take 2.00 ms, and SGD's 10.0 ms plus those" in got
        assert "make 1.20x SGD, within the target" in got
    else:
        assert "the 1 MB fewer save 1.00 ms, and SGD's 10.0 ms less those" in got
        assert "make 0.90x SGD, within the target" in got
        assert "this step moves bytes faster" not in got  # 1.2 > 0.9
    assert "(with RMS(x) kept: 0.80x)" in got


def test_a_forward_pass_copying_the_table_is_taken_out_of_sgds_step():
    """Where SGD's forward pass copies the table and ours' does not, the
    verdict says what the copy takes, and ours against SGD without it."""
    times = {models.FLOOR: 10.0, models.OURS: 6.0}
    verdict = "- f, tensorflow: ours 0.60x SGD." + report._FASTER_THAN_NUMPY
    got = report._with_the_copy(verdict, times, 8e6, 1e6)  # 1 MB a ms
    assert report._FASTER_THAN_NUMPY not in got
    assert got.endswith(
        "the copy reads and writes 8 MB, 8.00 ms at the copy rate, and SGD's"
        " step less the copy takes 2.0 ms, ours 3.00x that."
    )
