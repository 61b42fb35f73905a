"""Adafactor for Keras 3, with factored second moments and nothing else.

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost", https://arxiv.org/abs/1804.04235.

For a variable of rank >= 2 the optimizer keeps only the running means of the
squared gradient over its last axis (``r``, shape ``shape[:-1]``) and over its
second-to-last axis (``c``, shape ``shape[:-2] + shape[-1:]``): Algorithm 4 of
the paper with the factorisation of Section 3 applied to the last two
dimensions (or to the two largest, with ``factor_dims="largest"``, the
variable's axes taken in that order). Variables of rank 0 and 1 keep a full
second moment ``v`` (Algorithm 5). Nothing else is stored per variable.

The algorithm is `Adafactor.update_step`. Its reductions and writes, made
exact and fast on each backend, are in _kernels; row-sparse gradients in
_sparse; the rules of the arguments in _arguments; saving and loading in
_saving.
"""

import math
import re
import warnings
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from adafactor import _kernels
from adafactor._arguments import BETA_2_DECAY, as_int, is_real, validate
from adafactor._saving import holds, mismatch, pairing, restorable
from adafactor._sparse import coalesced, row_sparse, touched_rows

_LOW_PRECISION = ("float16", "bfloat16")

# What the last step did, one scalar each, with record_statistics (see
# Adafactor.statistics); not saved with the optimizer.
STATISTICS = {
    "adafactor_step_size": "float32",
    "adafactor_update_rms": "float32",
    "adafactor_clip_fraction": "float32",
    "adafactor_skipped_steps": "int",  # as `iterations`: int32 on JAX
}


class Decay(NamedTuple):
    """The step's second-moment decay beta_2_t, and epsilon_1.

    beta_2_t is 1 - t^beta_2_decay (Section 7.2), or, for a constant beta_2,
    beta_2 (1 - beta_2^(t-1)) / (1 - beta_2^t): the bias correction of
    Section 7.1 folded into the decay, as Mesh TensorFlow's
    `adafactor_decay_rate_adam`. Either is capped at beta_2_cap if one is
    given (big_vision's `beta2_cap`). t is counted from decay_offset.

    1 - beta_2_t is formed as itself, `share`: as 1 - beta it rounds to 0
    under a fast decay.
    """

    beta: object
    share: object
    epsilon_1: float

    @classmethod
    def at(cls, t, epsilon_1, beta_2_decay, beta_2=None, beta_2_cap=None):
        t = ops.maximum(t, 1.0)
        if beta_2 is None:
            share = ops.power(t, beta_2_decay)
        else:
            # 1 - beta_2_t = (1 - beta_2) / (1 - beta_2^t).
            share = (1.0 - beta_2) / -ops.expm1(t * math.log(beta_2))
        if beta_2_cap is not None:
            share = ops.maximum(share, 1.0 - beta_2_cap)
        return cls(1.0 - share, share, epsilon_1)

    def __call__(self, statistic, term=0.0):
        """beta statistic + (1 - beta)(G^2 + epsilon_1), where `term` is
        (1 - beta) G^2, formed by the caller without overflow."""
        new = self.beta * statistic + (term + self.share * self.epsilon_1)
        # >= epsilon_1 exactly; rounding and flush-to-zero could go below.
        return ops.maximum(new, self.epsilon_1)

    def squares(self, g):
        """(1 - beta) g^2, as (sqrt(1 - beta) g)^2."""
        return ops.square(g * ops.sqrt(self.share))


def _factored_axes(shape, factor_dims):
    """The order of a variable's axes with the two it is factored over last
    (in their own order), the others kept in front as batch axes.

    Section 3 of the paper factors a matrix. A variable of higher rank is
    factored over its last two axes ("last", as Keras and torch), or over its
    two largest ("largest", as optax and T5X, ties broken as optax breaks
    them, with NumPy's argsort). For a matrix both are its two axes.
    """
    rank = len(shape)
    if factor_dims == "last" or rank == 2:
        return tuple(range(rank))
    pair = sorted(int(a) for a in np.argsort(shape)[-2:])
    return tuple(a for a in range(rank) if a not in pair) + tuple(pair)


