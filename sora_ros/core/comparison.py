"""Predicted frames matched to the real frames they predicted, and the real | predicted |
error picture the node publishes.

`FutureMemory` keeps the decoded frames of recent rollouts by the time each one
predicts. When a real frame arrives, `match` finds the latest prediction made
for its stamp (within half a model step), which the node publishes as
~/predicted/image and composes into the comparison image.

Images are uint8 (H, W, 3) RGB in [0, 255]; stamps integer nanoseconds.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

# Rollouts remembered; at 10 rollouts per second and 8 steps, ~2 horizons of history.
MEMORY_ROLLOUTS = 16
# The error panel stretches |real - predicted| by this factor so small errors show.
ERROR_GAIN = 3.0


@dataclass(frozen=True)
class Prediction:
    """A frame predicted for `stamp_ns` by the rollout from `origin_ns`, `step` steps ahead (1-based)."""

    stamp_ns: int
    origin_ns: int
    step: int
    frame: np.ndarray


class FutureMemory:
    """Recent predicted frames by predicted time. Thread-safe.

    Args:
        tolerance_ns: how far a prediction's stamp may be from a real frame's stamp to match.
    """

    def __init__(self, tolerance_ns: int) -> None:
        self._rollouts: deque[list[Prediction]] = deque(maxlen=MEMORY_ROLLOUTS)
        self._tolerance_ns = tolerance_ns
        self._lock = threading.Lock()

    def add(self, predictions: list[Prediction]) -> None:
        """The decoded frames of one rollout (any subset of its steps)."""
        if predictions:
            with self._lock:
                self._rollouts.append(predictions)

    def clear(self) -> None:
        with self._lock:
            self._rollouts.clear()

    def match(self, stamp_ns: int, step: int | None = None) -> Prediction | None:
        """The prediction for `stamp_ns` from the latest rollout that made one, or None.

        Args:
            stamp_ns: the real frame's stamp.
            step: only predictions exactly this many steps ahead (None: any).
        """
        with self._lock:
            rollouts = list(self._rollouts)
        for predictions in reversed(rollouts):  # newest rollout first
            for prediction in predictions:
                if prediction.origin_ns >= stamp_ns:
                    break  # made from this frame or a later one: not a prediction of it
                near = abs(prediction.stamp_ns - stamp_ns) <= self._tolerance_ns
                if near and (step is None or prediction.step == step):
                    return prediction
        return None


def error_panel(real: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """|real - predicted| averaged over colour, times ERROR_GAIN, as a heat map (uint8 RGB)."""
    difference = np.abs(real.astype(np.int16) - predicted.astype(np.int16)).mean(axis=-1)  # (H, W)
    scaled = np.clip(difference * ERROR_GAIN, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def comparison_image(real: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """real | predicted | error side by side.

    Args:
        real, predicted: uint8 (H, W, 3) RGB of the same size.

    Returns:
        uint8 (H, 3 * W, 3) RGB.

    Raises:
        ValueError: the two images differ in shape.
    """
    if real.shape != predicted.shape or real.ndim != 3:
        raise ValueError(f"real {real.shape} and predicted {predicted.shape} must both be (H, W, 3)")
    return np.concatenate([real, predicted, error_panel(real, predicted)], axis=1)
