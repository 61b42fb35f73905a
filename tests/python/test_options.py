"""Options beyond keras.optimizers.Adafactor: momentum, parameter scaling,
what is factored, the decay offset, stochastic rounding of bfloat16, and the
second-moment decay (a cap, or a constant beta_2 with bias correction), and
the axes a variable is factored over.
(What each option keeps as state is tested in test_memory.py.)"""

import keras
import numpy as np
import pytest

import oracle
from adafactor import Adafactor
from helpers import (
    TOLERANCE,
    apply_steps,
    fit_small_model,
    max_rel_diff,
    random_problem,
    saved_variables,
    to_numpy,
)
from tools.harness import state_variables

# (6, 3, 5) and (2, 7, 4, 3) are factored over other axes than their last two
# with factor_dims="largest".
SHAPES = [(6, 5), (5, 8), (7,), (3, 4, 5), (6, 3, 5), (2, 7, 4, 3)]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(beta_1=0.9),
        dict(scale_parameter=False),
        dict(min_dim_size_to_factor=6),
        dict(factored=False),
        dict(decay_offset=3),
        dict(beta_1=0.5, momentum_dtype="float32", scale_parameter=False),
        dict(beta_2_cap=0.6),
        dict(beta_2=0.7),
        dict(beta_2=0.999, beta_2_cap=0.9, decay_offset=2),
        dict(factor_dims="largest"),
        dict(factor_dims="largest", min_dim_size_to_factor=4, beta_1=0.9),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_options_match_the_extended_oracle(kwargs):
    x0s, grads = random_problem(SHAPES, steps=12, seed=31)
    args = dict(learning_rate=0.05, relative_step=False, **kwargs)
    got = apply_steps(Adafactor(**args), x0s, grads)
    args.pop("momentum_dtype", None)
    for i, shape in enumerate(SHAPES):
        want = oracle.trajectory(x0s[i], [g[i] for g in grads], **args)
        assert max_rel_diff(got[-1][i], want[-1]) <= TOLERANCE, shape
    # Each option changes the trajectory of some variable.
    plain = apply_steps(Adafactor(learning_rate=0.05, relative_step=False), x0s, grads)
    assert max(max_rel_diff(a, b) for a, b in zip(got[-1], plain[-1])) > 1e-3


def optax_trajectory(x0s, grads, **kwargs):
    """optax.adafactor's path; skips only the test that asks for it."""
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    tx = optax.adafactor(min_dim_size_to_factor=1, **kwargs)
    params = [jnp.asarray(x, jnp.float32) for x in x0s]
    state = tx.init(params)
    for step_grads in grads:
        g = [jnp.asarray(x, jnp.float32) for x in step_grads]
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return [np.asarray(p, np.float64) for p in params]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ({}, {}),
        (dict(beta_1=0.9), dict(momentum=0.9)),
        (dict(scale_parameter=False), dict(multiply_by_parameter_scale=False)),
        (dict(decay_offset=0, beta_2_decay=-0.6), dict(decay_rate=0.6)),
    ],
    ids=["plain", "momentum", "no-parameter-scale", "decay-rate"],
)
def test_optax_agrees_where_the_algorithms_coincide(ours, theirs):
    shapes = [(6, 5), (4, 7), (9,)]
    x0s, grads = random_problem(shapes, steps=25, seed=32)
    got = apply_steps(
        Adafactor(learning_rate=0.02, relative_step=False, **ours), x0s, grads
    )[-1]
    want = optax_trajectory(x0s, grads, learning_rate=0.02, **theirs)
    for shape, a, b in zip(shapes, got, want):
        assert max_rel_diff(a, b) <= 1e-5, shape


def test_optax_agrees_on_factoring_the_two_largest_dimensions():
    # optax factors the two largest dimensions; (4, 4, 2), (4, 2, 2) and
    # (5, 3, 3, 1) have ties, the last two between the second and third.
    shapes = [(6, 3, 5), (3, 8, 5), (2, 6, 4, 5), (4, 4, 2), (4, 2, 2), (5, 3, 3, 1)]
    shapes.append((5, 7))
    x0s, grads = random_problem(shapes, steps=25, seed=33)
    args = dict(learning_rate=0.02, relative_step=False)
    got = apply_steps(Adafactor(factor_dims="largest", **args), x0s, grads)[-1]
    want = optax_trajectory(x0s, grads, learning_rate=0.02)
    last = apply_steps(Adafactor(**args), x0s, grads)[-1]
    for shape, a, b, c in zip(shapes, got, want, last):
        assert max_rel_diff(a, b) <= 1e-5, shape
        # Where the largest are not the last two, the last two differ.
        differs = sorted(np.argsort(shape)[-2:]) != [len(shape) - 2, len(shape) - 1]
        assert (max_rel_diff(c, b) > 1e-3) == differs, shape