def _factored(dims, axes):
    """Row and column parts of a variable's shape (or sharding axes): R
    keeps every axis but the last of `axes`, C every one but the second to
    last."""
    dims = tuple(dims[a] for a in axes)
    return dims[:-1], dims[:-2] + dims[-1:]


def _factored_layouts(layout, axes):
    """Layouts of r and c derived from the variable's, the reduced axis
    dropped, so that a sharded kernel gets sharded statistics."""
    names = getattr(layout, "axes", None)
    if names is None:
        return None, None
    mesh = layout.device_mesh
    row, col = _factored(names, axes)
    return (
        keras.distribution.TensorLayout(row, mesh),
        keras.distribution.TensorLayout(col, mesh),
    )


def _state_dtype(dtype):
    """Statistics and update are computed in float32 for 16-bit variables."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in _LOW_PRECISION else dtype


def _all_finite(grads):
    """Whether every gradient is finite: one reduction over each (over the
    values of a sparse one)."""
    checks = []
    for g in grads:
        if g is not None and 0 not in tuple(g.shape):  # an empty one is finite
            rows = row_sparse(g)
            checks.append(_kernels.all_finite(g if rows is None else rows[1]))
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


def _identity(variable):
    """What identifies a variable across saving and loading: its path (or
    name) and its shape."""
    return _names(variable)[1], tuple(int(d) for d in variable.shape)


def _names(variable):
    return variable.name, getattr(variable, "path", None) or variable.name


def _same_variable(path, shape, variables):
    """The variable of `variables` that is the one of `path` and `shape`:
    of that shape, and whose path ends with the same components, as many as
    any other's, at least the layer's and the variable's (a loaded model's
    paths lose the model's name; a model made again in one session numbers
    it anew). None if no variable, or more than one, is that."""
    wanted = path.split("/")

    def common(variable):
        own = _names(variable)[1].split("/")
        count = 0
        while (
            count < min(len(own), len(wanted)) and own[-1 - count] == wanted[-1 - count]
        ):
            count += 1
        return count

    scores = [(common(v), v) for v in variables if _identity(v)[1] == shape]
    best = max((score for score, _ in scores), default=0)
    found = [v for score, v in scores if score == best]
    if best < min(2, len(wanted)) or len(found) != 1:
        return None
    return found[0]


def warn(message):
    """Warn with `message` as a UserWarning. The R package puts a function
    that calls R's warning() in its place, so that R code can catch it."""
    warnings.warn(message, UserWarning, stacklevel=3)


