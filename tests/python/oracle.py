"""An independent float64 NumPy version of the documented algorithm.

Written from the paper (Shazeer & Stern 2018, Algorithms 2 and 4) and the
documentation of `optimizer_adafactor()`, not from the package: the
second-moment estimate V is built in full, as the paper writes it.
"""

import numpy as np


def rms(x):
    return np.sqrt(np.mean(np.square(x)))


class Adafactor:
    """Per-variable Adafactor state and step, in float64.

    `learning_rate` is a number (a constant) or a function of the number of
    steps taken so far (a schedule, called as Keras calls it).
    """

    def __init__(
        self,
        learning_rate=1e-3,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        beta_1=None,
        scale_parameter=True,
        min_dim_size_to_factor=None,
        factored=True,
        decay_offset=0,
        beta_2_cap=None,
        beta_2=None,
        factor_dims="last",
    ):
        self.learning_rate = learning_rate
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step
        self.beta_1 = beta_1
        self.scale_parameter = scale_parameter
        self.min_dim_size_to_factor = min_dim_size_to_factor
        self.factored = factored
        self.decay_offset = decay_offset
        self.beta_2_cap = beta_2_cap
        self.beta_2 = beta_2
        self.factor_dims = factor_dims
        self.state = {}
        self.momentum = {}
        # The last step's rho_t, and each variable's RMS(U_t) before the clip.
        self.rho = None
        self.update_rms = {}
        # The largest statistic, update entry or mean square met so far: the
        # algorithm is float32's to compute while this is inside its range.
        self.largest = 0.0

    def factors(self, shape):
        if not self.factored or len(shape) < 2:
            return False
        least = self.min_dim_size_to_factor
        return (
            least is None
            or min(shape[a] for a in pair(shape, self.factor_dims)) >= least
        )

    def rate(self, t):
        """The learning rate the user gave, for the t-th step (t >= 1)."""
        if callable(self.learning_rate):
            return self.learning_rate(t - 1)
        return self.learning_rate

    def decay(self, t):
        """beta_2 hat of the t-th step: the schedule 1 - t^beta_2_decay, or a
        constant beta_2 with bias correction, then the cap."""
        if self.beta_2 is None:
            beta = 1 - t**self.beta_2_decay
        else:
            beta = self.beta_2 * (1 - self.beta_2 ** (t - 1)) / (1 - self.beta_2**t)
        return beta if self.beta_2_cap is None else min(beta, self.beta_2_cap)

    def step(self, key, x, g, t):
        """Return x after the t-th step (t >= 1) with gradient g."""
        x = np.asarray(x, np.float64)
        g = np.asarray(g, np.float64)
        rho = self.rate(t)
        if not callable(self.learning_rate) and self.relative_step:
            rho = min(rho, 1 / np.sqrt(t))
        beta = self.decay(max(t - self.decay_offset, 1))
        g2 = g**2 + self.epsilon_1
        if self.factors(x.shape):
            # Rows along axis a, columns along axis b (a < b), the other
            # axes kept as they are.
            a, b = pair(x.shape, self.factor_dims)
            r, c = self.state.get(
                key, (np.zeros(g2.mean(axis=b).shape), np.zeros(g2.mean(axis=a).shape))
            )
            r = beta * r + (1 - beta) * g2.mean(axis=b)
            c = beta * c + (1 - beta) * g2.mean(axis=a)
            self.state[key] = (r, c)
            r_mean = np.expand_dims(r.mean(axis=a), (a, b))
            big_v = np.expand_dims(r, b) * np.expand_dims(c, a) / r_mean
        else:
            v = self.state.get(key, np.zeros(x.shape))
            v = beta * v + (1 - beta) * g2
            self.state[key] = v
            big_v = v
        u = g / np.sqrt(big_v)
        stats = self.state[key]
        self.largest = max(
            [self.largest, np.max(np.abs(u)), rms(u) ** 2, rms(x) ** 2]
            + [np.max(s) for s in (stats if isinstance(stats, tuple) else [stats])]
        )
        self.rho, self.update_rms[key] = rho, rms(u)
        u = u / max(1.0, rms(u) / self.clip_threshold)
        step = rho * u
        if self.scale_parameter:
            step = step * max(self.epsilon_2, rms(x))
        if self.beta_1 is not None:
            m = self.momentum.get(key, np.zeros(x.shape))
            step = self.beta_1 * m + (1 - self.beta_1) * step
            self.momentum[key] = step
        return x - step


def trajectory(x0, grads, **kwargs):
    """Apply `grads` to `x0` in turn; return the list of x after each step."""
    return run(x0, grads, **kwargs)[0]


def run(x0, grads, **kwargs):
    """As trajectory, and the oracle after the steps (its `largest` value
    met, its last `update_rms`)."""
    opt = Adafactor(**kwargs)
    x, path = x0, []
    for t, g in enumerate(grads, start=1):
        x = opt.step(0, x, g, t)
        path.append(x)
    return path, opt


def pair(shape, factor_dims):
    """The axes (a, b), a < b, a variable of rank >= 2 is factored over: its
    last two, or its two largest (as optax: the last two of NumPy's argsort,
    which breaks ties)."""
    if factor_dims == "last" or len(shape) == 2:
        return len(shape) - 2, len(shape) - 1
    a, b = sorted(int(i) for i in np.argsort(shape)[-2:])
    return a, b


def state_size(shapes, factor_dims="last"):
    """Elements of the factored floor: r and c for rank >= 2, else v."""
    total = 0
    for shape in shapes:
        if len(shape) >= 2:
            a, b = pair(shape, factor_dims)
            whole = int(np.prod(shape))
            total += whole // shape[b] + whole // shape[a]
        else:
            total += int(np.prod(shape))
    return total
