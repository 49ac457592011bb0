"""Test-wide settings: every pytest run talks DDS on its own domain, on this machine only."""

import os

# Two test runs on one machine (or a running demo) must not hear each other: a domain from the pid,
# unless the caller chose one (parallel sessions pick distinct ones; pids can collide mod 100).
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
