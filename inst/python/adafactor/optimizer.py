"""Adafactor for Keras 3, with factored second moments and nothing else.

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost", https://arxiv.org/abs/1804.04235.

This module holds the algorithm (`Adafactor.update_step`, the paper's
Algorithm 4) and the state it keeps (`Adafactor.build`). The reductions are
in reductions, the update's two forms in updates, the view of what a step
updates (one variable, or a group of small ones) in grouping; the options in
options; saving, skip_nonfinite, the statistics and exclude_from_factoring
in modules of their own; what each backend does its own way in backend.
"""

import math
from typing import NamedTuple

import keras
import numpy as np

from adafactor import backend, grouping, reductions
from adafactor._sparse import coalesced, row_sparse_values
from adafactor.backend import ops
from adafactor.exclusions import Exclusions
from adafactor.grouping import Grouping
from adafactor.options import BETA_2_DECAY, OPTIONS, validate
from adafactor.saving import Saving
from adafactor.skipping import Skipping
from adafactor.statistics import Statistics
from adafactor.updates import Elementwise, Product, stochastic_round


class Decay(NamedTuple):
    """The step's second-moment decay beta_2_t, its share 1 - beta_2_t
    (formed as itself: as 1 - beta it rounds to 0 under a fast decay), and
    epsilon_1 (see decay_at and decayed)."""

    beta: object
    share: object
    epsilon_1: float


def decay_at(t, optimizer):
    """beta_2_t at step t (from 1): 1 - t^beta_2_decay (Section 7.2), or, for
    a constant beta_2, beta_2 (1 - beta_2^(t-1)) / (1 - beta_2^t), the bias
    correction of Section 7.1 folded into the decay (Mesh TensorFlow's
    `adafactor_decay_rate_adam`); either capped at beta_2_cap if one is
    given (big_vision's `beta2_cap`)."""
    t = ops.maximum(t, 1.0)
    beta_2 = optimizer.beta_2
    if beta_2 is None:
        share = ops.power(t, optimizer.beta_2_decay)
    else:  # 1 - beta_2_t = (1 - beta_2) / (1 - beta_2^t)
        share = (1.0 - beta_2) / -ops.expm1(t * math.log(beta_2))
    if optimizer.beta_2_cap is not None:
        share = ops.maximum(share, 1.0 - optimizer.beta_2_cap)
    return Decay(1.0 - share, share, optimizer.epsilon_1)


def decayed(decay, statistic, term):
    """beta statistic + (1 - beta)(G^2 + epsilon_1), where `term` is
    (1 - beta) G^2, formed by the caller without overflow; >= epsilon_1
    exactly, which rounding and flush-to-zero could go below."""
    new = decay.beta * statistic + (term + decay.share * decay.epsilon_1)
    return ops.maximum(new, decay.epsilon_1)


def factored_axes(shape, factor_dims):
    """The order of a variable's axes with the two it is factored over last
    (in their own order), the others kept in front as batch axes: its last
    two ("last", as Keras and torch), or its two largest ("largest", as optax
    and T5X, ties broken as optax breaks them, with NumPy's argsort)."""
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


class State(NamedTuple):
    """What the optimizer keeps for a variable: r and c (factored) or v,
    m with momentum, and the axes r and c are over (see factored_axes)."""

    r: object
    c: object
    v: object
    m: object
    axes: tuple


