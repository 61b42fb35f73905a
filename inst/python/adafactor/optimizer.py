"""Adafactor for Keras 3, with factored second moments and nothing else.

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost", https://arxiv.org/abs/1804.04235.

For a variable of rank >= 2 the optimizer keeps only the running means of the
squared gradient over its last axis (``r``, shape ``shape[:-1]``) and over its
second-to-last axis (``c``, shape ``shape[:-2] + shape[-1:]``): Algorithm 4 of
the paper with the factorisation of Section 3 applied to the last two
dimensions. Variables of rank 0 and 1 keep a full second moment ``v``
(Algorithm 2). Nothing else is stored per variable.

The rank-1 estimate ``V = r c / mean(r)`` is never built. The gradient is
scaled by a row factor ``rsqrt(r / mean(r))`` and a column factor
``rsqrt(c)`` instead, which gives the same update while avoiding a
parameter-sized temporary, and while staying finite where ``V`` underflows to
zero (a gradient with an all-zero row and column).
"""

import numbers

import keras
from keras import ops

_LOW_PRECISION = ("float16", "bfloat16")


def _factored(dims):
    """Row and column parts of a variable's shape (or sharding axes).

    Section 3 of the paper factors a matrix's second moment into row and
    column means; higher-rank variables are factored over their last two
    axes. Returns None for rank 0 and 1, which are not factored.
    """
    dims = tuple(dims)
    if len(dims) < 2:
        return None
    return dims[:-1], dims[:-2] + dims[-1:]


def _factored_layouts(layout):
    """Layouts of r and c derived from the variable's, the reduced axis
    dropped, so that a sharded kernel gets sharded statistics."""
    axes = getattr(layout, "axes", None)
    if axes is None:
        return None, None
    mesh = layout.device_mesh
    row, col = _factored(axes)
    return (
        keras.distribution.TensorLayout(row, mesh),
        keras.distribution.TensorLayout(col, mesh),
    )


def _state_dtype(dtype):
    """Statistics and update are computed in float32 for 16-bit variables."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in _LOW_PRECISION else dtype


def _dense(gradient, shape):
    """A sparse gradient as a dense tensor.

    The factored statistics need every row and column of the gradient, so
    TensorFlow's IndexedSlices are summed into their dense shape (duplicate
    indices add up), and other sparse tensors (JAX's BCOO, TensorFlow's
    SparseTensor) are densified.
    """
    if type(gradient).__name__ == "IndexedSlices":
        return ops.segment_sum(gradient.values, gradient.indices, num_segments=shape[0])
    return ops.convert_to_tensor(gradient, sparse=False)


def _rms(x):
    return ops.sqrt(ops.mean(ops.square(x)))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value):
    return _is_real(value) and float(value).is_integer()


def _check(name, value, ok, allowed, *, none_ok=False, kind=_is_real):
    """Raise a TypeError or ValueError naming the argument and its value."""
    if value is None and none_ok:
        return
    if not kind(value):
        raise TypeError(
            f"Argument `{name}` must be {allowed}"
            f"{' or None' if none_ok else ''}. Received: {name}={value!r}"
        )
    if not ok(value):
        raise ValueError(
            f"Argument `{name}` must be {allowed}"
            f"{' or None' if none_ok else ''}. Received: {name}={value!r}"
        )


def _finite(x):
    return float("-inf") < float(x) < float("inf")


def _validate(args):
    """Check the constructor's arguments; `args` maps names to values."""
    lr = args["learning_rate"]
    if _is_real(lr):
        _check(
            "learning_rate",
            lr,
            lambda x: _finite(x) and x > 0,
            "a number > 0, a LearningRateSchedule or a callable",
        )
    elif not callable(lr):
        raise TypeError(
            "Argument `learning_rate` must be a number > 0, a "
            "LearningRateSchedule or a callable. "
            f"Received: learning_rate={lr!r}"
        )
    _check(
        "beta_2_decay",
        args["beta_2_decay"],
        lambda x: _finite(x) and x < 0,
        "a number < 0",
    )
    for name in ("epsilon_1", "epsilon_2"):
        _check(name, args[name], lambda x: _finite(x) and x >= 0, "a number >= 0")
    _check(
        "clip_threshold",
        args["clip_threshold"],
        lambda x: _finite(x) and x > 0,
        "a number > 0",
    )
    for name in ("relative_step", "use_ema"):
        _check(
            name,
            args[name],
            lambda x: True,
            "True or False",
            kind=lambda x: isinstance(x, bool),
        )
    for name in ("weight_decay", "clipvalue"):
        _check(
            name,
            args[name],
            lambda x: _finite(x) and x >= 0,
            "a number >= 0",
            none_ok=True,
        )
    for name in ("clipnorm", "global_clipnorm", "loss_scale_factor"):
        _check(
            name,
            args[name],
            lambda x: _finite(x) and x > 0,
            "a number > 0",
            none_ok=True,
        )
    _check(
        "ema_momentum",
        args["ema_momentum"],
        lambda x: 0 <= x <= 1,
        "a number in [0, 1]",
    )
    _check(
        "ema_overwrite_frequency",
        args["ema_overwrite_frequency"],
        lambda x: x >= 1,
        "a whole number >= 1",
        none_ok=True,
        kind=_is_whole,
    )
    _check(
        "gradient_accumulation_steps",
        args["gradient_accumulation_steps"],
        lambda x: x >= 2,
        "a whole number >= 2",
        none_ok=True,
        kind=_is_whole,
    )


def _as_int(value):
    return None if value is None else int(value)


