"""Someone else's actions: the action-sensitivity test that `sora-ros eval` and training's
validation share.

A model that uses its actions predicts worse when its clip's future actions are swapped for
another clip's; a model that ignores them predicts the same. The *action gap* at a horizon is
the mean PSNR under the true actions minus the mean PSNR under the swapped ones (dB; near 0:
the actions are ignored).

    shuffle = ActionShuffler(seed=0)
    for actions in clips_actions:                      # each float32 (T, A)
        other = shuffle(actions, first_future=K - 1)   # actions[K - 1:] from an earlier clip
"""

from __future__ import annotations

from collections import deque

import numpy as np

from sora_ros.core.psnr import PSNR_CAP_DB

# Recent clips whose actions stand in as "someone else's actions".
SHUFFLE_POOL = 32


class ActionShuffler:
    """Gives each clip the future actions of a random one of the last SHUFFLE_POOL clips it saw
    (the first clip, with none before it, gets its own actions reversed in time)."""

    def __init__(self, seed: int = 0, pool: int = SHUFFLE_POOL):
        self._rng = np.random.default_rng(seed)
        self._pool: deque[np.ndarray] = deque(maxlen=pool)

    def __call__(self, actions: np.ndarray, first_future: int) -> np.ndarray:
        """A copy of `actions` (T, A) whose rows from `first_future` on come from another clip
        of the same length T; `actions` then joins the pool."""
        other = self._pool[self._rng.integers(len(self._pool))] if self._pool else actions[::-1]
        shuffled = actions.copy()
        shuffled[first_future:] = other[first_future:]
        self._pool.append(actions)
        return shuffled


def action_gap(true_psnr, shuffled_psnr) -> float:
    """Mean PSNR under the true actions minus under the shuffled ones, dB.

    Args:
        true_psnr, shuffled_psnr: per-frame PSNRs in dB of the same frames; +inf (identical
            frames) counts as PSNR_CAP_DB, NaN (nothing scored) is left out, as in evaluation.

    Returns:
        The gap (NaN when either side has no score).
    """

    def mean(values) -> float:
        values = np.asarray(values, np.float64)
        values = np.minimum(values[~np.isnan(values)], PSNR_CAP_DB)
        return float(values.mean()) if values.size else float("nan")

    return mean(true_psnr) - mean(shuffled_psnr)
