"""The example planner's logic: candidate cmd_vel sequences and an image-space cost.

Criterion (documented in the README): a predicted frame is worse the more
"obstacle pixels" lie in the window just ahead of the robot, the lower half of
the frame between one third and two thirds of its width. A pixel is an obstacle
pixel when its colour is further than `OBSTACLE_DISTANCE` (Euclidean, RGB 0-255)
from the floor colour, which the planner keeps as a slow running median of the
bottom rows of the real camera frames. A candidate's cost is the mean obstacle
fraction over its predicted frames; the cheapest wins, and a candidate within
`TIE_MARGIN` of the straight one loses to going straight (no needless turns).

Legend: N candidates, H horizon steps, A action dim (linear_x, angular_z), Hi/Wi image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBSTACLE_DISTANCE = 60.0
TIE_MARGIN = 0.02
# The bottom rows of a frame that sample the floor right in front of the robot.
FLOOR_BAND = 1 / 8
# Weight of a new frame in the floor colour (slow: a passing obstacle must not become floor).
FLOOR_EMA_WEIGHT = 0.05
STRAIGHT = "straight"


@dataclass(frozen=True)
class Candidates:
    """Named constant-velocity cmd_vel sequences.

    Attributes:
        names: one per candidate, e.g. ("straight", "left", "right").
        actions: float32 (N, H, A): linear_x m/s, angular_z rad/s.
    """

    names: tuple[str, ...]
    actions: np.ndarray


def turn_candidates(speed: float, turn_rate: float, horizon: int) -> Candidates:
    """Straight, left and right at `speed` m/s, turning at `turn_rate` rad/s, for `horizon` steps."""
    commands = {STRAIGHT: (speed, 0.0), "left": (speed, turn_rate), "right": (speed, -turn_rate)}
    actions = np.array([[command] * horizon for command in commands.values()], np.float32)  # (N, H, A)
    return Candidates(tuple(commands), actions)


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


def candidate_costs(frames: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Mean obstacle fraction over each candidate's predicted frames.

    Args:
        frames: uint8 (N, H, Hi, Wi, 3).
        floor: float32 (3,).

    Returns:
        float32 (N,).
    """
    return obstacle_fraction(frames, floor).mean(axis=1)


def choose(names: tuple[str, ...], costs: np.ndarray) -> int:
    """Index of the winner: the cheapest, unless going straight is within TIE_MARGIN of it."""
    best = int(np.argmin(costs))
    if STRAIGHT in names:
        straight = names.index(STRAIGHT)
        if costs[straight] <= costs[best] + TIE_MARGIN:
            return straight
    return best
