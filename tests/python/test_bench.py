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
    assert set(models.STATEFUL) <= set(times)
    assert all(ms > 0 for ms in times.values())


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
    assert set(state) == {"parameters", *models.STATEFUL}
    params = models.reference_transformer(CFG).trainable_variables
    # Ours keeps the paper's factored floor, n + m numbers for an n x m
    # matrix; Adam two numbers per parameter.
    floor = oracle.state_size([tuple(v.shape) for v in params])
    assert state[models.OURS] == floor < 0.25 * state["parameters"]
    assert state["keras Adam"] == 2 * state["parameters"]
    assert len(results["peak"]) == 2  # tensorflow, without and with XLA
    for cells in results["peak"].values():
        assert list(cells) == list(models.PEAK)
    assert list(results["peak_sizes"]) == [str(n) for n in CFG["peak_sizes"]]
    assert len(results["bfloat16"]) == 3
    report.write(results, tmp_path)
    written = (tmp_path / "results.md").read_text()
    committed = (run.HERE / "results.md").read_text()
    # The same sections and tables as the full run's report, on fewer rows.
    assert table_headers(written) == table_headers(committed)
    assert table_headers(written)[1] == [f"## {s}. " for s in "abcdef"]
    assert (tmp_path / "bench.png").stat().st_size > 0


@tensorflow_only
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_peers_state_is_counted_in_a_process_of_its_own(backend):
    peer = models.PEERS[backend].name
    state = run.in_subprocess(spec("state", backend=backend))
    assert list(state) == [peer] and state[peer] > 0
