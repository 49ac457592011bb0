"""Offline evaluation: scoring, image-quality metrics, baselines, their aggregation and reports.

Rule: imports core/, runtime/, bag/ and numpy, cv2, matplotlib, tqdm; no rclpy, no torch,
no ROS messages, so a model is scored on a machine without ROS or PyTorch.
"""
