"""Units shared across the package. Time is integer nanoseconds everywhere (as in ROS and rosbag2)."""

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
