"""How the step is made, where a measurement chose it: large matrices
reduced (and on torch updated) in blocks, with no temporary of their size
(bench/, sections b, d and f); an embedding's rows read and written alone
(section f); TensorFlow's reads of a sparsely written variable (section f).

These tests reach inside: they shrink the block and watch the backend's
operations. They run once, on the backend they are about (mark
`implementation`)."""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor, _limits, backend, reductions
from helpers import (
    BACKEND,
    TOLERANCE,
    apply_steps,
    compiled_trajectory,
    fit_small_model,
    max_rel_diff,
    random_problem,
    to_numpy,
)

pytestmark = pytest.mark.implementation

# With a block of 6 elements: blocks of one row (5, 7), of three rows and a
# rest of one (7, 2); one block (2, 3); rank 3 and rank 1 are not split.
BLOCKED = [(5, 7), (7, 2), (2, 3), (2, 3, 4), (9,)]


@pytest.mark.parametrize(
    "compiler, dtype",
    [("eager", "float32"), ("eager", "bfloat16"), ("default", "float32")],
    ids=["eager", "eager-bfloat16", "compiled"],
)
def test_large_matrices_are_reduced_in_blocks(monkeypatch, compiler, dtype):
    """A matrix larger than a block is reduced block by block (and on torch
    updated in place, block by block); the result is the float64 oracle's."""
    if compiler != "eager" and BACKEND == "torch":
        pytest.skip("torch.compile unrolls the blocks here (80 s); test_compiled")
    monkeypatch.setattr(_limits, "BLOCK", 6)
    seen = []
    square = backend.squares

    def spy(x, *args):
        seen.append(tuple(x.shape))
        return square(x, *args)

    monkeypatch.setattr(backend, "squares", spy)
    written = []
    subtract = backend.subtract_product

    def spy_write(variable, *args):
        done = subtract(variable, *args)
        if done:
            written.append(tuple(variable.shape))
        return done

    monkeypatch.setattr(backend, "subtract_product", spy_write)
    x0s, grads = random_problem(BLOCKED, steps=5, seed=3)
    x0s = [to_numpy(keras.ops.cast(x, dtype)) for x in x0s]
    optimizer = Adafactor(learning_rate=0.05)
    if dtype == "float32":
        got = compiled_trajectory(optimizer, x0s, grads, compiler)
    else:
        got = apply_steps(optimizer, x0s, grads, dtype=dtype)[-1]
    assert {(1, 7), (3, 2), (1, 2), (2, 3)} <= set(seen)
    assert all(np.prod(s) <= 7 for s in seen if len(s) == 2)
    # torch writes the blocked matrices in place; the others fuse the update.
    assert written == ([(5, 7), (7, 2)] * 5 if BACKEND == "torch" else [])
    tolerance = TOLERANCE if dtype == "float32" else 3e-2
    for i, shape in enumerate(BLOCKED):
        want = oracle.trajectory(x0s[i], [g[i] for g in grads], learning_rate=0.05)
        assert max_rel_diff(got[i], want[-1]) <= tolerance, shape


def test_a_gradient_with_rows_unknown_when_traced_is_reduced_whole(monkeypatch):
    """TensorFlow traces an embedding's sparse gradient with an unknown
    number of rows; it is not split, and training goes on."""
    monkeypatch.setattr(_limits, "BLOCK", 6)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (40, 3))  # batches of 16, 16 and 8
    y = rng.standard_normal((40, 1))
    layers = [
        keras.layers.Embedding(50, 4),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(1),
    ]
    _, losses = fit_small_model(Adafactor(), layers, x, y, epochs=2, jit_compile=False)
    assert np.all(np.isfinite(losses))


@pytest.mark.skipif(BACKEND != "torch", reason="torch's dense embedding gradients")
@pytest.mark.parametrize(
    "rows", ["few", "tiny", "none", "most", "most-past-the-sample", "with-a-nan"]
)
def test_a_dense_gradient_touching_few_rows_is_applied_at_those_rows(monkeypatch, rows):
    """torch gives an embedding a dense gradient, zero outside a few rows:
    the step reads and writes only the rows that are not all zero (a row
    whose one entry is tiny and negative among them; none at all, too), and
    is the dense step, the float64 oracle's. Where most rows are touched,
    also where a sample of the rows finds few, and where a gradient is not
    finite, the dense step is taken."""
    monkeypatch.setattr(_limits, "BLOCK", 6)
    written = []
    subtract_rows = backend.subtract_rows

    def spy(optimizer, variable, indices, *args):
        written.append(sorted(to_numpy(indices).tolist()))
        subtract_rows(optimizer, variable, indices, *args)

    monkeypatch.setattr(backend, "subtract_rows", spy)
    rng = np.random.default_rng(2)
    n, steps = 128, 4
    touched = {
        "none": [],
        "most": list(range(80)),
        # The 64 rows sampled (every other one) are all even, and untouched.
        "most-past-the-sample": list(range(1, n, 2)) + [4, 8],
    }.get(rows, [0, 2, 5, 40, 63])
    x0 = rng.standard_normal((n, 4)).astype("float32")
    grads = []
    for _ in range(steps):
        g = np.zeros((n, 4), "float32")
        g[touched] = rng.standard_normal((len(touched), 4))
        if 2 in touched:
            g[2] = [0, 0, {"with-a-nan": np.nan, "tiny": -1e-30}.get(rows, 1.0), 0]
        grads.append([g])
    optimizer = Adafactor(learning_rate=0.1)
    got = apply_steps(optimizer, [x0], grads)[-1][0]
    few = rows in ("few", "tiny", "none")
    assert written == ([touched] * steps if few else [])
    if rows == "with-a-nan":  # as the dense step: NaN everywhere
        assert np.isnan(got).all()
        return
    untouched = [i for i in range(n) if i not in touched]
    np.testing.assert_array_equal(got[untouched], x0[untouched])
    want = oracle.trajectory(x0, [g[0] for g in grads], learning_rate=0.1)[-1]
    assert max_rel_diff(got, want) <= TOLERANCE


