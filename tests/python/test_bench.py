"""The benchmark keeps working: its workers run at the quick sizes, and the
report and the plot are written.

Nothing about timing is asserted here; `make bench` measures."""

import sys
from pathlib import Path

import pytest

from helpers import BACKEND

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench  # noqa: E402

CFG = bench.sizes(quick=True)
CONTENDERS = {"adafactor (ours)", "keras Adafactor", "keras Adam"}
tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="sections a, c and e run on tensorflow"
)


@pytest.mark.parametrize("kind", ["step", "embedding"])
def test_per_backend_workers_time_every_contender(kind):
    times = bench.work(CFG, kind)
    assert CONTENDERS <= set(times)
    assert all(ms > 0 for ms in times.values())


def test_peak_worker_runs_every_contender():
    for name in bench.PEAK_CONTENDERS:
        cell = bench.work(CFG, "peak", *name.split())
        # Linux's RSS counters are approximate (kept per thread or per CPU and
        # summed lazily): a step that adds nothing can read a peak a little
        # below the RSS read before it (896.07 against 896.19 MB in CI).
        assert cell["peak_mb"] > cell["before_mb"] - 16 > 0, name


@tensorflow_only
def test_report_and_plot_are_written(tmp_path):
    def in_process(kind, *extra, backend):
        return bench.work(CFG, kind, *extra)

    results = bench.collect(CFG, in_process, backends=(BACKEND,))
    state = results["state"]
    assert state["adafactor (ours)"] < state["keras Adafactor"] < state["keras Adam"]
    assert len(results["peak"]) == 2  # tensorflow, without and with XLA
    for cells in results["peak"].values():
        assert set(cells) == set(bench.PEAK_CONTENDERS)
    assert list(results["peak_sizes"]) == [str(n) for n in CFG["peak_sizes"]]
    assert len(results["bfloat16"]) == 3
    bench.write_report(results, tmp_path)
    bench.plot(results, tmp_path)
    report = (tmp_path / "results.md").read_text()
    for section in "abcdef":
        assert f"## {section}. " in report
    assert (tmp_path / "bench.png").stat().st_size > 0


@tensorflow_only
@pytest.mark.parametrize(
    "backend, peer", [("jax", "optax.adafactor"), ("torch", "torch.optim.Adafactor")]
)
def test_peers_state_is_counted_in_a_process_of_its_own(backend, peer):
    state = bench.in_subprocess(quick=True)("state", backend=backend)
    assert list(state) == [peer] and state[peer] > 0
