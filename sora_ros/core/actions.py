"""The action a live rollout assumes: the latest cmd_vel held for the whole horizon.

Model action names follow geometry_msgs/Twist fields (sora_ros/core/twist.py).

Legend: H horizon, A action dim.
"""

from __future__ import annotations

import numpy as np

# What a rollout assumes while no fresh cmd_vel is known.
NO_COMMAND_CHOICES = ("zero", "unknown")


def assumed_actions(command: np.ndarray | None, horizon: int, action_dim: int, no_command: str) -> np.ndarray | None:
    """The (H, A) plan for a live rollout.

    Args:
        command: float32 (A,) latest command in model order, or None when there is no fresh one.
        horizon: H.
        action_dim: A (0: unconditioned model, returns None).
        no_command: "zero" (stand still) or "unknown" (NaN rows: the model predicts without a
            command, for footage that has none).

    Returns:
        float32 (H, A), or None for an unconditioned model.
    """
    if action_dim == 0:
        return None
    if command is None:
        fill = 0.0 if no_command == "zero" else np.nan
        return np.full((horizon, action_dim), fill, np.float32)
    return np.repeat(np.asarray(command, np.float32)[None], horizon, axis=0)  # (H, A)


def clamp_to_range(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, int]:
    """Actions (..., A) clipped to [low, high] (A,) per component, NaN kept (unknown), and how many
    values were outside the range (the model's: model.json "action", offset +- 3 x scale)."""
    clamped = np.clip(actions, low, high)
    return clamped, int(np.count_nonzero(clamped != actions) - np.count_nonzero(np.isnan(actions)))
