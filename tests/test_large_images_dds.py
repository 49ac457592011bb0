"""A 640x480 camera through real DDS on one host (with the Fast DDS profile the package ships,
which conftest applies as sora-ros does), the latched ~/model_info, and the input diagnostics
of a deactivated node."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from live_helpers import Probe, start_node, stop  # noqa: E402
from sora_ros.core.paths import default_model_dir  # noqa: E402
from sora_ros.core.units import NS_PER_S  # noqa: E402
from sora_ros.nodes.messages import header, numpy_to_image  # noqa: E402

CAMERA = "/large_test/image"
# A name of its own: a node of another test still winding down must not answer for this one.
NODE = "large_test_world_model"
INPUT = f"{NODE}: input"
RATE_HZ, SECONDS = 15.0, 4.0
pytestmark = pytest.mark.own_process


@pytest.fixture(scope="module")
def node() -> Iterator[Probe]:
    rclpy.init()
    process = start_node("sora_ros.nodes.world_model", "-p", f"model_path:={default_model_dir()}",
                         "-p", "diagnostics_period_s:=0.2", "-r", f"image:={CAMERA}", "-r", f"__node:={NODE}",
                         "-p", "rollout_rate:=2.0",  # transport is under test: rollouts at camera size are costly
                         "-p", "qos_depth:=10")  # a busy 2-core host may hold the callback past one frame period
    probe = Probe(NODE, CAMERA, (480, 640))
    try:
        yield probe
    finally:
        probe.close()
        output = stop(process)
        rclpy.shutdown()
        assert "Traceback" not in output, output


# Failed 2 of 4 clean-clone CI runs right after the main pytest (and passed 5 of 5 alone, and in
# every `make test` run by hand): cause not found. Rerun once; the message says what the probe saw.
@pytest.mark.flaky(reruns=1, reruns_delay=2)
def test_640x480_at_15_hz_reaches_the_node_and_futures_come_out(node: Probe) -> None:
    node.send(1.0)  # matched and encoding
    before = node.counter(INPUT, "frames_received")
    frames = [numpy_to_image(node.frame(), "rgb8", header(0, "camera")) for _ in range(4)]  # (480, 640, 3) each
    start, sent = time.monotonic(), 0
    while sent < RATE_HZ * SECONDS:
        msg = frames[sent % len(frames)]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(NS_PER_S * 2 + sent * round(NS_PER_S / RATE_HZ),
                                                                NS_PER_S)
        node.image_pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / RATE_HZ - time.monotonic()))
    try:
        node.wait_for(lambda: node._counter_unlocked(INPUT, "frames_received") - before >= 0.9 * sent,
                      f"90% of {sent} 640x480 frames to reach the node", timeout_s=20)
    except AssertionError as error:
        raise AssertionError(f"{error}: frames_received {before} -> {node.counter(INPUT, 'frames_received')}, "
                             f"{len(node.diagnostics)} /diagnostics arrays and {len(node.latents)} ~/latents seen "
                             "by the probe") from None
    node.wait_for(lambda: len(node.futures) > 0, "futures from the 640x480 frames", timeout_s=10)


def test_model_info_is_latched_for_a_late_subscriber(node: Probe) -> None:
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    received: list[String] = []
    node.node.create_subscription(String, f"/{NODE}/model_info", received.append, latched)
    node.wait_for(lambda: received, "~/model_info for a subscriber that came after it was published")
    info = json.loads(received[0].data)
    assert info["model_id"].startswith("default@") and info["dt_s"] == pytest.approx(0.1)
    assert info["context_frames"] == 4 and info["input_size"] == [64, 64] and info["providers"]
    assert info["dynamics_precision"] == "int8"  # auto: the default model ships int8 graphs, the CPU runs them
    assert [a["name"] for a in info["actions"]] == ["linear_x", "angular_z"] and len(info["latent_shape"]) == 3


def test_a_deactivated_node_says_inactive_not_camera_error(node: Probe) -> None:
    client = node.node.create_client(ChangeState, f"/{NODE}/change_state")
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE)))
    node.wait_for(future.done, "deactivate")
    assert future.result().success
    node.wait_for(lambda: (s := node._status_unlocked(INPUT)) is not None and s.message.startswith("inactive"),
                  "the input status to say inactive")
    time.sleep(1.5)  # longer than the watchdog: still no camera ERROR
    assert node.status(INPUT).level == b"\x00" and node.status(INPUT).message.startswith("inactive")