def _constant_gradient_run(dtype, stochastic_rounding, steps=100):
    keras.utils.set_random_seed(0)
    x = keras.Variable(np.ones((64, 64)), dtype=dtype)
    g = keras.ops.convert_to_tensor(np.ones((64, 64), "float32"))
    opt = Adafactor(
        learning_rate=1e-3,
        relative_step=False,
        stochastic_rounding=stochastic_rounding,
    )
    for _ in range(steps):
        opt.apply([g], [x])
    return float(np.mean(1.0 - to_numpy(x)))


def test_stochastic_rounding_keeps_bfloat16_on_course():
    reference = _constant_gradient_run("float32", False)
    nearest = _constant_gradient_run("bfloat16", False)
    stochastic = _constant_gradient_run("bfloat16", True)
    assert reference > 0.05
    assert nearest < 0.5 * reference  # steps below half an ulp are lost
    assert abs(stochastic - reference) <= 0.1 * reference


def test_stochastic_rounding_is_reproducible():
    a = _constant_gradient_run("bfloat16", True, steps=5)
    b = _constant_gradient_run("bfloat16", True, steps=5)
    assert a == b


EVERY_OPTION = dict(
    beta_1=0.8,
    momentum_dtype="bfloat16",
    scale_parameter=False,
    min_dim_size_to_factor=4,
    factored=True,
    decay_offset=10,
    stochastic_rounding=True,
    beta_2_cap=0.95,
    beta_2=0.999,
    factor_dims="largest",
    skip_nonfinite=True,
    record_statistics=True,
)


def test_options_survive_config_and_save(tmp_path):
    optimizer = Adafactor(**EVERY_OPTION)
    config = optimizer.get_config()
    for key, value in EVERY_OPTION.items():
        assert config[key] == value
    assert Adafactor.from_config(config).get_config() == config

    x, y = np.ones((8, 4)), np.ones((8, 8))
    model, _ = fit_small_model(optimizer, [keras.layers.Dense(8)], x, y, epochs=2)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config() == config
    for a, b in zip(
        saved_variables(loaded.optimizer), saved_variables(model.optimizer)
    ):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_bfloat16_weights_train_with_stochastic_rounding_in_fit():
    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
    model, losses = fit_small_model(
        Adafactor(learning_rate=0.05, stochastic_rounding=True),
        [keras.layers.Dense(1, dtype="bfloat16")],
        x,
        epochs=10,
    )
    assert model.layers[0].kernel.dtype == "bfloat16"
    assert np.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution")
@pytest.mark.parametrize(
    "factor_dims, r_axes, c_axes",
    [
        # (rows of 6, heads of 3, 5 per head), sharded by heads.
        ("last", (None, "model"), (None, None)),
        # The largest are axes 0 and 2: heads become the batch axis.
        ("largest", ("model", None), ("model", None)),
    ],
)
def test_sharded_statistics_follow_the_factored_axes(factor_dims, r_axes, c_axes):
    devices = keras.distribution.list_devices()[:1]
    mesh = keras.distribution.DeviceMesh((1, 1), ["batch", "model"], devices)
    layouts = keras.distribution.LayoutMap(mesh)
    layouts[".*kernel"] = (None, "model", None)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")
    )
    try:
        layer = keras.layers.EinsumDense("ab,bcd->acd", (3, 5), name="attention")
        layer.build((2, 6))
        optimizer = Adafactor(factor_dims=factor_dims)
        optimizer.build(layer.trainable_variables)
    finally:
        keras.distribution.set_distribution(None)
    r, c = optimizer.variables[2:4]
    assert (tuple(r._layout.axes), tuple(c._layout.axes)) == (r_axes, c_axes)


def test_variables_excluded_from_factoring_keep_a_full_second_moment():
    """By name (a regular expression searched for in the name, as Keras's
    exclude_from_weight_decay) and by variable: those keep v and step as the
    oracle's unfactored Adafactor, the others as its factored one."""
    x0s, grads = random_problem(SHAPES, steps=8, seed=34)
    variables = [keras.Variable(x, name=f"x{i}") for i, x in enumerate(x0s)]
    optimizer = Adafactor(learning_rate=0.05, relative_step=False)
    optimizer.exclude_from_factoring(var_list=[variables[4]], var_names="^x[03]$")
    for step_grads in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
    excluded = {0, 3, 4}
    kinds = [v.name[-1] for v in state_variables(optimizer)]
    assert kinds == ["v", "r", "c", "v", "v", "v", "r", "c"]
    for i, shape in enumerate(SHAPES):
        want = oracle.trajectory(
            x0s[i],
            [g[i] for g in grads],
            learning_rate=0.05,
            relative_step=False,
            factored=i not in excluded,
        )
        assert max_rel_diff(to_numpy(variables[i]), want[-1]) <= TOLERANCE, shape


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(var_names=["bias", 3]),
            TypeError,
            r"`var_names` must be a list of strings",
        ),
        (dict(var_names=5), TypeError, r"`var_names` must be .* Received: var_names=5"),
        (dict(var_names=["ker[nel"]), ValueError, r"regular expressions.*'ker\[nel'"),
        (dict(var_list=keras.Variable(1.0)), TypeError, r"`var_list` must be a list"),
    ],
    ids=["not-a-string", "not-a-list", "not-a-pattern", "one-variable"],
)
def test_exclude_from_factoring_names_what_it_refuses(kwargs, error, message):
    with pytest.raises(error, match=message):
        Adafactor().exclude_from_factoring(**kwargs)


