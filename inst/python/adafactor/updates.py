"""The update U_t in its two forms, what it is made of until it is written:
a factored variable's, G_t times a row and a column factor (Product); every
other's, held whole (Elementwise). Each gives its mean square and its
product with the step's scale."""

import math
from typing import NamedTuple

import keras

from adafactor import backend
from adafactor.backend import ops
from adafactor.reductions import by_blocks


def _per_member(scale, like):
    """A scale, one per member of a stack (or one for one variable), shaped
    to multiply `like`, which has the members along axis 0."""
    if len(scale.shape) == 0:
        return scale
    return ops.reshape(scale, (-1,) + (1,) * (len(like.shape) - 1))


def sum_per_member(x, members):
    """The sum of x, or of each member of a stack along axis 0 (members=1)."""
    axes = tuple(range(members, len(x.shape)))
    return ops.sum(x, axis=axes) if axes else x


class Product(NamedTuple):
    """The factored update, g * row[..., :, None] * col[..., None, :]."""

    g: object
    row: object
    col: object

    def times(self, scale):
        return backend.product(
            self.g, self.row, self.col * _per_member(scale, self.col)
        )

    def mean_square(self, size, members=0):
        """mean(U^2) over a variable of `size` elements (or over each
        member), of which g holds the rows (the others are 0): the sum of
        the squares of U / sqrt(size), each entry formed as the update is,
        g times its row factor, then its column factor. No square, sum or
        product then leaves float32's range unless U's mean square does: a
        sum of squares of G_t weighted by the factors afterwards would (a
        spike in G_t makes mean(R_t) / C_t huge where G_t^2 / R_t is tiny).
        Entries whose squares are below float32's normal range are lost."""
        col = self.col * (1.0 / math.sqrt(size))
        if members:
            return sum_per_member(backend.squared_product(self.g, self.row, col), 1)

        def reduce(g, row):
            return (ops.sum(backend.squared_product(g, row, col), axis=-2),)

        row = ops.convert_to_tensor(self.row)
        (sums,) = by_blocks(reduce, self.g, self.g.dtype, row, rows=0, columns=1)
        return ops.sum(sums)

    def subtract_from(self, variable, scale):
        """variable -= self.times(scale) in place where the backend would
        otherwise allocate it; returns whether it did."""
        return backend.subtract_product(variable, self.g, self.row, self.col * scale)


class Elementwise(NamedTuple):
    """An update held whole (the unfactored U_t)."""

    u: object

    def times(self, scale):
        return self.u * _per_member(scale, self.u)

    def mean_square(self, size, members=0):
        return sum_per_member(ops.square(self.u * (1.0 / math.sqrt(size))), members)

    def subtract_from(self, variable, scale):
        return False


def stochastic_round(x, seed):
    """float32 to bfloat16, rounding up with probability equal to the part
    of x that bfloat16 cannot hold, so that the rounding is unbiased.

    bfloat16 is the upper half of a float32: uniform noise added to the
    lower 16 bits, then cut off, rounds stochastically.
    """
    bits = ops.view(x, "int32")
    noise = keras.random.randint(ops.shape(x), 0, 1 << 16, dtype="int32", seed=seed)
    bits = ops.bitwise_and(bits + noise, -(1 << 16))
    return ops.cast(ops.view(bits, "float32"), "bfloat16")
