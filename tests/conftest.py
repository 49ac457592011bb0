"""Test-wide settings: every pytest run talks DDS on its own domain, on this machine only,
with the Fast DDS profile the package ships (as `sora-ros` applies it), before any rclpy init."""

import os

from sora_ros.core.paths import apply_fastdds_profile

# Two test runs on one machine (or a running demo) must not hear each other: a domain from the pid,
# unless the caller chose one (parallel sessions pick distinct ones; pids can collide mod 100).
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
apply_fastdds_profile()