def _tensorflow_ops(fn):
    """The operations of tf.function(fn)'s graph, its functions' too, in
    the order they are listed."""
    import tensorflow as tf

    graph = tf.function(fn).get_concrete_function().graph.as_graph_def()
    nodes = list(graph.node)
    nodes += [n for f in graph.library.function for n in f.node_def]
    return [node.op for node in nodes]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's variables")
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("scale", [1.0, 6e18], ids=["plain", "sum-overflows"])
def test_rms_of_a_sparsely_written_variable_is_read_whole(
    monkeypatch, jit_compile, scale
):
    """RMS(x) of a variable TensorFlow has written sparsely is read whole
    outside XLA, with one dense read and no switch of its copy mode (which
    XLA cannot compile), or block by block through gathers where the sum of
    the squares overflows float32 while their mean does not, and inside XLA
    (bench/, section b); it is the RMS of the variable's current value,
    after every kind of write."""
    import tensorflow as tf

    monkeypatch.setattr(_limits, "BLOCK", 6)
    rng = np.random.default_rng(5)
    x = scale * (1 + rng.random((7, 2))) * rng.choice([-1, 1], (7, 2))
    variable = keras.Variable(x.astype("float32"))

    def rms():
        return reductions.root_mean_square(variable, "float32")

    if not jit_compile:  # one dense read; gathers besides
        ops = _tensorflow_ops(rms)
        assert ops.count("ReadVariableOp") == 1 and "ResourceGather" in ops
        assert "DisableCopyOnRead" not in ops
    compiled = tf.function(rms, jit_compile=jit_compile)
    # Which reduction runs: the scaled one by gathers only where the sum of
    # the squares overflows, outside XLA.
    scaled = []
    reduce = reductions._norm_by_blocks

    def by_blocks(x, dtype, scale=1.0):
        scaled.append(scale != 1.0)
        return reduce(x, dtype, scale)

    monkeypatch.setattr(reductions, "_norm_by_blocks", by_blocks)
    rms()
    assert any(scaled) == (scale > 1)

    def expected():
        x = variable.numpy().astype(np.float64)
        return np.sqrt(np.mean(x**2))

    writes = [
        lambda: variable.value.scatter_sub(
            tf.IndexedSlices(tf.fill((2, 2), scale), tf.constant([1, 5]))
        ),
        lambda: variable.assign(variable * 0.9),
        lambda: variable.assign_sub(tf.fill((7, 2), 0.5 * scale)),
    ]
    for write in writes:
        write()
        with np.errstate(over="ignore"):
            overflows = np.isinf(np.sum(np.square(variable.numpy())))
        assert overflows == (scale > 1)  # what the case is there for
        np.testing.assert_allclose(float(compiled()), expected(), rtol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's variables")
def test_a_sparse_write_leaves_the_variable_readable_without_a_copy():
    """After its sparse write of an embedding, the step turns copy-on-read
    mode (in which every dense read, the next forward pass's, copies the
    variable) back off: a DisableCopyOnRead that runs after the scatter."""
    import tensorflow as tf

    variable = keras.Variable(np.ones((8, 3), "float32"))
    optimizer = Adafactor()
    optimizer.build([variable])
    gradient = tf.IndexedSlices(tf.ones((2, 3)), tf.constant([1, 5]), (8, 3))
    step = tf.function(lambda: optimizer.apply([gradient], [variable]))
    graph = step.get_concrete_function().graph.as_graph_def()
    nodes = {node.name: node for node in graph.node}

    def after(name, op_type):  # whether `name` runs after an op of op_type
        seen, todo = set(), [name]
        while todo:
            node = nodes.get(todo.pop().lstrip("^").split(":")[0])
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op == op_type and node.name != name:
                return True
            todo.extend(node.input)
        return False

    disables = [n for n, node in nodes.items() if node.op == "DisableCopyOnRead"]
    assert any(after(n, "ResourceScatterSub") for n in disables)
    step()  # and a dense read after it sees the step's rows
    x = to_numpy(variable)
    assert np.all(x[[1, 5]] < 1) and np.all(x[[0, 2, 3, 4, 6, 7]] == 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
@pytest.mark.parametrize("where", [0, 17, -1])
def test_all_finite_finds_any_non_finite_entry(bad, where):
    x = np.random.default_rng(8).standard_normal((6, 5)).astype("float32")
    x[0, 0] = 3e38  # finite, and its square or a sum could overflow
    if bad is not None:
        x.flat[where] = bad
    got = to_numpy(backend.all_finite(keras.ops.convert_to_tensor(x)))
    assert bool(got) == (bad is None)
