"""Test-wide settings: every pytest run talks DDS on its own domain, on this machine only."""

import os

# Two test runs on one machine (or a running demo) must not hear each other.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
