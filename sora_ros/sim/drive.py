"""Differential drive: a (v, w) command, velocity and acceleration limits, and
the planar pose it moves. Pure numpy, no pybullet."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DriveLimits:
    """Limits of a differential-drive base (SI units)."""

    max_forward: float = 0.6  # m/s
    max_reverse: float = 0.2  # m/s, as a positive number
    max_turn: float = 1.5  # rad/s, either way
    max_linear_accel: float = 1.0  # m/s^2
    max_angular_accel: float = 4.0  # rad/s^2


@dataclass
class Pose2D:
    """Planar pose (m, m, rad) and body velocity (m/s, rad/s)."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    v: float = 0.0
    w: float = 0.0


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def limited_velocity(current: Pose2D, v_cmd: float, w_cmd: float, limits: DriveLimits, dt: float) -> tuple[float, float]:
    """The velocity reached after `dt` s of driving towards (v_cmd, w_cmd) within the limits.

    Non-finite commands count as a stop.
    """
    if not (math.isfinite(v_cmd) and math.isfinite(w_cmd)):
        v_cmd, w_cmd = 0.0, 0.0
    v_goal = _clip(v_cmd, -limits.max_reverse, limits.max_forward)
    w_goal = _clip(w_cmd, -limits.max_turn, limits.max_turn)
    dv = limits.max_linear_accel * dt
    dw = limits.max_angular_accel * dt
    return current.v + _clip(v_goal - current.v, -dv, dv), current.w + _clip(w_goal - current.w, -dw, dw)


def integrate(pose: Pose2D, v: float, w: float, dt: float) -> Pose2D:
    """The pose after moving at (v, w) for dt s (midpoint heading), velocity set to (v, w)."""
    mid_yaw = pose.yaw + 0.5 * w * dt
    yaw = math.atan2(math.sin(pose.yaw + w * dt), math.cos(pose.yaw + w * dt))
    return Pose2D(pose.x + v * dt * math.cos(mid_yaw), pose.y + v * dt * math.sin(mid_yaw), yaw, v, w)
