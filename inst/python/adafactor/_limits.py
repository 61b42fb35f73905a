"""Limits the rules of the arguments and the step share: float32's, and the
size of the blocks a large matrix is reduced in."""

import numpy as np

FLOAT32_MAX = float(np.finfo("float32").max)
# The least normal float32: TensorFlow, XLA and GPUs flush smaller numbers
# to zero.
TINY = 2.0**-126
# A matrix larger than this many elements (2 MiB of float32) is reduced in
# blocks of rows. Compiled, XLA on CPU would otherwise keep g^2 as a
# parameter-sized temporary (it does not fuse a square into every
# reduction), and torch, running eagerly, would allocate it. A block stays in
# cache (bench/, sections b, d and f). Read as _limits.BLOCK, so that tests
# can make it small.
BLOCK = 1 << 19
