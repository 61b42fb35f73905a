"""Shared helpers. Every suite here runs on the backend named by
KERAS_BACKEND; the Makefile runs them once per backend."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def apply_steps(optimizer, x0s, grads, dtype="float32"):
    """Apply grads[t][i] to variable i for each step t.

    Returns the list, per step, of the variables' values as float64 arrays.
    """
    variables = [
        keras.Variable(np.asarray(x, dtype), name=f"x{i}") for i, x in enumerate(x0s)
    ]
    path = []
    for step_grads in grads:
        optimizer.apply(
            [keras.ops.convert_to_tensor(np.asarray(g, dtype)) for g in step_grads],
            variables,
        )
        path.append([to_numpy(v) for v in variables])
    return path


def to_numpy(x):
    """Any tensor or variable as a float64 array (bfloat16 included)."""
    x = keras.ops.cast(x, "float32")
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def random_problem(shapes, steps, seed=0):
    """Initial values and a sequence of gradients for variables of `shapes`."""
    rng = np.random.default_rng(seed)
    x0s = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return x0s, grads


def max_rel_diff(a, b):
    """max |a - b| / max |b|: the relative difference in the max norm."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


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
