"""Tiny nodes for the launch-runner tests, installed into a temporary ament prefix.

talker: publishes its `text` parameter on `chatter` every 100 ms.
listener: writes what it hears on `heard` to the file named by its `out` parameter.
"""

import sys
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import String

from sora_ros.nodes import spin


def talker() -> Node:
    node = Node("talker")
    text = node.declare_parameter("text", "hello").value
    publisher = node.create_publisher(String, "chatter", 10)
    node.create_timer(0.1, lambda: publisher.publish(String(data=f"{text} from {node.get_fully_qualified_name()}")))
    return node


def listener() -> Node:
    node = Node("listener")
    out = Path(node.declare_parameter("out", "").value)
    node.create_subscription(String, "heard", lambda msg: out.write_text(msg.data), 10)
    return node


def main() -> int:
    return spin({"talker": talker, "listener": listener}[sys.argv[1]])


if __name__ == "__main__":
    raise SystemExit(main())
