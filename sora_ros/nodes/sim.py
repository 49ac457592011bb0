"""The `sim` node: the simulated camera robot on ROS 2.

Publishes camera/image_raw (rgb8), camera/camera_info (sensor-data QoS), odom
and, with publish_clock, /clock; follows cmd_vel (geometry_msgs/Twist) and
wanders by itself when no command arrived for cmd_vel_timeout seconds.

    python -m sora_ros.nodes.sim --ros-args -p seed:=3 -p rate:=10.0
"""

from __future__ import annotations

import math
import time

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image

from sora_ros.nodes import messages, spin
from sora_ros.sim.recorder import BASE_FRAME, CAMERA_FRAME, ODOM_FRAME, POLICY_SEED_OFFSET
from sora_ros.sim.wander import WanderPolicy
from sora_ros.sim.world import SimWorld, WorldConfig

COMMAND_QOS_DEPTH = 10


class SimNode(Node):
    """Steps a SimWorld on a timer and publishes what its robot sees and where it is."""

    def __init__(self) -> None:
        super().__init__("sim")
        p = self.declare_parameter
        rate = p("rate", 10.0, messages.float_descriptor("frames per second (wall clock and simulated time)", 0.5, 60.0, True)).value
        width = p("width", 128, messages.int_descriptor("image width in pixels", 8, 1024, True)).value
        height = p("height", 128, messages.int_descriptor("image height in pixels", 8, 1024, True)).value
        seed = p("seed", 0, messages.int_descriptor("world seed: same seed, same world", 0, 2**31 - 1, True)).value
        world_size = p("world_size", 8.0, messages.float_descriptor("side of the square room in metres", 3.0, 50.0, True)).value
        num_objects = p("num_objects", 30, messages.int_descriptor("static objects in the room", 0, 300, True)).value
        p("cmd_vel_timeout", 0.5, messages.float_descriptor("seconds without cmd_vel before the robot wanders by itself", 0.0, 60.0))
        self._publish_clock = p("publish_clock", False, messages.plain_descriptor(
            "publish /clock and stamp everything with simulated time (for use_sim_time)")).value
        self._config = WorldConfig(width=width, height=height, rate_hz=rate, world_size=world_size, num_objects=num_objects)
        self._world = SimWorld(self._config, seed)
        self._policy = WanderPolicy(np.random.default_rng(seed + POLICY_SEED_OFFSET), self._config.limits)
        self._command: tuple[float, float] | None = None
        self._command_time = -math.inf  # time.monotonic() of the last cmd_vel

        self._image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self._odom_pub = self.create_publisher(Odometry, "odom", 10)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if self._publish_clock else None
        self.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, COMMAND_QOS_DEPTH)
        self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(f"sim: seed {seed}, {width}x{height} at {rate:g} Hz, room {world_size:g} m")

    def _on_cmd_vel(self, msg: Twist) -> None:
        self._command = (msg.linear.x, msg.angular.z)  # non-finite values stop the robot (drive.limited_velocity)
        self._command_time = time.monotonic()

    def _tick(self) -> None:
        timeout = self.get_parameter("cmd_vel_timeout").value
        if self._command is not None and time.monotonic() - self._command_time <= timeout:
            v, w = self._command
        else:
            v, w = self._policy.act(self._world.ranges(), 1.0 / self._config.rate_hz)
        pose = self._world.step(v, w)
        stamp = self._world.stamp_ns if self._publish_clock else self.get_clock().now().nanoseconds
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=messages.header(stamp, "").stamp))
        cfg = self._config
        self._image_pub.publish(messages.numpy_to_image(self._world.render(), "rgb8", messages.header(stamp, CAMERA_FRAME)))
        self._info_pub.publish(messages.camera_info(cfg.width, cfg.height, cfg.vertical_fov_deg, stamp, CAMERA_FRAME))
        self._odom_pub.publish(messages.odometry(pose.x, pose.y, pose.yaw, pose.v, pose.w, stamp, ODOM_FRAME, BASE_FRAME))

    def destroy_node(self) -> None:
        self._world.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown."""
    return spin(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
