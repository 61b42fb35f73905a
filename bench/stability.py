"""Section h's measures of a training run's stability, from its curve.

A run's curve is the training loss of each step's batch, taken before the
step's update, so that its first entry is the loss at initialisation. The
measures: a moving mean over WINDOW steps smooths the curve; a run
*collapsed* when the smoothed loss rose at least COLLAPSE nats above its
running minimum, and *diverged* when a weight ended not finite or the final
smoothed loss ended above the initial loss. These were fixed before any
run. Trial runs then showed another failure, which they miss: at large
step sizes the loss falls to the entropy of the bytes' frequencies within
the first window and stays there, or leaves it only late. So a run also
*stalled* when its final smoothed loss ended less than STALL nats below
that entropy: it learned little beyond the frequencies within the run.
"""

import numpy as np

WINDOW = 50  # steps of the moving mean
COLLAPSE = 0.5  # nats above the running minimum
STALL = 0.25  # nats below the unigram entropy, at least, to have learned


def smoothed(losses, window=WINDOW):
    """The moving mean of `losses` over `window` steps, one value for each
    full window; not finite from the first window that holds a non-finite
    loss on."""
    losses = np.asarray(losses, dtype=np.float64)
    window = min(window, len(losses))
    finite = np.isfinite(losses)
    sums = np.cumsum(np.concatenate([[0.0], np.where(finite, losses, 0.0)]))
    means = (sums[window:] - sums[:-window]) / window
    bad = np.cumsum(~finite) > 0
    means[bad[window - 1 :]] = np.inf
    return means


def largest_rise(curve):
    """How far the curve rose above its running minimum, at most; inf where
    it ends not finite."""
    curve = np.asarray(curve, dtype=np.float64)
    if not np.isfinite(curve).all():
        return float("inf")
    return float(np.max(curve - np.minimum.accumulate(curve)))


def outcome(losses, entropy, finite=True):
    """What a run did: the final smoothed training loss, the largest rise,
    and whether it collapsed, diverged or stalled (`entropy`: the unigram
    entropy of the text; `finite`: whether every weight ended finite)."""
    curve = smoothed(losses)
    rise = largest_rise(curve)
    final = float(curve[-1])
    return {
        "train": final,
        "rise": rise,
        "collapsed": bool(rise >= COLLAPSE),
        "diverged": bool(not finite or not final <= float(losses[0])),
        "stalled": bool(not final < entropy - STALL),
    }


def unstable(run):
    """Whether a run collapsed, diverged or stalled."""
    return run["collapsed"] or run["diverged"] or run["stalled"]
