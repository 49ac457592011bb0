"""The sim node over real DDS, in its own process: it obeys cmd_vel and wanders without it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Twist  # noqa: E402
from live_helpers import start_node, stop  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

WORLD_SIZE = 6.0
NODE_ARGS = ["-p", "width:=32", "-p", "height:=24", "-p", "rate:=20.0", "-p", f"world_size:={WORLD_SIZE}",
             "-p", "cmd_vel_timeout:=0.3", "-p", "seed:=4"]


def yaw_of(msg: Odometry) -> float:
    q = msg.pose.pose.orientation
    return 2 * math.atan2(q.z, q.w)


class Listener:
    """A test node in a background executor that records odometry and images."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("sim_test_listener")
        self.odom: list[Odometry] = []
        self.images: list[Image] = []
        self.executed: list[Twist] = []
        self.lock = threading.Lock()
        self.node.create_subscription(Odometry, "odom", self._odom, 50)
        self.node.create_subscription(Image, "camera/image_raw", self.images.append, qos_profile_sensor_data)
        self.node.create_subscription(Twist, "/sim/cmd_vel_out", self._executed, 50)
        self.cmd = self.node.create_publisher(Twist, "cmd_vel", 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _odom(self, msg: Odometry) -> None:
        with self.lock:
            self.odom.append(msg)

    def _executed(self, msg: Twist) -> None:
        with self.lock:
            self.executed.append(msg)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def sim() -> Iterator[Listener]:
    process = start_node("sora_ros.nodes.sim", *NODE_ARGS)  # the harness's one way, which `stop` needs
    rclpy.init()
    listener = Listener()
    try:
        yield listener
    finally:
        listener.close()
        rclpy.shutdown()
        stop(process)


def test_turn_command_turns_the_robot_that_way(sim: Listener) -> None:
    assert sim.wait_for(lambda: len(sim.odom) >= 3, timeout=30), "no odometry from the sim node"
    assert sim.wait_for(lambda: len(sim.images) >= 1, timeout=10), "no image from the sim node"
    assert (sim.images[0].width, sim.images[0].height, sim.images[0].encoding) == (32, 24, "rgb8")
    for direction in (1.0, -1.0):
        turn = Twist()
        turn.angular.z = direction
        with sim.lock:
            start = len(sim.odom)

        def turned() -> bool:
            yaws = [yaw_of(m) for m in sim.odom[start:]]
            return len(yaws) > 1 and abs(sum(math.remainder(b - a, 2 * math.pi) for a, b in zip(yaws, yaws[1:]))) > 0.5

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not sim.wait_for(turned, timeout=0.05):
            sim.cmd.publish(turn)
        with sim.lock:
            yaws = [yaw_of(m) for m in sim.odom[start:]]
        total = sum(math.remainder(b - a, 2 * math.pi) for a, b in zip(yaws, yaws[1:]))
        assert total * direction > 0.5, f"commanded w={direction}, heading changed by {total:.2f} rad"
        with sim.lock:
            assert any(m.angular.z == direction and m.linear.x == 0.0 for m in sim.executed[-5:]), \
                "~/cmd_vel_out must carry the command the robot follows"


def test_without_commands_it_wanders_inside_the_world(sim: Listener) -> None:
    # 6 s of odometry: the first message heard depends on discovery, and some 3 s windows of
    # seed 4's path turn near an obstacle (0.31 m); every 6 s window moves at least 0.9 m.
    assert sim.wait_for(lambda: len(sim.odom) >= 120, timeout=40), "too little odometry from the sim node"
    with sim.lock:
        points = [(m.pose.pose.position.x, m.pose.pose.position.y) for m in sim.odom]
    travelled = sum(math.dist(a, b) for a, b in zip(points, points[1:]))
    assert travelled > 0.5, f"the robot wandered only {travelled:.2f} m"
    assert max(max(abs(x), abs(y)) for x, y in points) < WORLD_SIZE / 2
    with sim.lock:
        executed = [(m.linear.x, m.angular.z) for m in sim.executed]
    assert len(executed) >= 50, "the sim publishes the command it executes every step on ~/cmd_vel_out"
    assert max(abs(v) for v, _ in executed) > 0.05 and max(abs(w) for _, w in executed) > 0.05, \
        "wandering by itself, ~/cmd_vel_out carries its own (non-zero) commands"


def test_sim_help_lists_the_node_parameters_and_topics(capsys) -> None:
    from sora_ros.cli import main as cli
    from sora_ros.sim.parameters import SIM_PARAMETERS

    with pytest.raises(SystemExit):
        cli(["sim", "--help"])
    text = capsys.readouterr().out
    for spec in SIM_PARAMETERS:
        assert f"  {spec.name} (default {spec.default}" in text
    assert "~/cmd_vel_out" in text and "cmd_vel:=/sim/cmd_vel_out" in text
