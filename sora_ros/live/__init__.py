"""The live pipeline's logic without rclpy: context buffering, rollout scheduling and
deadlines, request checks, statistics, comparison images and the example planner's scoring.

The nodes in sora_ros/nodes are thin adapters around these modules.
"""
