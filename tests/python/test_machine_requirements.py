"""The Makefile picks numpy and rpy2 to fit the machine's R."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.machine

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "machine_requirements", ROOT / "tools" / "machine_requirements.py"
)
machine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(machine)


@pytest.mark.parametrize(
    "r_version, reticulate_version, expected",
    [
        ("4.2.2", "1.28", ["numpy==1.26.4", "rpy2==3.5.17"]),  # Debian 12
        ("4.5.0", "1.41.0", ["numpy==2.4.6", "rpy2==3.6.9"]),  # Debian 13
        ("4.4.3", "1.34.0", ["numpy==1.26.4", "rpy2==3.5.17"]),
        ("4.4.3", "1.35.0", ["numpy==2.4.6", "rpy2==3.5.17"]),
        ("4.5.0", "1.34.0.9000", ["numpy==1.26.4", "rpy2==3.6.9"]),
        ("4.10.1", "1.46.0", ["numpy==2.4.6", "rpy2==3.6.9"]),
    ],
)
def test_pins_follow_r_and_reticulate(r_version, reticulate_version, expected):
    assert machine.requirements(r_version, reticulate_version) == expected


def test_requirements_files_leave_numpy_and_rpy2_to_the_script():
    pinned = [
        line.split("==")[0]
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "numpy" not in pinned and "rpy2" not in pinned


def test_this_environment_has_what_the_script_picks():
    pytest.importorskip("rpy2")  # the R package's environment only
    from importlib.metadata import version

    r = machine.installed("getRversion()")
    reticulate = machine.installed('packageVersion("reticulate")')
    expected = machine.requirements(r, reticulate)
    assert f"numpy=={version('numpy')}" in expected
    assert f"rpy2=={version('rpy2')}" in expected
