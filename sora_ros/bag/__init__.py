"""Rosbag2 I/O without ROS: writing helpers, streaming readers, `bag info`,
video-to-bag conversion and the clip reader shared by training and evaluation.

Everything here is built on the `rosbags` library and imports no rclpy, so it
runs on a machine without a ROS install. Time is integer nanoseconds throughout.

Rule: imports core/ and numpy, cv2, rosbags, yaml, tqdm, zstd (backports.zstd before Python 3.14,
as rosbags does); no rclpy, no torch.
"""
