"""The image-space hazard of the planner's fallback for a model without a risk head
(sora_ros/core/mpc.py takes it in place of the risk).

Criterion (documented in the README): a predicted frame is worse the more
"obstacle pixels" lie in the window just ahead of the robot, the lower half of
the frame between one third and two thirds of its width. A pixel is an obstacle
pixel when its colour is further than `OBSTACLE_DISTANCE` (Euclidean, RGB 0-255)
from the floor colour, which the planner keeps as a slow running median of the
bottom rows of the real camera frames. It can read 0 with a wall filling the
view (seen in issue 14: the bottom rows then sample the wall, and the floor
colour drifts to it); prefer the risk head.

Legend: Hi/Wi image size.
"""

from __future__ import annotations

import numpy as np

OBSTACLE_DISTANCE = 60.0
# The bottom rows of a frame that sample the floor right in front of the robot.
FLOOR_BAND = 1 / 8
# Weight of a new frame in the floor colour (slow: a passing obstacle must not become floor).
FLOOR_EMA_WEIGHT = 0.05


def floor_sample(frame: np.ndarray) -> np.ndarray:
    """Median colour of the bottom FLOOR_BAND of a uint8 (Hi, Wi, 3) RGB frame, float32 (3,)."""
    rows = max(1, round(frame.shape[0] * FLOOR_BAND))
    return np.median(frame[-rows:].reshape(-1, 3), axis=0).astype(np.float32)


def update_floor(floor: np.ndarray | None, frame: np.ndarray) -> np.ndarray:
    """The running floor colour after seeing `frame` (its first sample when `floor` is None)."""
    sample = floor_sample(frame)
    return sample if floor is None else (1 - FLOOR_EMA_WEIGHT) * floor + FLOOR_EMA_WEIGHT * sample


def obstacle_fraction(frames: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Share of obstacle pixels in the window ahead of the robot, per frame.

    Args:
        frames: uint8 (..., Hi, Wi, 3) RGB.
        floor: float32 (3,) floor colour.

    Returns:
        float32 (...,) in [0, 1].
    """
    height, width = frames.shape[-3:-1]
    window = frames[..., height // 2 :, width // 3 : 2 * width // 3, :].astype(np.float32)  # (..., Hi/2, Wi/3, 3)
    distance = np.linalg.norm(window - floor, axis=-1)
    return (distance > OBSTACLE_DISTANCE).mean(axis=(-2, -1)).astype(np.float32)
