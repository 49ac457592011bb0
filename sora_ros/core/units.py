"""Units shared across the package. Time is integer nanoseconds everywhere (as in ROS and rosbag2)."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
# The latest stamp a builtin_interfaces/Time holds (int32 seconds): a later one cannot be published.
MAX_STAMP_NS = (2**31 - 1) * NS_PER_S


def sec_nanosec(ns: int) -> tuple[int, int]:
    """The (sec, nanosec) fields of a builtin_interfaces Time or Duration for `ns` >= 0 nanoseconds."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def ros_time_ns(time: Any) -> int:
    """Integer nanoseconds of a builtin_interfaces Time or Duration (an rclpy or a rosbags message)."""
    return int(time.sec) * NS_PER_S + int(time.nanosec)
