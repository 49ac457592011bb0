"""A simulated camera robot in pybullet (DIRECT mode, CPU rendering) and the
tools that record it to bags. The world and its physics import no rclpy; the
ROS node in sora_ros.nodes.sim is a thin adapter around SimWorld.

Rule: imports core/, bag/ and numpy, cv2, pybullet, pybullet_data, pybullet_utils,
tqdm; no rclpy, no torch.
"""
