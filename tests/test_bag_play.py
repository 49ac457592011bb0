"""`sora-ros bag play` over real DDS: every message, at the recorded rate, remapped, with the
recorded QoS and /clock; and its errors before anything is published."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Twist  # noqa: E402
from live_helpers import stop  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from sora_ros import cli  # noqa: E402
from sora_ros.bag import messages as m  # noqa: E402
from sora_ros.harness import processes  # noqa: E402
from sora_ros.nodes.messages import stamp_ns  # noqa: E402

FRAMES, PERIOD_NS, START_NS = 20, 100_000_000, 1_700_000_000 * 10**9  # 10 Hz for 1.9 s
RATE = 2.0


def qos(reliability: QosReliability, durability: QosDurability) -> Qos:
    never = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 5, reliability, durability, never, never, QosLiveliness.AUTOMATIC, never, False)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """/cam: 20 frames at 10 Hz recorded best-effort, frame k all bytes k; /note: one latched
    String; /cmd: Twists without recorded QoS."""
    path = tmp_path_factory.mktemp("play") / "bag"
    store = m.TYPESTORE
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection("/cam", m.IMAGE, typestore=store,
                                    offered_qos_profiles=[qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE)])
        note = writer.add_connection("/note", "std_msgs/msg/String", typestore=store,
                                     offered_qos_profiles=[qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)])
        cmd = writer.add_connection("/cmd", m.TWIST, typestore=store)
        writer.write(note, START_NS, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hello"), "std_msgs/msg/String"))
        for k in range(FRAMES):
            t = START_NS + k * PERIOD_NS
            image = store.types[m.IMAGE](header=m.header(t, "cam"), height=2, width=3, encoding="rgb8", is_bigendian=0,
                                         step=9, data=np.full(18, k, np.uint8))
            writer.write(cam, t, store.serialize_cdr(image, m.IMAGE))
            writer.write(cmd, t, store.serialize_cdr(m.twist(0.1 * k, 0.0), m.TWIST))
    return path


class Listener:
    def __init__(self) -> None:
        self.node = rclpy.create_node("bag_play_test")
        self.lock = threading.Lock()
        self.images: list[tuple[float, Image]] = []  # (monotonic arrival, message)
        self.clock: list[int] = []
        self.cmds: list[Twist] = []
        self.notes: list[str] = []
        sub = self.node.create_subscription
        sub(Image, "/camera/image_raw", lambda msg: self._add(self.images, (time.monotonic(), msg)), qos_profile_sensor_data)
        sub(Clock, "/clock", lambda msg: self._add(self.clock, msg.clock.sec * 10**9 + msg.clock.nanosec), 100)
        sub(Twist, "/cmd", lambda msg: self._add(self.cmds, msg), 100)
        sub(String, "/note", lambda msg: self._add(self.notes, msg.data),
            QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _add(self, store: list, item) -> None:
        with self.lock:
            store.append(item)

    def full_loop(self) -> list[tuple[float, Image]] | None:
        """The frames of one whole pass through the bag (0 .. FRAMES-1 in a row), once received."""
        with self.lock:
            index = [msg.data[0] for _, msg in self.images]
            for start in range(len(index) - FRAMES + 1):
                if index[start : start + FRAMES] == list(range(FRAMES)):
                    return self.images[start : start + FRAMES]
        return None


@pytest.fixture
def listener():
    rclpy.init()
    listener = Listener()
    yield listener
    listener.executor.shutdown()
    listener.node.destroy_node()
    rclpy.shutdown()


def test_bag_play_publishes_every_message_at_the_recorded_rate_with_its_qos(bag, listener):
    player = processes.start([sys.executable, "-m", "sora_ros.cli", "bag", "play", str(bag), "--loop", "--rate",
                              str(RATE), "--clock", "50", "--remap", "/cam:=/camera/image_raw"],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (frames := listener.full_loop()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert frames is not None, "no whole pass of the bag's 20 frames arrived"
        span = frames[-1][0] - frames[0][0]
        expected = (FRAMES - 1) * PERIOD_NS / 1e9 / RATE
        assert 0.7 * expected < span < 1.6 * expected, f"{FRAMES} frames spread over {span:.2f} s, expected {expected:.2f} s"
        assert [stamp_ns(msg.header) for _, msg in frames] == [START_NS + k * PERIOD_NS for k in range(FRAMES)], \
            "header stamps go out as recorded"
        published = {name: info.qos_profile for name in ("/camera/image_raw", "/note")
                     for info in listener.node.get_publishers_info_by_topic(name)}
        assert published["/camera/image_raw"].reliability == ReliabilityPolicy.BEST_EFFORT, "recorded best effort"
        assert published["/note"].durability == DurabilityPolicy.TRANSIENT_LOCAL, "recorded latched"
        with listener.lock:
            assert "hello" in listener.notes
            assert {round(cmd.linear.x, 3) for cmd in listener.cmds} >= {round(0.1 * k, 3) for k in range(FRAMES)}
            clock = list(listener.clock)
        assert len(clock) > 20 and all(START_NS <= t <= START_NS + FRAMES * PERIOD_NS for t in clock), \
            "/clock carries the bag's time"
    finally:
        output = stop(player)
    assert player.returncode == 0 and "stopped by Ctrl-C" in output, output


def test_bag_play_refuses_an_unknown_topic_naming_what_the_bag_has(bag, capsys):
    assert cli.main(["bag", "play", str(bag), "--topics", "/camera"]) == 1
    error = capsys.readouterr().err
    assert "no topic /camera in the bags" in error and "/cam (sensor_msgs/msg/Image)" in error


def test_bag_play_clock_with_restamp_is_a_usage_error_before_ros_starts(bag, capsys, monkeypatch):
    monkeypatch.setattr(rclpy, "init", lambda **_: pytest.fail("rclpy started for a refused command"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["bag", "play", str(bag), "--clock", "--restamp"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "usage: sora-ros bag play" in error
    assert "sora-ros bag play: error: --clock and --restamp together: /clock carries the bag's time, --restamp " \
           "moves the stamps onto the wall clock; choose one" in error, error


def test_the_player_class_refuses_clock_with_restamp_itself(bag):
    # Callers of the library (not the CLI, which refuses it at parsing) get the same guard.
    from sora_ros.harness.player import BagPlayer, PlayError

    with pytest.raises(PlayError, match="restamped messages and /clock from the bag disagree"):
        BagPlayer(None, [bag], clock_hz=10.0, restamp=True)