def test_exclude_from_factoring_is_refused_after_build():
    optimizer = Adafactor()
    optimizer.build([keras.Variable(np.zeros((3, 4)))])
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_factoring(var_names=["kernel"])


def test_exclusions_from_factoring_are_saved(tmp_path):
    """A loaded model's optimizer keeps a full second moment for the same
    variables, named or listed, and loads its state whole."""
    x = np.random.default_rng(35).integers(0, 20, (32, 4))
    y = np.ones((32, 3), "float32")
    layers = [
        keras.layers.Embedding(20, 6, name="tokens"),
        keras.layers.Flatten(),
        keras.layers.Dense(5, name="hidden"),
        keras.layers.Dense(3, name="out"),
    ]
    model = keras.Sequential([keras.Input((4,), dtype="int32"), *layers])
    optimizer = Adafactor(learning_rate=0.05)
    optimizer.exclude_from_factoring(var_list=[layers[3].kernel], var_names="embed")
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert [v.name[-1] for v in state_variables(optimizer)] == list("vrcvvv")
    config = optimizer.get_config()
    assert config["exclude_from_factoring"] == {
        "var_names": ["embed"],
        "variables": [{"path": layers[3].kernel.path, "shape": [5, 3]}],
    }
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config() == config
    for a, b in zip(saved_variables(loaded.optimizer), saved_variables(optimizer)):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    model.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert max_rel_diff(a, b) <= 1e-6


def test_variables_listed_before_build_are_saved_by_path():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    optimizer = Adafactor()
    optimizer.exclude_from_factoring(var_list=[layer.kernel])
    config = optimizer.get_config()
    assert config["exclude_from_factoring"] == {
        "var_names": [],
        "variables": [{"path": layer.kernel.path, "shape": [4, 3]}],
    }


def _dense_stack():
    model = keras.Sequential(
        [keras.Input((4,))] + [keras.layers.Dense(4, name=f"d{i}") for i in range(3)]
    )
    return model, [layer.kernel for layer in model.layers]


def _kinds(optimizer):
    """The state kept for each variable, in order: "rc" or "v"."""
    kinds = "".join(v.name[-1] for v in state_variables(optimizer))
    return kinds.replace("rc", "f")


def test_an_exclusion_follows_its_variable_when_the_variables_change():
    """A config saved with d1's kernel excluded, given to a model whose d0
    is frozen: d1's kernel keeps its full second moment, not the variable
    now at its position (d2's kernel)."""
    model, kernels = _dense_stack()
    optimizer = Adafactor()
    optimizer.exclude_from_factoring(var_list=[kernels[1]])
    config = optimizer.get_config()
    model.layers[0].trainable = False
    loaded = Adafactor.from_config(config)
    loaded.build(model.trainable_variables)
    # d1's kernel, d1's bias, d2's kernel, d2's bias.
    assert _kinds(loaded) == "vvfv"


def test_an_exclusion_that_matches_no_variable_is_warned_of():
    model, kernels = _dense_stack()
    optimizer = Adafactor()
    optimizer.exclude_from_factoring(var_list=[kernels[1]], var_names=["nowhere"])
    config = optimizer.get_config()
    config["exclude_from_factoring"]["variables"][0]["shape"] = [4, 5]
    loaded = Adafactor.from_config(config)
    with pytest.warns(UserWarning) as caught:
        loaded.build(model.trainable_variables)
    messages = " ".join(str(w.message) for w in caught)
    assert f"no variable is {kernels[1].path!r} of shape (4, 5)" in messages
    assert "the pattern 'nowhere' of var_names matches no variable" in messages
    assert _kinds(loaded) == "fvfvfv"


def test_var_names_match_a_variables_path_too():
    """ "d1" is in the path of d1's variables, not in their names."""
    model, kernels = _dense_stack()
    optimizer = Adafactor()
    optimizer.exclude_from_factoring(var_names="d1")
    optimizer.build(model.trainable_variables)
    assert _kinds(optimizer) == "fvvvfv"


def test_a_config_saved_with_positions_still_loads():
    """Configs saved before exclusions were saved by path held positions."""
    model, _ = _dense_stack()
    config = Adafactor().get_config()
    config["exclude_from_factoring"] = {"var_names": [], "positions": [2]}
    loaded = Adafactor.from_config(config)
    loaded.build(model.trainable_variables)
    assert _kinds(loaded) == "fvvvfv"
