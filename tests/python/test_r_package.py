"""What only a suite of R and Python together can test, with R embedded in
this process through rpy2, on the process's backend: an optimizer made in R
steps as one made in Python, a config crosses from R to Python and back, and
a model saved on one side loads on the other. (testthat tests the R wrapper:
its arguments, messages and warnings, and models saved and loaded in R.)"""

import atexit
import gc
import os
import sysconfig
from pathlib import Path

import keras
import numpy as np
import pytest

from adafactor import Adafactor
from helpers import fit_small_model, saved_variables, to_numpy

pytestmark = pytest.mark.r

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
    dict(beta_2_cap=0.9, beta_2=0.99, factor_dims="largest", skip_nonfinite=True),
    dict(record_statistics=True),
]
EACH_CASE = pytest.mark.parametrize(
    "kwargs", CASES, ids=lambda kw: ",".join(kw) or "defaults"
)


def r_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return '"' + value + '"'
    # Whole numbers are written as R doubles (2, not 2L), as users write them.
    return repr(float(value))


def r_call(kwargs):
    """optimizer_adafactor() with `kwargs`, as R code."""
    args = ", ".join(f"{k} = {r_literal(v)}" for k, v in kwargs.items())
    return f"optimizer_adafactor({args})"


@pytest.fixture(scope="module")
def r():
    """Run R code in this process, with the R package attached; returns the
    R code's value.

    Importing rpy2.robjects starts R and registers rpy2's exit handler, which
    crashes the interpreter ("GIL is released") once reticulate objects exist;
    conftest.py ends such a process without interpreter teardown.

    rpy2 runs R code with the GIL released. reticulate 1.39 and later take
    the GIL whenever they call into Python. Older releases call into Python
    without it: a finalizer of R's GC freeing a Python object then aborts
    the interpreter. So with those, each R call takes the GIL itself
    (PyGILState_Ensure) and runs R's GC before giving it back
    (PyEval_SaveThread, which leaves the state rpy2 expects); with the newer
    ones, doing so deadlocks. Python's cyclic GC is paused while R is in use.
    """
    import rpy2.rinterface as rinterface
    import rpy2.robjects as ro

    atexit.unregister(rinterface.endr)
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

    def run(code):
        if takes_gil:
            return ro.r(code)
        return ro.r(
            f'.C("PyGILState_Ensure"); tryCatch({{{code}}}, '
            'finally = {invisible(gc()); .C("PyEval_SaveThread")})'
        )

    yield run
    gc.enable()


KEEP = []  # what R gave Python stays alive while R runs (see the fixture)


def from_r(r, code):
    """The Python object R's code makes, as reticulate converts it."""
    r(f'reticulate::py_set_attr(reticulate::import_main(), "from_r", {{{code}}})')
    import __main__

    KEEP.append(__main__.from_r)
    return __main__.from_r


def to_r(**values):
    """Make `values` Python objects that R code reads as `py_values$name`."""
    import __main__

    __main__.py_values = values
    KEEP.append(values)


PY_VALUES = "reticulate::import_main(convert = FALSE)$py_values"


def steps(optimizer, dtype):
    """Four steps on variables of `dtype`; their values after."""
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (2, 3, 4)]
    variables = [keras.Variable(rng.standard_normal(s), dtype=dtype) for s in shapes]
    for _ in range(4):
        grads = [
            keras.ops.convert_to_tensor(rng.standard_normal(v.shape), v.dtype)
            for v in variables
        ]
        optimizer.apply(grads, variables)
    return [to_numpy(v) for v in variables]


@EACH_CASE
def test_an_optimizer_made_in_r_steps_bit_for_bit_as_one_made_in_python(r, kwargs):
    keras.utils.set_random_seed(0)  # stochastic rounding's, drawn when made
    from_r_side = from_r(r, r_call(kwargs))
    assert type(from_r_side) is Adafactor
    keras.utils.set_random_seed(0)
    from_python = Adafactor(**kwargs)
    # Stochastic rounding rounds to bfloat16 variables only.
    dtype = "bfloat16" if kwargs.get("stochastic_rounding") else "float32"
    ours = steps(from_python, dtype)
    for a, b in zip(steps(from_r_side, dtype), ours, strict=True):
        np.testing.assert_array_equal(a, b)


