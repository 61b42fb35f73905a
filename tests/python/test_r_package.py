"""pytest drives the R package in-process through rpy2: optimizer_adafactor()
made in R is the same Python optimizer as Adafactor() made here."""

import atexit
import gc
import os
import sysconfig
from pathlib import Path

import keras
import numpy as np
import pytest
import rpy2.rinterface as rinterface  # noqa: E402
import rpy2.robjects as ro  # noqa: E402

from adafactor import Adafactor

# Importing robjects starts R and registers rpy2's exit handler, which crashes
# the interpreter ("GIL is released") once reticulate objects exist.
atexit.unregister(rinterface.endr)

R_LIBRARY = os.environ.get(
    "ADAFACTOR_R_LIBRARY", str(Path(__file__).resolve().parents[2] / ".rlib")
)

CASES = [
    {},
    dict(learning_rate=0.05, relative_step=False),
    dict(beta_2_decay=-0.5, epsilon_1=1e-20, epsilon_2=0.01, clip_threshold=0.5),
    dict(weight_decay=0.1, clipnorm=1.0),
    dict(clipvalue=0.5, name="valued"),
    dict(global_clipnorm=2.0, loss_scale_factor=128.0),
    dict(use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3),
    dict(gradient_accumulation_steps=2, learning_rate=1),
    dict(beta_1=0.9, momentum_dtype="bfloat16", scale_parameter=False),
    dict(min_dim_size_to_factor=4, decay_offset=3, stochastic_rounding=True),
    dict(factored=False),
]


def r_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return '"' + value + '"'
    # Whole numbers are written as R doubles (2, not 2L), as users write them.
    return repr(float(value))


@pytest.fixture(scope="module")
def r_optimizer():
    """Make an optimizer in R; return the Python object R made.

    rpy2 runs R code with the GIL released. reticulate 1.39 and later take
    the GIL whenever they call into Python. Older releases call into Python
    without it: a finalizer of R's GC freeing a Python object then aborts
    the interpreter. So with those, each R call takes the GIL itself
    (PyGILState_Ensure) and runs R's GC before giving it back
    (PyEval_SaveThread, which leaves the state rpy2 expects); with the newer
    ones, doing so deadlocks. Python's cyclic GC is paused while R is in use.
    """
    if not (Path(R_LIBRARY) / "adafactor").is_dir():
        pytest.fail(f"the R package is not installed in {R_LIBRARY}")
    libpython = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var(
        "INSTSONAME"
    )
    gc.collect()
    gc.disable()
    ro.r(
        f'dyn.load("{libpython}"); .libPaths(c("{R_LIBRARY}", .libPaths())); '
        "library(adafactor)"
    )
    takes_gil = ro.r('packageVersion("reticulate") >= "1.39"')[0]
    keep = []

    def make(kwargs):
        call = ", ".join(f"{k} = {r_literal(v)}" for k, v in kwargs.items())
        assign = (
            "reticulate::py_set_attr(reticulate::import_main(), "
            f'"r_optimizer", optimizer_adafactor({call}))'
        )
        if takes_gil:
            ro.r(assign)
        else:
            ro.r(
                f'.C("PyGILState_Ensure"); tryCatch({assign}, '
                'finally = {invisible(gc()); .C("PyEval_SaveThread")})'
            )
        import __main__

        keep.append(__main__.r_optimizer)
        return __main__.r_optimizer

    yield make
    gc.enable()


def one_step(optimizer):
    rng = np.random.default_rng(0)
    variables = [
        keras.Variable(rng.standard_normal(s).astype("float32")) for s in [(4, 3), (3,)]
    ]
    grads = [rng.standard_normal(v.shape).astype("float32") for v in variables]
    optimizer.apply(grads, variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda kw: ",".join(kw) or "defaults")
def test_r_optimizer_is_the_python_optimizer(r_optimizer, kwargs):
    from_r = r_optimizer(kwargs)
    from_python = Adafactor(**kwargs)
    assert type(from_r) is Adafactor
    assert from_r.get_config() == from_python.get_config()
    for name in (
        "ema_overwrite_frequency",
        "gradient_accumulation_steps",
        "min_dim_size_to_factor",
        "decay_offset",
    ):
        value = getattr(from_r, name)
        assert value is None or type(value) is int
    for a, b in zip(one_step(from_r), one_step(from_python)):
        np.testing.assert_array_equal(a, b)


def test_r_passes_on_the_python_message(r_optimizer):
    with pytest.raises(Exception, match="Argument `clip_threshold` must be") as info:
        r_optimizer(dict(clip_threshold=-1.0))
    assert "Received: clip_threshold=-1.0" in str(info.value)
    assert "Traceback" not in str(info.value)
