"""The harness: launches nodes and drives them over DDS from outside. Node
process start/stop, launch files, real-time bag replay and recording (bag_recorder.py), the futures recorder and
the DDS benchmark of the nodes.

Rule: may import every folder except model/ and cli/ (core, runtime, bag,
evaluation, sim, nodes, bench, msg, srv), rclpy, ROS messages and foxglove (the live view); no torch.
"""
