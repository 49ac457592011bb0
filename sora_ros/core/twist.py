"""Model actions as geometry_msgs/Twist fields: the action named "linear_x" is linear.x,
"angular_z" is angular.z, and so on. Shared by the bag reader (training, evaluation) and
the live node, so both read the same columns of cmd_vel for a model's action names."""

from __future__ import annotations

from typing import Any

import numpy as np

TWIST_FIELDS = tuple(f"{group}_{axis}" for group in ("linear", "angular") for axis in ("x", "y", "z"))
CMD_VEL_ACTIONS = ("linear_x", "angular_z")  # a ground robot's cmd_vel


def twist_indices(names: tuple[str, ...]) -> list[int]:
    """Positions of the model's action names in `twist_vector`'s 6-vector.

    Raises:
        ValueError: a name is not one of TWIST_FIELDS.
    """
    unknown = [name for name in names if name not in TWIST_FIELDS]
    if unknown:
        raise ValueError(f"model action(s) {unknown} are not cmd_vel (Twist) fields; expected names from {list(TWIST_FIELDS)}")
    return [TWIST_FIELDS.index(name) for name in names]


def twist_vector(twist: Any) -> np.ndarray:
    """float32 (6,) linear xyz, angular xyz of a Twist (rclpy or rosbags message)."""
    return np.array([twist.linear.x, twist.linear.y, twist.linear.z,
                     twist.angular.x, twist.angular.y, twist.angular.z], np.float32)  # fmt: skip
