"""Model actions as geometry_msgs/Twist fields: the action named "linear_x" is linear.x,
"angular_z" is angular.z, and so on. Shared by the bag reader (training, evaluation) and
the live node, so both read the same columns of cmd_vel for a model's action names."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

TWIST_FIELDS = tuple(f"{group}_{axis}" for group in ("linear", "angular") for axis in ("x", "y", "z"))
CMD_VEL_ACTIONS = ("linear_x", "angular_z")  # a ground robot's cmd_vel

TWIST, TWIST_STAMPED = "geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"
AUTO = "auto"
# The live node's `cmd_vel_type` parameter: auto (the type cmd_vel's publishers use), or a fixed type.
CMD_VEL_TYPES = {"twist": TWIST, "twist_stamped": TWIST_STAMPED}


def cmd_vel_type(setting: str, publisher_types: Collection[str], current: str | None) -> tuple[str | None, str | None]:
    """The type to subscribe cmd_vel with, and a warning to log, or None.

    A Twist subscription receives nothing from a TwistStamped publisher (and the reverse), so
    the robot's commands would silently never reach the rollouts. With `setting` auto the
    subscription follows the publishers' type; a fixed type is kept, with a warning when the
    publishers use another.

    Args:
        setting: "auto", "twist" or "twist_stamped".
        publisher_types: the message types of cmd_vel's publishers now (ROS graph discovery).
        current: the type subscribed now, or None.

    Returns:
        (type to subscribe, or None while auto has no publisher to follow; warning or None).

    Raises:
        ValueError: an unknown setting.
    """
    if setting != AUTO and setting not in CMD_VEL_TYPES:
        raise ValueError(f"cmd_vel_type must be {AUTO} or one of {sorted(CMD_VEL_TYPES)}, got {setting!r}")
    types = set(publisher_types)
    known = sorted(types & {TWIST, TWIST_STAMPED})
    other = sorted(types - {TWIST, TWIST_STAMPED})
    if setting != AUTO:
        wanted = CMD_VEL_TYPES[setting]
        mismatch = sorted(types - {wanted})
        warning = (f"cmd_vel is published as {', '.join(mismatch)} but cmd_vel_type is {setting} ({wanted}): those "
                   f"commands do not arrive; set cmd_vel_type:=auto") if mismatch else None
        return wanted, warning
    if other:
        warning = f"cmd_vel is published as {', '.join(other)}: not a Twist or TwistStamped, those commands are ignored"
    elif len(known) > 1:
        warning = f"cmd_vel has publishers of both {' and '.join(known)}: only the {current or known[0]} ones are read"
    else:
        warning = None
    if current in known or not known:
        return current, warning
    return known[0], warning


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


# A left-right mirror of the world (y -> -y in base_link, REP 103: x forward, y left, z up) flips
# linear.y, and, angular velocity being a pseudovector, angular.x and angular.z.
MIRROR_SIGNS = np.array([1, -1, 1, -1, 1, -1], np.float32)  # in TWIST_FIELDS order


def mirror_signs(names: tuple[str, ...]) -> np.ndarray:
    """float32 (A,) +1 / -1 per action: what a command becomes when the camera image is flipped
    left-right (a robot symmetric about its x-z plane, camera on that plane: turning left becomes
    turning right, forward stays forward).

    Raises:
        ValueError: a name is not one of TWIST_FIELDS.
    """
    return MIRROR_SIGNS[twist_indices(names)]