@keras.saving.register_keras_serializable(package="adafactor")
class Adafactor(
    Exclusions, Saving, Skipping, Statistics, Grouping, keras.optimizers.Optimizer
):
    """Adafactor with sublinear memory (Shazeer & Stern, 2018).

    A drop-in replacement for `keras.optimizers.Adafactor`: the same
    arguments, defaults and updates where Keras follows its documentation.
    It differs in memory (a variable of rank >= 2 keeps only its row and
    column statistics; Keras keeps a full-size estimate too), finiteness
    (the estimate is applied as a row and a column factor, every sum of
    squares is exact, and the clip's RMS is the update's own: zero rows and
    spiky gradients leave the step finite), sparse gradients (duplicate
    indices summed before squaring; only the touched rows written), and
    `relative_step` (the cap min(learning_rate, 1/sqrt(t)) applies to a
    constant rate only, as documented). float16 and bfloat16 variables keep
    float32 statistics.

    Args:
        learning_rate: A float > 0, a LearningRateSchedule, or a callable of
            no arguments.
        beta_2_decay: Float < 0: beta_2_t = 1 - t^beta_2_decay.
        epsilon_1: Float in [2^-102, 2^126], added to the squared gradient
            (squares below 2^-126 are lost in float32).
        epsilon_2: Float >= 0: steps are scaled by max(epsilon_2, RMS(x)).
        clip_threshold: Float >= 1.1754944e-38, the RMS updates are clipped
            to (not Keras's clipnorm).
        relative_step: Bool: a constant rate is capped at 1/sqrt(t).
        weight_decay ... gradient_accumulation_steps, name: as for every
            `keras.optimizers.Optimizer`; name a valid TensorFlow name scope.
        beta_1: None or a float in [0, 1): momentum on the final update, one
            parameter-sized buffer of `momentum_dtype`.
        scale_parameter: Bool: False drops the max(epsilon_2, RMS(x)) factor.
        min_dim_size_to_factor: None or an int: factor a variable only when
            both dimensions it would be factored over are at least this.
        factored: Bool: False keeps a full second moment for every variable.
        decay_offset: An int >= 0: the beta_2 schedule counts from here.
        stochastic_rounding: Bool: round bfloat16 weights stochastically.
        beta_2_cap: None or a float in (0, 1): beta_2_t <= beta_2_cap.
        beta_2: None or a float in (0, 1): a constant decay with the paper's
            bias correction, in place of beta_2_decay.
        factor_dims: "last" or "largest": the axes a variable of rank >= 3
            is factored over.
        skip_nonfinite: Bool: a step with a non-finite gradient changes
            nothing (see skipping).
        record_statistics: Bool: each step records what it did (see
            `statistics()` and `adafactor.StatisticsLogger`).

    The article "Options beyond keras3's" (vignettes/options.Rmd) and
    `help(optimizer_adafactor)` in R give each in full.
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
        arguments = locals()
        validate(arguments)
        kept = {o.name: o.kept_as(arguments[o.name]) for o in OPTIONS}
        super().__init__(**{o.name: kept[o.name] for o in OPTIONS if o.keras}, **kwargs)
        for option in OPTIONS:
            if not option.keras:
                setattr(self, option.name, kept[option.name])
        if stochastic_rounding:
            self._seed_generator = keras.random.SeedGenerator(name="rounding")
            self._track_variable(self._seed_generator.state)

    def build(self, var_list):
        """Create r and c for a factored variable, v for the others (m too,
        with momentum). A variable that is not of a floating-point dtype is
        refused."""
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
        self._state = []
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
            self._state.append(State(r, c, v, m, axes))
        self._group_keys = [self._group_key(*vs) for vs in zip(var_list, self._state)]
        self._build_statistics()

    def _factor_axes(self, shape):
        """The axes a variable of this shape is factored over, last (see
        factored_axes), or None if it keeps a full second moment."""
        shape = tuple(shape)
        if not self.factored or len(shape) < 2:
            return None
        axes = factored_axes(shape, self.factor_dims)
        least = self.min_dim_size_to_factor
        if least is not None and min(shape[a] for a in axes[-2:]) < least:
            return None
        return axes

    def _add_state(self, var, suffix, shape, layout, dtype=None):
        """A zero-initialised statistic named `{variable path}_{suffix}`."""
        prefix = getattr(var, "path", None) or str(var.name)
        prefix = prefix.replace("/", "_").replace(":", "_")
        return self.add_variable(
            shape=shape,
            dtype=dtype or self._state_dtype(var.dtype),
            name=f"{prefix}_{suffix}",
            layout=layout,
        )

    @staticmethod
    def _state_dtype(dtype):
        """Statistics and update are computed in float32 for 16-bit variables."""
        dtype = keras.backend.standardize_dtype(dtype)
        return "float32" if dtype in ("float16", "bfloat16") else dtype

    def _step_size(self, learning_rate, step, dtype):
        """rho_t: the learning rate, capped at 1/sqrt(t) as documented."""
        lr = ops.cast(learning_rate, dtype)
        if isinstance(self._learning_rate, keras.Variable) and self.relative_step:
            lr = ops.minimum(lr, ops.rsqrt(step))
        return lr

    def _rounds_stochastically(self, variable):
        return self.stochastic_rounding and variable.dtype == "bfloat16"

    def apply(self, grads, trainable_variables=None):
        """As Keras's, but a sparse gradient is made dense first where an
        option of Keras's base optimizer cannot take it sparse, and has its
        duplicate indices summed first where Keras clips: the gradient is
        clipped, not its slices."""
        grads = list(grads)
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
        if any(getattr(self, o) for o in backend.OPTIONS_NEEDING_DENSE):
            grads = [
                g if row_sparse_values(g) is g else backend.dense(g) for g in grads
            ]
        elif self.clipnorm or self.global_clipnorm or self.clipvalue:
            variables = trainable_variables or self._trainable_variables
            grads = [coalesced(g, v.shape) for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        """One step of Algorithm 4 of the paper for a factored variable, of
        Algorithm 5 (the same with a full V_t) for the others; each stage's
        comment is the paper's line, with the means of Section 3 where the
        paper sums. `variable` is a model variable or a group of small ones
        stepped together (see grouping), whose tensors hold the members
        along a first axis. V_t is never built: U_t is G_t times a row
        factor and a column factor, each finite, and every reduction is
        exact in float32 (see reductions)."""
        step = grouping.view(self, gradient, variable)
        if step is None:  # an empty variable
            return
        g, t = step.gradient, ops.cast(self.iterations + 1, step.dtype)
        decay = decay_at(t - self.decay_offset, self)  # beta_2t, from decay_offset
        if step.factored:
            # R_t = beta_2t R_{t-1} + (1 - beta_2t) mean_j(G_t^2 + eps_1); C_t over i.
            rows, cols = reductions.factored_means(g, step.shape)
            r = step.state("r")
            r = step.store("r", decayed(decay, r, step.spread(decay.share * rows, r)))
            c = step.store("c", decayed(decay, step.state("c"), decay.share * cols))
            # U_t = G_t / sqrt(R_t C_t / mean(R_t)): a row and a column factor.
            row = ops.rsqrt(step.take(r)) * ops.sqrt(reductions.mean(r, axis=-1))
            update = Product(g, row, ops.rsqrt(c))
        else:
            # V_t = beta_2t V_{t-1} + (1 - beta_2t)(G_t^2 + eps_1),
            # U_t = G_t / sqrt(V_t).
            v, squares = step.state("v"), ops.square(g * ops.sqrt(decay.share))
            v = step.store("v", decayed(decay, v, step.spread(squares, v)))
            update = Elementwise(g * ops.rsqrt(step.take(v)))
        # U_t / max(1, RMS(U_t) / d): the clip.
        rms_u = ops.sqrt(update.mean_square(step.size, step.members))
        clip = ops.maximum(1.0, rms_u / self.clip_threshold)
        self._record(rms_u, clip)
        # alpha_t = max(eps_2, RMS(X_{t-1})) rho_t, over the clip.
        scale = self._step_size(learning_rate, t, step.dtype) / clip
        if self.scale_parameter:
            rms_x = reductions.root_mean_square(step.value(), step.dtype, step.members)
            scale = scale * ops.maximum(self.epsilon_2, rms_x)
        # X_t = X_{t-1} - alpha_t U_t / max(1, RMS(U_t) / d).
        self._write(step, update, scale)

    def _write(self, step, update, scale):
        """X_t = X_{t-1} - delta, delta the update times `scale`: through
        momentum, then rounded stochastically; or subtracted, in place where
        the backend can, at the rows the gradient touches."""
        m = step.state("m")
        if m is None and not step.rounds and step.subtract_in_place(update, scale):
            return
        delta = step.in_order(update.times(scale))
        if m is not None:
            delta = self.beta_1 * ops.cast(m, delta.dtype) + (1.0 - self.beta_1) * delta
            step.store("m", ops.cast(delta, m.dtype))
        if step.rounds:
            new_x = ops.cast(step.value(), "float32") - delta
            step.assign(stochastic_round(new_x, self._seed_generator))
        else:
            step.subtract(delta)


def _factored_layouts(layout, axes):
    """Layouts of r and c derived from the variable's, the reduced axis
    dropped, so that a sharded kernel gets sharded statistics."""
    names = getattr(layout, "axes", None)
    if names is None:
        return None, None
    row, col = _factored(names, axes)
    mesh = layout.device_mesh
    return (
        keras.distribution.TensorLayout(row, mesh),
        keras.distribution.TensorLayout(col, mesh),
    )
