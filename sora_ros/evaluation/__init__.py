"""Offline evaluation: image-quality metrics, baselines, and their aggregation (no rclpy, no torch)."""
