"""Small variables stepped together (adafactor.grouping): the numbers of a
step per variable, in fewer operations, and no wait for the device."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor, backend
from helpers import BACKEND, TOLERANCE, max_rel_diff, to_numpy

pytestmark = pytest.mark.update_rule

# Many of a shape, as in a model of repeated blocks, and some alone.
SHAPES = [(6, 5)] * 3 + [(5,)] * 3 + [(4, 3, 6)] * 2 + [(3, 7), (), (2,)]


def _problem(dtype, seed=0, steps=3):
    rng = np.random.default_rng(seed)
    x0s = [to_numpy(keras.ops.cast(rng.standard_normal(s), dtype)) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    return x0s, grads


def _run(make, indices, x0s, grads, dtypes, sparse):
    """The variables `indices` of the problem after its steps, all given to
    one optimizer, `make(variables, indices)`; and how many calls of
    update_step a step took."""
    variables = [
        keras.Variable(np.asarray(x0s[i], "float32"), dtype=dtypes[i], name=f"x{i}")
        for i in indices
    ]
    optimizer = make(variables, indices)
    calls = []
    step = optimizer.update_step
    optimizer.update_step = lambda *args: calls.append(1) or step(*args)
    for step_grads in grads:
        tensors = [
            _row_sparse(step_grads[i])
            if i in sparse
            else keras.ops.convert_to_tensor(step_grads[i], dtypes[i])
            for i in indices
        ]
        optimizer.apply(tensors, variables)
    return [to_numpy(v) for v in variables], len(calls) // len(grads)


def _row_sparse(g):
    """g as the backend's row-sparse gradient (an embedding's)."""
    rows = np.array([0, 2, 2], "int32")  # a duplicate index
    values = np.stack([g[0], g[2] / 2, g[2] / 2]).astype("float32")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.IndexedSlices(tf.constant(values), tf.constant(rows), g.shape)
    from jax.experimental import sparse

    return sparse.BCOO((values, rows[:, None]), shape=g.shape)


CASES = {
    "float32": ({}, "float32"),
    "momentum": ({"beta_1": 0.9}, "float32"),
    "largest": ({"factor_dims": "largest"}, "float32"),
    "excluded": ({"exclude": True}, "float32"),
    "float16": ({}, "float16"),
    "bfloat16": ({}, "bfloat16"),
    # One variable rounded stochastically: its noise is its optimizer's.
    "bfloat16-rounded": ({"stochastic_rounding": True}, "mixed"),
    "sparse": ({"sparse": True}, "float32"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_grouped_step_is_the_step_of_each_variable(case):
    """The variables of a model stepped by one optimizer, which steps the
    small ones of a kind together, end where each stepped by an optimizer of
    its own ends, to float32's rounding; and where the float64 oracle ends.
    The step is taken in fewer calls than there are variables."""
    options, dtype = CASES[case]
    options = dict(options, learning_rate=0.1, relative_step=False)
    exclude, sparse = options.pop("exclude", False), options.pop("sparse", False)
    if sparse and BACKEND == "torch":
        pytest.skip("no sparse gradients here")
    dtypes = [dtype] * len(SHAPES)
    if dtype == "mixed":
        dtypes = ["float32"] * len(SHAPES)
        dtypes[1] = "bfloat16"
    x0s, grads = _problem(dtypes[0] if dtype != "mixed" else "float32")
    x0s[1] = to_numpy(keras.ops.cast(x0s[1], dtypes[1]))
    excluded = {0, 7} if exclude else set()
    sparse = {2} if sparse else set()

    def make(variables, indices):
        keras.utils.set_random_seed(5)  # the same noise for the one rounded
        optimizer = Adafactor(**options)
        if exclude:
            chosen = [v for v, i in zip(variables, indices) if i in excluded]
            optimizer.exclude_from_factoring(var_list=chosen)
        return optimizer

    everything = range(len(SHAPES))
    together, calls = _run(make, everything, x0s, grads, dtypes, sparse)
    alone = [_run(make, [i], x0s, grads, dtypes, sparse)[0][0] for i in everything]
    assert calls < len(SHAPES)
    for i, shape in enumerate(SHAPES):
        # A 16-bit weight can round the other way where float32 differs by
        # an ulp; the rounded one draws the same noise either way.
        low = dtypes[i] != "float32" and dtype != "mixed"
        assert max_rel_diff(together[i], alone[i]) <= (1e-2 if low else 5e-7), shape
        if dtypes[i] == "float32" and i not in sparse:
            want = oracle.trajectory(
                x0s[i],
                [g[i] for g in grads],
                factored=i not in excluded,
                **{k: v for k, v in options.items() if k != "stochastic_rounding"},
            )
            assert max_rel_diff(together[i], want[-1]) <= TOLERANCE, shape


# Small variables grouped, one of more than a block (reduced and, on torch,
# written in blocks), and one of a shape of its own.
WAITLESS = [(8, 8)] * 3 + [(8,)] * 2 + [(1024, 600), (3, 5)]


@pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow's steps are graphs")
@pytest.mark.parametrize("options", [{}, {"beta_1": 0.9, "record_statistics": True}])
def test_a_step_waits_for_no_result_of_the_device(monkeypatch, options):
    """No value of a tensor is read on the host inside a step, where the
    host would wait for the device: no item(), bool() or nonzero() on torch
    (eager, as Keras runs it), no transfer on JAX (jit, as fit() runs it).
    (torch's rows of an embedding's gradient are found on a CPU alone, and
    skip_nonfinite decides on the host, as a LossScaleOptimizer does.)"""
    rng = np.random.default_rng(9)
    variables = [
        keras.Variable(rng.standard_normal(s).astype("float32")) for s in WAITLESS
    ]
    grads = [
        keras.ops.convert_to_tensor(rng.standard_normal(s), "float32") for s in WAITLESS
    ]
    optimizer = Adafactor(**options)
    optimizer.build(variables)
    if BACKEND == "torch":
        # As on a GPU, where the rows of an embedding's gradient are not
        # looked for (on a CPU they are, on the host: nothing waits there).
        monkeypatch.setattr(backend, "nonzero_rows", lambda gradient: None)
        with _NoWait():
            optimizer.apply(grads, variables)
    else:
        import jax

        step = jax.jit(optimizer.stateless_apply)
        state = [v.value for v in optimizer.variables]
        values = [v.value for v in variables]
        with jax.transfer_guard("disallow"):
            values, state = step(state, grads, values)
            jax.block_until_ready(values)
    assert int(to_numpy(optimizer.iterations if BACKEND == "torch" else state[0])) == 1


class _NoWait:
    """torch operations that read a tensor's value on the host refused."""

    def __enter__(self):
        import torch

        class Mode(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, "__name__", "")
                if name in (
                    "item",
                    "__bool__",
                    "tolist",
                    "nonzero",
                    "__int__",
                    "__float__",
                ):
                    raise AssertionError(f"the step read a tensor on the host: {name}")
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        return self.mode.__enter__()

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)
