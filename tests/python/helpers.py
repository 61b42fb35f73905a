"""Helpers shared by the Python tests (fixtures and hooks live in conftest).

Every suite runs on the backend named by KERAS_BACKEND; the Makefile runs
them once per backend.
"""

import keras
import numpy as np

from adafactor.statistics import STATISTICS
from tools.harness import CompiledStep

BACKEND = keras.backend.backend()

# How far float32 may drift from the float64 oracle (oracle.py): rounding,
# compounded over the tens of steps a test takes, relative to the max norm
# (max_rel_diff).
TOLERANCE = 2e-5


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


def saved_variables(optimizer):
    """The optimizer's variables that are saved: all but the statistics of
    the last step (Adafactor.statistics)."""
    return [v for v in optimizer.variables if v.name not in STATISTICS]


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


def fit_small_model(optimizer, layers, x, y=None, epochs=1, batch_size=16, **options):
    """Fit a Sequential model of `layers` with `optimizer` on the mean squared
    error; return the model and its loss per epoch.

    The input has the shape of x's rows (int32 tokens if x holds integers);
    y is the sum of x's features unless given. `options` go to compile().
    """
    tokens = np.issubdtype(x.dtype, np.integer)
    inputs = keras.Input(x.shape[1:], dtype="int32" if tokens else None)
    model = keras.Sequential([inputs, *layers])
    model.compile(optimizer=optimizer, loss="mse", **options)
    y = x.sum(axis=1, keepdims=True) if y is None else y
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model, history.history["loss"]


def compiled_trajectory(optimizer, x0s, grads, compiler="default"):
    """Run the steps with the update compiled (see harness.CompiledStep);
    return the final values. Gradients given as NumPy arrays become float32
    tensors; others (sparse ones) are used as they are."""
    variables = [keras.Variable(x.astype("float32")) for x in x0s]
    step = CompiledStep(optimizer, variables, compiler)

    def tensor(g):
        if isinstance(g, np.ndarray):
            return keras.ops.convert_to_tensor(g.astype("float32"))
        return g

    for gs in grads:
        step([tensor(g) for g in gs])
    return [to_numpy(v) for v in step.sync()]
