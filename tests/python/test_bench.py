"""The benchmark keeps working: `bench.py --quick` writes its report.

Nothing about timing is asserted here; `make bench` measures."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"


def test_quick_benchmark_writes_its_report(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["step"]) == {"tensorflow", "jax", "torch"}
    state = results["state"]
    assert state["adafactor (ours)"] < state["keras Adafactor"] < state["keras Adam"]
    report = (tmp_path / "results.md").read_text()
    assert "## b. Update-step time" in report
    assert "## f. Training step of a model dominated by Embedding" in report
    assert len(results["embedding"]) == 4
    for times in results["embedding"].values():
        assert set(times) == {
            "adafactor (ours)",
            "keras Adafactor",
            "keras Adam",
            "SGD",
        }
    assert (tmp_path / "bench.png").stat().st_size > 0
