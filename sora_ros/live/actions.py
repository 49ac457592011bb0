"""The action a live rollout assumes: the latest cmd_vel held for the whole horizon.

Model action names follow geometry_msgs/Twist fields: "linear_x" is linear.x,
"angular_z" is angular.z, and so on.

Legend: H horizon, A action dim.
"""

from __future__ import annotations

import numpy as np

TWIST_GROUPS = ("linear", "angular")
TWIST_AXES = ("x", "y", "z")
# What a rollout assumes while no fresh cmd_vel is known.
NO_COMMAND_CHOICES = ("zero", "unknown")


def twist_indices(names: tuple[str, ...]) -> list[int]:
    """Positions of the model's action names in the 6-vector (linear xyz, angular xyz).

    Raises:
        ValueError: a name is not "<linear|angular>_<x|y|z>".
    """
    fields = [f"{group}_{axis}" for group in TWIST_GROUPS for axis in TWIST_AXES]
    unknown = [name for name in names if name not in fields]
    if unknown:
        raise ValueError(f"model action(s) {unknown} are not cmd_vel (Twist) fields; expected names from {fields}")
    return [fields.index(name) for name in names]


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