@keras.saving.register_keras_serializable(package="adafactor")
class Adafactor(keras.optimizers.Optimizer):
    """Adafactor with sublinear memory (Shazeer & Stern, 2018).

    A drop-in replacement for `keras.optimizers.Adafactor`: same arguments,
    same defaults, and the same updates where Keras follows its documentation
    (`beta_2_t = 1 - t^beta_2_decay`, `epsilon_1` added to the squared
    gradient, the step scaled by `max(epsilon_2, RMS(x))`, the update clipped
    to `RMS <= clip_threshold`, the last two axes factored).

    It differs from `keras.optimizers.Adafactor` in these ways:

    - Memory. A variable of rank >= 2 keeps only its row statistic `r`
      (`shape[:-1]`) and column statistic `c` (`shape[:-2] + shape[-1:]`);
      Keras also keeps a full-size copy of the estimate for every variable.
    - Finiteness. The second-moment estimate is applied as a row factor times
      a column factor, formed so that no intermediate falls below float32's
      normal range, and the statistics are kept >= `epsilon_1`: an all-zero
      gradient row no longer turns the variable into NaN on backends that
      flush subnormals to zero (TensorFlow, XLA, GPUs). No sum of squares
      overflows while the mean it stands for does not, and the update's RMS
      is taken from the update itself: a spike among small gradient entries
      leaves the step finite.
    - Sparse gradients. IndexedSlices and row BCOO gradients have their
      duplicate indices summed before squaring (and before Keras clips
      them), and only the touched rows of the variable are written (for a
      variable of rank <= 2; one of higher rank takes it dense).
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
        epsilon_1: Float in [2^-102, 2^126], added to the squared gradient.
            Squares below float32's least normal number, 2^-126, are lost; a
            smaller epsilon_1 would not outweigh them.
        epsilon_2: Float >= 0, the least parameter scale the step is scaled by.
        clip_threshold: Float >= 1.1754944e-38. Updates are clipped to this
            RMS; part of Adafactor, independent of `clipnorm`, `clipvalue` and
            `global_clipnorm`.
        relative_step: Bool. If `learning_rate` is a constant and this is
            True, the step size is `min(learning_rate, 1 / sqrt(t))`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps: as for every
            `keras.optimizers.Optimizer`.
        name: The optimizer's name, a valid TensorFlow name scope.

    Options beyond `keras.optimizers.Adafactor` (the defaults keep its
    documented behaviour):
        beta_1: None or a float in [0, 1). Momentum: an exponential moving
            average of the final update, in one parameter-sized buffer.
        momentum_dtype: The dtype of that buffer ("bfloat16" halves it).
        scale_parameter: Bool. False drops the `max(epsilon_2, RMS(x))`
            factor (optax's `multiply_by_parameter_scale`).
        min_dim_size_to_factor: None or an int >= 1. Factor a variable only
            when both of the dimensions it would be factored over (see
            `factor_dims`) are at least this size.
        factored: Bool. False keeps a full second moment for every variable.
        decay_offset: An int >= 0. The `beta_2` schedule counts steps from
            this iteration on (optax's `decay_offset`); before it, beta_2 = 0.
        stochastic_rounding: Bool. Round the new value of a bfloat16 variable
            stochastically rather than to nearest, so that updates smaller
            than half an ulp survive on average.
        beta_2_cap: None or a float in (0, 1). The decay is capped:
            `beta_2_t = min(beta_2_t, beta_2_cap)` (big_vision's
            `beta2_cap`; 0.999 there, lower against instabilities).
        beta_2: None or a float in (0, 1). A constant decay with the paper's
            bias correction: `beta_2_t = beta_2 (1 - beta_2^(t-1)) /
            (1 - beta_2^t)` (Mesh TensorFlow's `adafactor_decay_rate_adam`).
            When it is set, `beta_2_decay` is not used, and giving another
            `beta_2_decay` than the default is an error.
        factor_dims: "last" or "largest". The two axes a variable of rank 3
            or more is factored over: its last two (as Keras and torch), or
            its two largest (as optax and T5X; ties broken as optax breaks
            them), the others kept as batch axes. For a (768, 12, 64)
            attention kernel, "last" keeps 768*12 + 768*64 = 58,368
            statistics and "largest" 12*768 + 12*64 = 9,984.
        skip_nonfinite: Bool. With True, a step in which any gradient holds
            a NaN or an infinity changes nothing: no weight, statistic,
            momentum or `iterations` (T5X's `skip_nan_updates`), as a
            LossScaleOptimizer's skipped step. It costs one reduction over
            each gradient. Not under a tf.distribute strategy. The check is
            of the gradients given to apply(), before Keras divides them by
            loss_scale_factor or clips them.
        record_statistics: Bool. With True, each step records what it did:
            the step size rho_t, the RMS of the update before the clip
            (averaged over the variables), the fraction of variables clipped
            and the number of steps skipped, in four scalar variables (see
            `statistics()`, and `adafactor.StatisticsLogger`, which logs
            them in `fit()`).
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_2_decay=BETA_2_DECAY,
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
        beta_1=None,
        momentum_dtype="float32",
        scale_parameter=True,
        min_dim_size_to_factor=None,
        factored=True,
        decay_offset=0,
        stochastic_rounding=False,
        beta_2_cap=None,
        beta_2=None,
        factor_dims="last",
        skip_nonfinite=False,
        record_statistics=False,
        **kwargs,
    ):
        validate(locals())
        if is_real(learning_rate):
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
            ema_overwrite_frequency=as_int(ema_overwrite_frequency),
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=as_int(gradient_accumulation_steps),
            **kwargs,
        )
        self.beta_2_decay = float(beta_2_decay)
        self.epsilon_1 = float(epsilon_1)
        self.epsilon_2 = float(epsilon_2)
        self.clip_threshold = float(clip_threshold)
        self.relative_step = relative_step
        self.beta_1 = None if beta_1 is None else float(beta_1)
        self.momentum_dtype = momentum_dtype
        self.scale_parameter = scale_parameter
        self.min_dim_size_to_factor = as_int(min_dim_size_to_factor)
        self.factored = factored
        self.decay_offset = int(decay_offset)
        self.stochastic_rounding = stochastic_rounding
        self.beta_2_cap = None if beta_2_cap is None else float(beta_2_cap)
        self.beta_2 = None if beta_2 is None else float(beta_2)
        self.factor_dims = factor_dims
        self.skip_nonfinite = skip_nonfinite
        self.record_statistics = record_statistics
        self._deciding = False
        self._records = []  # (RMS(U_t), clip) per variable, in a step
        if stochastic_rounding:
            self._seed_generator = keras.random.SeedGenerator(name="rounding")
            self._track_variable(self._seed_generator.state)

    def exclude_from_factoring(self, var_list=None, var_names=None):
        """Keep a full second moment for some variables, as Keras's
        `exclude_from_weight_decay` chooses them: the variables of
        `var_list`, and those whose name or path contains a match of one of
        the regular expressions of `var_names`. Call it before the optimizer
        is built; a pattern that matches no variable then is warned of.

        The choice is saved with the optimizer: the listed variables by
        their paths and shapes, so that a loaded model's optimizer keeps its
        state for the same variables, whatever their order; one it cannot
        find there is warned of and factored."""
        if self.built:
            raise ValueError(
                "`exclude_from_factoring()` can only be configured before the "
                "optimizer is built."
            )
        if isinstance(var_names, str):  # one name, as R passes a string
            var_names = [var_names]
        if not isinstance(var_names, (list, tuple, type(None))) or any(
            not isinstance(name, str) for name in var_names or ()
        ):
            raise TypeError(
                "Argument `var_names` must be a list of strings (regular "
                f"expressions). Received: var_names={var_names!r}"
            )
        for name in var_names or ():
            try:
                re.compile(name)
            except re.error as error:
                raise ValueError(
                    "Argument `var_names` must be a list of regular expressions. "
                    f"Received: var_names={var_names!r}, where {name!r}: {error}"
                ) from None
        if var_list is not None and not isinstance(var_list, (list, tuple)):
            raise TypeError(
                "Argument `var_list` must be a list of variables. Received: "
                f"var_list of type {type(var_list).__name__}"
            )
        self._unfactored = {
            "keys": {self._var_key(v) for v in var_list or ()},
            "var_names": list(var_names or ()),
            "variables": [_identity(v) for v in var_list or ()],
            "positions": set(),  # a config saved before paths were
        }

    def _excluded(self, position, var):
        """Whether exclude_from_factoring() names the variable at `position`
        of the variables the optimizer is built for."""
        chosen = getattr(self, "_unfactored", None)
        if chosen is None:
            return False
        names = (var.name, getattr(var, "path", var.name))
        return (
            self._var_key(var) in chosen["keys"]
            or self._var_key(var) in chosen.get("found", ())
            or position in chosen["positions"]
            or any(re.search(p, n) for p in chosen["var_names"] for n in names)
        )

    def _find_exclusions(self, var_list):
        """Find the variables exclude_from_factoring() listed among those
        the optimizer is built for, by path and shape (see _same_variable),
        and warn of what it named and they do not hold."""
        chosen = getattr(self, "_unfactored", None)
        if chosen is None:
            return
        chosen["found"] = set()
        for path, shape in chosen["variables"]:
            var = _same_variable(path, shape, var_list)
            if var is None:
                warn(
                    f"exclude_from_factoring(): no variable is {path!r} of shape "
                    f"{shape}, which the optimizer was told to keep a full second "
                    "moment for; it is not among the variables it is built for."
                )
            else:
                chosen["found"].add(self._var_key(var))
        for pattern in chosen["var_names"]:
            if not any(re.search(pattern, n) for v in var_list for n in _names(v)):
                warn(
                    f"exclude_from_factoring(): the pattern {pattern!r} of var_names "
                    "matches no variable's name or path; nothing is excluded by it."
                )

    def _factor_axes(self, shape):
        """The axes a variable of this shape is factored over, last (see
        _factored_axes), or None if it keeps a full second moment."""
        shape = tuple(shape)
        if not self.factored or len(shape) < 2:
            return None
        axes = _factored_axes(shape, self.factor_dims)
        least = self.min_dim_size_to_factor
        if least is not None and min(shape[a] for a in axes[-2:]) < least:
            return None
        return axes

    def build(self, var_list):
        """Create `r` and `c` for variables of rank >= 2, `v` for the rest.
        A variable that is not of a floating-point dtype is refused."""
        if self.built:
            return
        for var in var_list:
            dtype = keras.backend.standardize_dtype(var.dtype)
            if "float" not in dtype:
                raise ValueError(
                    "Adafactor updates floating-point variables only. Received: "
                    f"variable {getattr(var, 'path', var.name)!r} of dtype {dtype}"
                )
        super().build(var_list)
        self._find_exclusions(var_list)
        self._r, self._c, self._v, self._m, self._axes = [], [], [], [], []
        for position, var in enumerate(var_list):
            r = c = v = m = axes = None
            if not self._overwrite_variable_with_gradient(var):
                layout = getattr(var, "_layout", None)
                if not self._excluded(position, var):
                    axes = self._factor_axes(var.shape)
                if axes is not None:
                    shapes = _factored(var.shape, axes)
                    layouts = _factored_layouts(layout, axes)
                    r = self._add_state(var, "r", shapes[0], layouts[0])
                    c = self._add_state(var, "c", shapes[1], layouts[1])
                else:
                    v = self._add_state(var, "v", var.shape, layout)
                if self.beta_1 is not None:
                    m = self._add_state(
                        var, "m", var.shape, layout, self.momentum_dtype
                    )
            self._r.append(r)
            self._c.append(c)
            self._v.append(v)
            self._m.append(m)
            self._axes.append(axes)
        self._statistics = {
            name: self.add_variable(
                (), dtype=dtype, aggregation="only_first_replica", name=name
            )
            for name, dtype in (STATISTICS.items() if self.record_statistics else ())
        }

    def _add_state(self, var, suffix, shape, layout, dtype=None):
        """A zero-initialised statistic named `{variable path}_{suffix}`."""
        prefix = getattr(var, "path", None) or str(var.name)
        prefix = prefix.replace("/", "_").replace(":", "_")
        return self.add_variable(
            shape=shape,
            dtype=dtype or _state_dtype(var.dtype),
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

    def apply(self, grads, trainable_variables=None):
        """As Keras's, but a sparse gradient is made dense first where an
        option of Keras's base optimizer cannot take it sparse, and has its
        duplicate indices summed first where Keras clips: the gradient is
        clipped, not its slices."""
        grads = list(grads)
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
        if any(getattr(self, o) for o in _kernels.options_needing_dense()):
            grads = [g if row_sparse(g) is None else _kernels.dense(g) for g in grads]
        elif self.clipnorm or self.global_clipnorm or self.clipvalue:
            variables = trainable_variables or self._trainable_variables
            grads = [coalesced(g, v.shape) for g, v in zip(grads, variables)]
        if not self.skip_nonfinite or self._deciding:
            return super().apply(grads, trainable_variables)
        # A step with a non-finite gradient is skipped whole, as a
        # LossScaleOptimizer skips it: no variable is written, `iterations`
        # included. The variables are made first: not inside a branch.
        _kernels.refuse_in_distributed_replica("skip_nonfinite=True")
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables or self._trainable_variables)
        _kernels.cond(
            _all_finite(grads),
            lambda: self._decided(
                super(Adafactor, self).apply, grads, trainable_variables
            ),
            self._skip,
        )

    def _skip(self):
        if self.record_statistics:
            self._statistics["adafactor_skipped_steps"].assign_add(1)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """As Keras's; with skip_nonfinite, a step with a non-finite gradient
        returns the variables as they were."""
        if not self.skip_nonfinite:
            return super().stateless_apply(
                optimizer_variables, grads, trainable_variables
            )
        apply = super().stateless_apply
        # Values, not variables (a LossScaleOptimizer passes this one's
        # variables): a branch returns them.
        optimizer_variables = [ops.convert_to_tensor(v) for v in optimizer_variables]
        trainable_variables = [ops.convert_to_tensor(v) for v in trainable_variables]
        return _kernels.cond(
            _all_finite(grads),
            lambda: self._decided(
                apply, optimizer_variables, grads, trainable_variables
            ),
            lambda: (list(trainable_variables), self._skipped(optimizer_variables)),
        )

    def _skipped(self, optimizer_variables):
        """The values of the optimizer's variables after a skipped step: as
        they were, but for the count of skipped steps."""
        count = self._statistics.get("adafactor_skipped_steps")
        return [
            value + 1 if variable is count else value
            for variable, value in zip(self.variables, optimizer_variables)
        ]

    def _decided(self, apply, *args):
        """apply(*args) once the step is known to be finite: apply() must not
        ask again (stateless_apply() calls it)."""
        self._deciding = True
        try:
            return apply(*args)
        finally:
            self._deciding = False

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """As Keras's, and what the step did written to the statistics."""
        # Under tf.distribute every replica reads the same records, made once
        # in the cross-replica context: none may empty the list after them.
        self._records = []
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        records = self._records
        if not records:  # not recording, or no variable of size > 0
            return
        rms_u, clip = (
            ops.stack([ops.cast(x, "float32") for x in column])
            for column in zip(*records)
        )
        step = ops.cast(self.iterations + 1, "float32")
        rho = self._step_size(learning_rate, step, "float32")
        written = {
            "adafactor_step_size": rho,
            "adafactor_update_rms": ops.mean(rms_u),
            "adafactor_clip_fraction": ops.mean(ops.cast(clip > 1.0, "float32")),
        }
        for name, value in written.items():
            self._statistics[name].assign(value)

    def statistics(self, optimizer_variables=None):
        """What the last step did, with record_statistics=True, as scalar
        tensors (convert with float()):

        - `adafactor_step_size`: rho_t, the step size before the parameter
          scale `max(epsilon_2, RMS(X))` (which is each variable's own);
        - `adafactor_update_rms`: RMS(U_t) before the clip, averaged over
          the variables updated;
        - `adafactor_clip_fraction`: the fraction of those whose update was
          clipped (RMS(U_t) > clip_threshold);
        - `adafactor_skipped_steps`: the steps skipped by `skip_nonfinite`.

        They are zero before the first step. A skipped step leaves the first
        three as they were. The optimizer does not save them (the count
        restarts from 0 in a loaded model), so that its files load into an
        optimizer made without them, and back; a LossScaleOptimizer around it
        saves its variables itself, these included. `adafactor.StatisticsLogger`
        writes them into `fit()`'s logs.

        In a JAX loop of `stateless_apply`, pass the optimizer variables it
        returned: the statistics are read from those values. They are this
        optimizer's variables, in the order of `variables`; the list a
        LossScaleOptimizer's `stateless_apply` returns holds its own first,
        and this optimizer's as its last `len(variables)`.

        The values are copies: later steps do not change them.
        """
        self._require_statistics()
        if not self.built:
            raise ValueError(
                "The optimizer has no statistics before it is built (by its "
                "first step, or by build())."
            )
        count = len(self.variables)
        if optimizer_variables is not None and len(optimizer_variables) != count:
            raise ValueError(
                "Argument `optimizer_variables` must hold the values of this "
                f"optimizer's {count} variables, in the order of its `variables` "
                "(of the list a LossScaleOptimizer's stateless_apply returns, the "
                f"last {count}). Received: a list of {len(optimizer_variables)}"
            )
        values = dict(zip(map(id, self.variables), optimizer_variables or ()))
        return {
            name: ops.copy(ops.convert_to_tensor(values.get(id(v), v)))
            for name, v in self._statistics.items()
        }

    def _require_statistics(self):
        if not self.record_statistics:
            raise ValueError(
                "The optimizer records no statistics: make it with "
                "record_statistics=True (in R, optimizer_adafactor("
                "record_statistics = TRUE)). Received: record_statistics=False"
            )

    def _saved(self):
        """The variables saved with the optimizer: all but the statistics."""
        kept = getattr(self, "_statistics", {}).values()
        return [v for v in self.variables if all(v is not s for s in kept)]

    def update_step(self, gradient, variable, learning_rate):
        """One step of Algorithm 4 of the paper for a factored variable, of
        Algorithm 5 (the same with a full V_t) for the others; each stage's
        comment gives the paper's line, with the means of Section 3 (and
        Keras's) for R_t and C_t, where the paper sums.

        The rank-1 estimate V_t is never built: U_t is G_t times a row
        factor rsqrt(R_t) sqrt(mean(R_t)) and a column factor rsqrt(C_t),
        each finite (flush-to-zero backends turn R_t / mean(R_t) into 0 for
        a zero row among large ones), and the statistics are kept
        >= epsilon_1. No sum of squares is formed where it could overflow
        while the mean it stands for is in range (see _kernels).
        """
        if 0 in variable.shape:
            return
        index = self._get_variable_index(variable)
        r, c, v, m = self._r[index], self._c[index], self._v[index], self._m[index]
        dtype = _state_dtype(variable.dtype)
        # G_t, at the rows it touches (all, or an embedding's). A row
        # without a gradient gets an update of exactly zero; momentum and
        # stochastic rounding write every row.
        every_row = m is not None or self._rounds_stochastically(variable)
        rows, g = touched_rows(gradient, variable.shape, every_row, v is None)
        g = ops.cast(g, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        # beta_2t (see Decay), t counted from decay_offset (from 1).
        decay = Decay.at(
            step - self.decay_offset,
            self.epsilon_1,
            self.beta_2_decay,
            self.beta_2,
            self.beta_2_cap,
        )
        if v is None:
            # G_t with the axes it is factored over last (see _factored_axes).
            axes = self._axes[index]
            g = _kernels.ordered(g, axes)
            # R_t = beta_2t R_{t-1} + (1 - beta_2t) mean_j(G_t^2 + eps_1),
            # and C_t over i, from one pass over G_t.
            shape = tuple(variable.shape[a] for a in axes)
            moments = _kernels.factored_moments(g, rows.take(r), decay, shape)
            new_r = rows.statistic(decay, r, moments.r, moments.r_term)
            new_r = self._store(r, new_r)
            new_c = self._store(c, decay(c, moments.c_term))
            # U_t = G_t / sqrt(V_t), V_t = R_t C_t / mean(R_t): G_t times
            # a row factor and a column factor.
            root_mean_r = ops.sqrt(_kernels.mean(new_r, axis=-1))
            row = ops.rsqrt(moments.r) * root_mean_r
            update = _kernels.Product(g, row, ops.rsqrt(new_c))
        else:
            # V_t = beta_2t V_{t-1} + (1 - beta_2t)(G_t^2 + eps_1), and
            # U_t = G_t / sqrt(V_t).
            new_v = self._store(v, decay(v, rows.spread(decay.squares(g), v.shape)))
            update = _kernels.Elementwise(g * ops.rsqrt(rows.take(new_v)))
        mean_u2 = update.mean_square(math.prod(variable.shape))
        if v is None:
            update = _kernels.in_order(update, axes)
        # U_t / max(1, RMS(U_t) / d): the clip.
        rms_u = ops.sqrt(mean_u2)
        clip = ops.maximum(1.0, rms_u / self.clip_threshold)
        if self.record_statistics:
            self._records.append((rms_u, clip))
        # alpha_t = max(eps_2, RMS(X_{t-1})) rho_t, over the clip.
        scale = self._step_size(learning_rate, step, dtype) / clip
        if self.scale_parameter:
            rms_x = _kernels.root_mean_square(variable, dtype)
            scale = scale * ops.maximum(self.epsilon_2, rms_x)
        # X_t = X_{t-1} - alpha_t U_t / max(1, RMS(U_t) / d).
        self._write(variable, update, scale, rows, m)

    def _store(self, statistic, value):
        self.assign(statistic, value)
        return value

    def _write(self, variable, update, scale, rows, m):
        """X_t = X_{t-1} - alpha_t U_t / max(1, RMS(U_t) / d), the update
        times `scale`; through momentum, then rounded stochastically, or
        subtracted at the touched rows (on torch, in place)."""
        rounds = self._rounds_stochastically(variable)
        if m is None and not rounds and update.subtract_in_place(variable, scale):
            return
        delta = update.times(scale)
        if m is not None:
            delta = self.beta_1 * ops.cast(m, delta.dtype) + (1.0 - self.beta_1) * delta
            self.assign(m, ops.cast(delta, m.dtype))
        if rounds:
            new_x = ops.cast(variable, "float32") - delta
            rounded = _kernels.stochastic_round(new_x, self._seed_generator)
            self.assign(variable, rounded)
        else:
            rows.subtract(self, variable, ops.cast(delta, variable.dtype))

    def _rounds_stochastically(self, variable):
        return self.stochastic_rounding and variable.dtype == "bfloat16"

    def save_own_variables(self, store):
        """As Keras's, without the statistics (see statistics())."""
        for i, variable in enumerate(self._saved()):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        """As Keras's, but the saved state is matched to this optimizer's
        variables by what each holds, its shape and kind, and is loaded
        whole or not at all.

        Only the learning-rate variable may be missing on one side: a model
        saved with a learning-rate function has none, and an optimizer given
        a function needs none. Any other difference (momentum, factoring,
        stochastic rounding, another model) skips the optimizer's state,
        leaving this optimizer's as it is, with a warning of this package's
        own that begins as Keras's does and says what differs.
        """
        saved = [store[str(i)] for i in range(len(store.keys()))]
        ours = self._saved()
        pairs = pairing(ours, saved, self._learning_rate)
        if pairs is not None and all(map(holds, *pairs)):
            for variable, value in zip(*pairs):
                variable.assign(value)
            return
        warn(
            f"Skipping variable loading for optimizer '{self.name}', because "
            f"its variables do not match the saved ones: "
            f"{mismatch(ours, saved, self._learning_rate)} (an optimizer made "
            "with other options, or for another model, or not built yet); its "
            "state is left as it is."
        )

    def get_config(self):
        """The config Keras saves. A learning rate that is a function Keras
        cannot restore (an R function, a lambda) is saved as its current
        value, with a warning, so that the file always loads."""
        function = self._learning_rate
        if restorable(function):
            config = super().get_config()
        else:
            rate = ops.convert_to_tensor(self.learning_rate)
            warn(
                "The learning rate is a function that a saved model cannot "
                f"restore; its current value, {float(rate):g}, is saved instead, "
                "and a loaded model trains at that constant rate. To save a "
                "schedule, use a keras.optimizers.schedules."
                "LearningRateSchedule (in R, keras3's learning_rate_schedule_*())."
            )
            # Keras serializes any callable; let it see the value instead.
            try:
                self._learning_rate = rate
                config = super().get_config()
            finally:
                self._learning_rate = function
            # The function was used as it is; so is the value that replaces it.
            config["relative_step"] = False
        config.update(
            {
                "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold,
                "relative_step": config.get("relative_step", self.relative_step),
                "beta_1": self.beta_1,
                "momentum_dtype": self.momentum_dtype,
                "scale_parameter": self.scale_parameter,
                "min_dim_size_to_factor": self.min_dim_size_to_factor,
                "factored": self.factored,
                "decay_offset": self.decay_offset,
                "stochastic_rounding": self.stochastic_rounding,
                "beta_2_cap": self.beta_2_cap,
                "beta_2": self.beta_2,
                "factor_dims": self.factor_dims,
                "skip_nonfinite": self.skip_nonfinite,
                "record_statistics": self.record_statistics,
            }
        )
        chosen = getattr(self, "_unfactored", None)
        if chosen is not None:
            config["exclude_from_factoring"] = {
                "var_names": chosen["var_names"],
                "variables": [
                    {"path": path, "shape": list(shape)}
                    for path, shape in chosen["variables"]
                ],
            }
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """As Keras's, with the variables exclude_from_factoring() chose."""
        config = dict(config)
        chosen = config.pop("exclude_from_factoring", None)
        optimizer = super().from_config(config, custom_objects=custom_objects)
        if chosen is not None:
            optimizer.exclude_from_factoring(var_names=chosen["var_names"])
            optimizer._unfactored["variables"] = [
                (v["path"], tuple(v["shape"])) for v in chosen.get("variables", ())
            ]
            optimizer._unfactored["positions"] = set(chosen.get("positions", ()))
        return optimizer
