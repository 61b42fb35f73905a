"""Fixtures and hooks; shared helpers are in helpers.py."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The modules the tests share with the benchmark: tools/harness.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def pytest_sessionfinish(session, exitstatus):
    session.config._adafactor_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    """Leave without interpreter teardown once R has run in this process.

    With R embedded through rpy2 and reticulate objects alive, Python's
    shutdown runs R callbacks and finalizers without the GIL, which can
    crash the process after every test has passed. Coverage data is saved
    first; then the process exits with pytest's own status.
    """
    if "rpy2.rinterface" not in sys.modules:
        return
    try:
        import coverage

        current = coverage.Coverage.current()
        if current is not None:
            current.stop()
            current.save()
    except ImportError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(getattr(config, "_adafactor_exitstatus", 0))
