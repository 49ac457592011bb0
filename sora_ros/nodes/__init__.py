"""ROS 2 nodes: thin rclpy adapters around the project's rclpy-free cores."""
