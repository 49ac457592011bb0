"""cmd_vel's type, Twist or TwistStamped, chosen as its publishers use it (sora_ros.core.twist.cmd_vel_type)."""

from __future__ import annotations

import pytest

from sora_ros.core.twist import TWIST, TWIST_STAMPED, cmd_vel_type, mirror_signs


def test_auto_follows_the_publishers() -> None:
    assert cmd_vel_type("auto", [], None) == (None, None)  # nothing to follow yet
    assert cmd_vel_type("auto", [TWIST_STAMPED], None) == (TWIST_STAMPED, None)
    assert cmd_vel_type("auto", [TWIST], TWIST_STAMPED) == (TWIST, None)  # the publisher changed type
    assert cmd_vel_type("auto", [], TWIST) == (TWIST, None)  # the publisher went away: keep listening


def test_mixed_or_foreign_publishers_warn() -> None:
    wanted, warning = cmd_vel_type("auto", [TWIST, TWIST_STAMPED], TWIST)
    assert wanted == TWIST and "publishers of both" in warning and f"only the {TWIST} ones" in warning
    wanted, warning = cmd_vel_type("auto", ["nav_msgs/msg/Odometry"], None)
    assert wanted is None and "nav_msgs/msg/Odometry: not a Twist or TwistStamped" in warning


def test_a_fixed_type_warns_when_the_publishers_use_the_other() -> None:
    assert cmd_vel_type("twist", [TWIST], None) == (TWIST, None)
    wanted, warning = cmd_vel_type("twist", [TWIST_STAMPED], None)
    assert wanted == TWIST and f"published as {TWIST_STAMPED} but cmd_vel_type is twist" in warning
    with pytest.raises(ValueError, match="cmd_vel_type must be auto or one of"):
        cmd_vel_type("stamped", [], None)


def test_a_left_right_mirror_flips_sideways_motion_and_turns_not_forward_motion() -> None:
    assert mirror_signs(("linear_x", "angular_z")).tolist() == [1.0, -1.0]
    assert mirror_signs(("linear_y", "linear_z", "angular_x", "angular_y")).tolist() == [-1.0, 1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="not cmd_vel"):
        mirror_signs(("steering",))