@keras.saving.register_keras_serializable(package="adafactor")
class Adafactor(keras.optimizers.Optimizer):
    """Adafactor with sublinear memory (Shazeer & Stern, 2018).

    A drop-in replacement for `keras.optimizers.Adafactor`: same arguments,
    same defaults, and the same updates where Keras follows its documentation
    (`beta_2_t = 1 - t^beta_2_decay`, `epsilon_1` added to the squared
    gradient, the step scaled by `max(epsilon_2, RMS(x))`, the update clipped
    to `RMS <= clip_threshold`, the last two axes factored).

    It differs from `keras.optimizers.Adafactor` in three ways:

    - Memory. A variable of rank >= 2 keeps only its row statistic `r`
      (`shape[:-1]`) and column statistic `c` (`shape[:-2] + shape[-1:]`);
      Keras also keeps a full-size copy of the estimate for every variable.
    - Finiteness. The second-moment estimate is applied as a row factor times
      a column factor, so a gradient with an all-zero row and an all-zero
      column no longer turns the variable into NaN.
    - `relative_step`. As documented, the step size is
      `min(learning_rate, 1 / sqrt(t))` only when `learning_rate` is a
      constant and `relative_step=True`. With `relative_step=False` a constant
      rate stays constant, and a schedule or callable is used as it is; Keras
      applies the cap in every case.

    For float16 and bfloat16 variables the statistics are kept, and the update
    computed, in float32.

    Args:
        learning_rate: A float > 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no arguments and returns the value to use.
        beta_2_decay: Float < 0. The decay rate of `beta_2`:
            `beta_2_t = 1 - t^beta_2_decay`.
        epsilon_1: Float >= 0, added to the squared gradient.
        epsilon_2: Float >= 0, the least parameter scale the step is scaled by.
        clip_threshold: Float > 0. Updates are clipped to this RMS; part of
            Adafactor, independent of `clipnorm`, `clipvalue` and
            `global_clipnorm`.
        relative_step: Bool. If `learning_rate` is a constant and this is
            True, the step size is `min(learning_rate, 1 / sqrt(t))`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: as for every
            `keras.optimizers.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="adafactor",
        **kwargs,
    ):
        _validate(locals())
        if _is_real(learning_rate):
            learning_rate = float(learning_rate)
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=_as_int(ema_overwrite_frequency),
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=_as_int(gradient_accumulation_steps),
            **kwargs,
        )
        self.beta_2_decay = float(beta_2_decay)
        self.epsilon_1 = float(epsilon_1)
        self.epsilon_2 = float(epsilon_2)
        self.clip_threshold = float(clip_threshold)
        self.relative_step = relative_step

    def build(self, var_list):
        """Create `r` and `c` for variables of rank >= 2, `v` for the rest."""
        if self.built:
            return
        super().build(var_list)
        self._r, self._c, self._v = [], [], []
        for var in var_list:
            r = c = v = None
            if not self._overwrite_variable_with_gradient(var):
                shapes = _factored(var.shape)
                layout = getattr(var, "_layout", None)
                if shapes is None:
                    v = self._add_state(var, "v", var.shape, layout)
                else:
                    layouts = _factored_layouts(layout)
                    r = self._add_state(var, "r", shapes[0], layouts[0])
                    c = self._add_state(var, "c", shapes[1], layouts[1])
            self._r.append(r)
            self._c.append(c)
            self._v.append(v)

    def _add_state(self, var, suffix, shape, layout):
        """A zero-initialised statistic named `{variable path}_{suffix}`."""
        prefix = getattr(var, "path", None) or str(var.name)
        prefix = prefix.replace("/", "_").replace(":", "_")
        return self.add_variable(
            shape=shape,
            dtype=_state_dtype(var.dtype),
            name=f"{prefix}_{suffix}",
            layout=layout,
        )

    def _step_size(self, learning_rate, step, dtype):
        """rho_t: the learning rate, capped at 1/sqrt(t) as documented."""
        lr = ops.cast(learning_rate, dtype)
        constant = isinstance(self._learning_rate, keras.Variable)
        if constant and self.relative_step:
            lr = ops.minimum(lr, ops.rsqrt(step))
        return lr

    def update_step(self, gradient, variable, learning_rate):
        """One Adafactor step for one variable (Algorithms 2 and 4)."""
        if 0 in tuple(variable.shape):
            return
        index = self._get_variable_index(variable)
        r, c, v = self._r[index], self._c[index], self._v[index]
        dtype = _state_dtype(variable.dtype)
        g = ops.cast(_dense(gradient, variable.shape), dtype)
        x = ops.cast(variable, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta = 1.0 - ops.power(step, self.beta_2_decay)
        g2 = ops.square(g) + self.epsilon_1

        if v is None:
            new_r = beta * r + (1.0 - beta) * ops.mean(g2, axis=-1)
            new_c = beta * c + (1.0 - beta) * ops.mean(g2, axis=-2)
            self.assign(r, new_r)
            self.assign(c, new_c)
            row = ops.rsqrt(new_r / ops.mean(new_r, axis=-1, keepdims=True))
            col = ops.rsqrt(new_c)
            u = g * ops.expand_dims(row, -1) * ops.expand_dims(col, -2)
        else:
            new_v = beta * v + (1.0 - beta) * g2
            self.assign(v, new_v)
            u = g * ops.rsqrt(new_v)

        u = u / ops.maximum(1.0, _rms(u) / self.clip_threshold)
        alpha = self._step_size(learning_rate, step, dtype) * ops.maximum(
            self.epsilon_2, _rms(x)
        )
        self.assign_sub(variable, ops.cast(alpha * u, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold,
                "relative_step": self.relative_step,
            }
        )
        return config
