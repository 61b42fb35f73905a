"""Which variables a step updates together, and the step's view of what it
updates: one variable (One), or a group of small ones stacked along a
first axis (Stacked).

Most of a model's variables are small (biases, layer norms, the kernels of
narrow layers), and a step per variable costs as many operations per
variable as the algorithm has stages: on an eager backend each is a call,
on a GPU a kernel. Small variables of one shape, dtype and state layout are
stepped together instead, each tensor of the step holding them all, so
that a model's steps cost a number of operations per kind of variable, not
per variable (bench/, section i). Large ones (more than a block, see
_limits.BLOCK), row-sparse gradients and variables rounded stochastically
(each draws its own noise) are stepped one by one.
"""

import math
from typing import NamedTuple

from adafactor import _limits, backend
from adafactor._sparse import touched_rows
from adafactor.backend import ops

# At most this many elements in a group: its temporaries are of its size.
GROUP = 8 * _limits.BLOCK


class Group(NamedTuple):
    """Variables stepped together: of one shape, dtype and state layout,
    their gradients dense."""

    variables: tuple


class Grouping:
    """The optimizer's collective step (Keras's `_backend_update_step`):
    update_step for each large variable, and once for each group of small
    ones (see Group). Under tf.distribute, which updates each variable
    apart, Keras's own."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if backend.distributed():
            super()._backend_update_step(grads, trainable_variables, learning_rate)
            return
        groups = {}
        with backend.stepping():
            for gradient, variable in zip(grads, trainable_variables):
                key = self._group_keys[self._get_variable_index(variable)]
                if key is None or backend.row_sparse(gradient) is not None:
                    self.update_step(gradient, variable, learning_rate)
                else:
                    groups.setdefault(key, []).append((gradient, variable))
            for members in groups.values():
                per_chunk = max(1, GROUP // math.prod(members[0][1].shape))
                for start in range(0, len(members), per_chunk):
                    gradients, variables = zip(*members[start : start + per_chunk])
                    if len(variables) == 1:
                        self.update_step(gradients[0], variables[0], learning_rate)
                    else:
                        self.update_step(
                            list(gradients), Group(variables), learning_rate
                        )

    def _group_key(self, variable, state):
        """What a variable shares with those it is stepped with, or None if
        it is stepped alone (a gradient that comes row-sparse is too)."""
        size = math.prod(variable.shape)
        if size == 0 or size > _limits.BLOCK or self._rounds_stochastically(variable):
            return None
        kept = tuple(None if s is None else str(s.dtype) for s in state[:4])
        # Variables sharded alike (a stack of differently sharded ones would
        # be gathered first).
        sharded = getattr(getattr(variable, "_layout", None), "axes", None)
        return tuple(variable.shape), str(variable.dtype), state.axes, kept, sharded


def view(optimizer, gradient, variable):
    """The step's view of `variable` (a model variable or a Group), None for
    an empty variable."""
    if isinstance(variable, Group):
        return Stacked(optimizer, gradient, variable.variables)
    if 0 in tuple(variable.shape):
        return None
    return One(optimizer, gradient, variable)


def _ordered(x, axes):
    """x with its axes in the order `axes`."""
    return x if axes == tuple(range(len(axes))) else ops.transpose(x, axes)


def _in_order(x, axes):
    """x, whose axes are in the order `axes`, in the variable's own order."""
    if axes == tuple(range(len(axes))):
        return x
    return ops.transpose(
        x, tuple(int(a) for a in sorted(range(len(axes)), key=axes.__getitem__))
    )


class One:
    """One variable: its gradient at the rows it touches (rows, None for
    all), with the axes it is factored over last (see
    optimizer.factored_axes)."""

    members = 0

    def __init__(self, optimizer, gradient, variable):
        self.optimizer, self.variable, self.gradient_given = (
            optimizer,
            variable,
            gradient,
        )
        self.state_of = optimizer._state[optimizer._get_variable_index(variable)]
        self.dtype = optimizer._state_dtype(variable.dtype)
        self.rounds = optimizer._rounds_stochastically(variable)
        self.factored = self.state_of.v is None
        every_row = self.state_of.m is not None or self.rounds
        self.rows, g = touched_rows(gradient, variable.shape, every_row, self.factored)
        self.axes = self.state_of.axes or tuple(range(len(variable.shape)))
        self.gradient = _ordered(ops.cast(g, self.dtype), self.axes)
        self.shape = tuple(variable.shape[a] for a in self.axes)
        self.size = math.prod(variable.shape)

    def state(self, name):
        return getattr(self.state_of, name)

    def store(self, name, value):
        self.optimizer.assign(self.state(name), value)
        return value

    def spread(self, term, statistic):
        """A statistic's term at the touched rows, as one of its shape."""
        if self.rows is None:
            return term
        return backend.scatter_rows(self.rows, term, tuple(statistic.shape))

    def take(self, statistic):
        """A statistic at the touched rows."""
        return (
            statistic if self.rows is None else ops.take(statistic, self.rows, axis=0)
        )

    def value(self):
        return self.variable

    def in_order(self, x):
        return _in_order(x, self.axes)

    def assign(self, value):
        self.optimizer.assign(self.variable, value)

    def subtract(self, delta):
        delta = ops.cast(delta, self.variable.dtype)
        if self.rows is None:
            self.optimizer.assign_sub(self.variable, delta)
        else:
            backend.subtract_rows(
                self.optimizer, self.variable, self.rows, delta, self.gradient_given
            )

    def subtract_in_place(self, update, scale):
        """variable -= update.times(scale) in place where the backend can;
        returns whether it did."""
        if self.axes != tuple(range(len(self.axes))):
            return False
        return update.subtract_from(self.variable, scale)


class Stacked:
    """Small variables of one kind stepped together (see Group): every
    tensor of the step holds them along a first axis, and each has its own
    RMS(U_t), RMS(X_{t-1}) and step."""

    members = 1
    rounds = False
    rows = None

    def __init__(self, optimizer, gradients, variables):
        self.optimizer = optimizer
        states = [optimizer._state[optimizer._get_variable_index(v)] for v in variables]
        self.targets = {"x": backend.targets(variables)}
        for name in ("r", "c", "v", "m"):
            if getattr(states[0], name) is not None:
                self.targets[name] = backend.targets([getattr(s, name) for s in states])
        first = variables[0]
        self.dtype = optimizer._state_dtype(first.dtype)
        self.factored = states[0].v is None
        axes = states[0].axes or tuple(range(len(first.shape)))
        self.axes = (0,) + tuple(a + 1 for a in axes)
        self.gradient = _ordered(
            ops.cast(backend.stack(gradients), self.dtype), self.axes
        )
        self.shape = tuple(first.shape[a] for a in axes)
        self.size = math.prod(first.shape)

    def state(self, name):
        targets = self.targets.get(name)
        return None if targets is None else backend.stack(targets)

    def store(self, name, value):
        backend.assign_each(self.optimizer, self.targets[name], value)
        return value

    def spread(self, term, statistic):
        return term

    def take(self, statistic):
        return statistic

    def value(self):
        return backend.stack(self.targets["x"])

    def in_order(self, x):
        return _in_order(x, self.axes)

    def subtract(self, delta):
        backend.subtract_each(self.optimizer, self.targets["x"], delta)

    def subtract_in_place(self, update, scale):
        return False
