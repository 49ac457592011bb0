"""The `sim` node: the simulated camera robot on ROS 2.

Publishes camera/image_raw (rgb8), camera/camera_info (sensor-data QoS), odom
and, with publish_clock, /clock; follows cmd_vel (geometry_msgs/Twist) and
wanders by itself when no command arrived for cmd_vel_timeout seconds. Each
step it publishes the command it executes, followed or its own, on
~/cmd_vel_out (Twist: linear.x m/s, angular.z rad/s), just before the frame
that command leads to; a world model takes it with cmd_vel:=/sim/cmd_vel_out.

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
from sora_ros.nodes.parameters import IntegersForDoubles
from sora_ros.sim.parameters import SIM_PARAMETERS
from sora_ros.sim.recorder import BASE_FRAME, CAMERA_FRAME, ODOM_FRAME, POLICY_SEED_OFFSET
from sora_ros.sim.wander import WanderPolicy
from sora_ros.sim.world import SimWorld, WorldConfig

COMMAND_QOS_DEPTH = 10


class SimNode(IntegersForDoubles, Node):
    """Steps a SimWorld on a timer and publishes what its robot sees and where it is."""

    def __init__(self) -> None:
        super().__init__("sim")
        values = {spec.name: messages.declare(self, spec) for spec in SIM_PARAMETERS}
        rate, width, height, seed = values["rate"], values["width"], values["height"], values["seed"]
        world_size, num_objects = values["world_size"], values["num_objects"]
        self._publish_clock = values["publish_clock"]
        self._config = WorldConfig(width=width, height=height, rate_hz=rate, world_size=world_size, num_objects=num_objects)
        self._world = SimWorld(self._config, seed)
        self._policy = WanderPolicy(np.random.default_rng(seed + POLICY_SEED_OFFSET), self._config.limits)
        self._command: tuple[float, float] | None = None
        self._command_time = -math.inf  # time.monotonic() of the last cmd_vel

        self._image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self._odom_pub = self.create_publisher(Odometry, "odom", 10)
        self._executed_pub = self.create_publisher(Twist, "~/cmd_vel_out", COMMAND_QOS_DEPTH)
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
        self._executed_pub.publish(messages.twist(v, w))
        pose = self._world.step(v, w)
        stamp = self._world.stamp_ns if self._publish_clock else self.get_clock().now().nanoseconds
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=messages.header(stamp, "").stamp))
        cfg = self._config
        self._image_pub.publish(messages.numpy_to_image(self._world.render(), "rgb8", messages.header(stamp, CAMERA_FRAME)))
        self._info_pub.publish(messages.camera_info(cfg.width, cfg.height, cfg.vertical_fov_deg, stamp, CAMERA_FRAME))
        self._odom_pub.publish(messages.odometry(pose.x, pose.y, pose.yaw, pose.v, pose.w, stamp, ODOM_FRAME, BASE_FRAME))

    def destroy_node(self) -> None:
        world = getattr(self, "_world", None)  # None: a Ctrl-C while the node was being built
        if world is not None:
            world.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown."""
    return spin(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