@EACH_CASE
def test_a_config_made_in_r_round_trips_through_python_and_back(r, kwargs):
    """R's config is Python's, value for value and type for type; Python's
    from_config() rebuilds the optimizer, whose config R reads back as the
    one it made, and from which optimizer_adafactor() makes it again."""
    made = from_r(r, f"config <- {r_call(kwargs)}$get_config(); config")
    want = Adafactor(**kwargs).get_config()
    if "name" not in kwargs:  # Keras numbers default names: adafactor_1, ...
        want["name"] = made["name"]
    assert made == want
    assert {k: type(v) for k, v in made.items()} == {
        k: type(v) for k, v in want.items()
    }
    to_r(rebuilt=Adafactor.from_config(made).get_config())
    r(f"back <- reticulate::py_to_r({PY_VALUES}$rebuilt)")
    assert r("identical(back, config)")[0]
    assert r("identical(do.call(optimizer_adafactor, back)$get_config(), config)")[0]


SAVED = dict(learning_rate=0.05, beta_1=0.9, decay_offset=2, name="saved")
X = np.random.default_rng(7).standard_normal((8, 4)).astype("float32")
Y = X[:, :3] * 2


def assert_same_model(a, b, rtol=0.0):
    """The same optimizer, state and weights. A step after loading may round
    the statistics otherwise than a straight run, R or not: as in
    test_serialization.py, resumed training agrees to 1e-6."""
    assert type(a.optimizer) is type(b.optimizer) is Adafactor
    assert a.optimizer.get_config() == b.optimizer.get_config()
    pairs = list(
        zip(saved_variables(a.optimizer), saved_variables(b.optimizer), strict=True)
    )
    pairs += list(zip(a.weights, b.weights, strict=True))
    for x, y in pairs:
        np.testing.assert_allclose(to_numpy(x), to_numpy(y), rtol=rtol, atol=rtol)


def test_a_model_saved_in_python_loads_in_r_and_trains_on(r, tmp_path):
    path = tmp_path / "python.keras"
    model, _ = fit_small_model(
        Adafactor(**SAVED), [keras.layers.Dense(3)], X, Y, epochs=2
    )
    model.save(path)
    to_r(x=X, y=Y)
    loaded = from_r(
        r,
        f'model <- reticulate::import("keras")$models$load_model("{path}")\n'
        f"stopifnot(identical(model$optimizer$get_config(), {r_call(SAVED)}"
        "$get_config()))\n"
        "model",
    )
    assert_same_model(loaded, model)
    r(f"model$fit({PY_VALUES}$x, {PY_VALUES}$y, epochs = 1L, verbose = 0L)")
    model.fit(X, Y, epochs=1, verbose=0)
    assert int(to_numpy(loaded.optimizer.iterations)) == 3
    assert_same_model(loaded, model, rtol=1e-6)


def test_a_model_saved_in_r_loads_in_python_and_trains_on(r, tmp_path):
    path = tmp_path / "r.keras"
    to_r(x=X, y=Y)
    model = from_r(
        r,
        'keras <- reticulate::import("keras")\n'
        "model <- keras$Sequential(list(keras$Input(list(4L)), "
        "keras$layers$Dense(3L)))\n"
        f'model$compile(optimizer = {r_call(SAVED)}, loss = "mse")\n'
        f"model$fit({PY_VALUES}$x, {PY_VALUES}$y, epochs = 2L, verbose = 0L)\n"
        f'model$save("{path}")\n'
        "model",
    )
    loaded = keras.models.load_model(path)
    assert loaded.optimizer.get_config() == Adafactor(**SAVED).get_config()
    assert_same_model(loaded, model)
    r(f"model$fit({PY_VALUES}$x, {PY_VALUES}$y, epochs = 1L, verbose = 0L)")
    loaded.fit(X, Y, epochs=1, verbose=0)
    assert int(to_numpy(loaded.optimizer.iterations)) == 3
    assert_same_model(loaded, model, rtol=1e-6)
