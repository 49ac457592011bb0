"""PatchLatents, FutureFrames and Rollout round-trip between two processes over real DDS."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Duration, Time  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sora_ros.core.image import image_to_numpy  # noqa: E402
from sora_ros.nodes.messages import numpy_to_image  # noqa: E402
from sora_ros.msg import FutureFrames, PatchLatents  # noqa: E402
from sora_ros.srv import Rollout  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

ECHO = Path(__file__).parent / "helpers" / "interfaces_echo.py"
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def ros():
    """An echo node in a child process, and a node of our own spinning in a thread."""
    child = subprocess.Popen([sys.executable, str(ECHO)])
    rclpy.init()
    node = rclpy.create_node("interfaces_test")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        child.terminate()
        child.wait(timeout=10)


def round_trip(node, msg_type, kind: str, msg):
    """Publish `msg` on in/<kind> and return what comes back on out/<kind>."""
    received = []
    arrived = threading.Event()

    def on_echo(echo):
        received.append(echo)
        arrived.set()

    subscription = node.create_subscription(msg_type, f"out/{kind}", on_echo, 10)
    publisher = node.create_publisher(msg_type, f"in/{kind}", 10)
    deadline = time.monotonic() + TIMEOUT_S
    # Republish until the echo arrives: discovery of the child takes a moment.
    while not arrived.wait(0.2):
        assert time.monotonic() < deadline, f"no {kind} echo from the child process within {TIMEOUT_S} s"
        publisher.publish(msg)
    node.destroy_subscription(subscription)
    node.destroy_publisher(publisher)
    return received[0]


def test_patch_latents_round_trip(ros):
    latents = np.random.default_rng(0).standard_normal((8, 4, 6)).astype(np.float32)  # (C, H, W)
    msg = PatchLatents(
        header=Header(stamp=Time(sec=12, nanosec=345), frame_id="camera"),
        model_id="default@0.1.0#abcd",
        channels=8,
        height=4,
        width=6,
        patch_size=8,
        dtype="float32",
    )
    msg.data = latents.tobytes()
    echo = round_trip(ros, PatchLatents, "latents", msg)
    assert (echo.header.stamp.sec, echo.header.stamp.nanosec, echo.header.frame_id) == (12, 345, "camera")
    assert (echo.channels, echo.height, echo.width, echo.patch_size) == (8, 4, 6, 8)
    assert echo.model_id == "default@0.1.0#abcd" and echo.dtype == "float32"
    decoded = np.frombuffer(echo.data, dtype=echo.dtype).reshape(echo.channels, echo.height, echo.width)
    np.testing.assert_array_equal(decoded, latents)


def test_future_frames_round_trip(ros):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)  # (T, H, W, 3)
    msg = FutureFrames(
        header=Header(stamp=Time(sec=5), frame_id="camera"),
        model_id="m",
        dt=0.1,
        horizon=3,
        samples=4,
        uncertainty=[0.1, 0.2, 0.3],
        action_dim=2,
        action_names=["linear.x", "angular.z"],
        actions=[0.5, 0.0, 0.5, 0.1, 0.5, 0.2],
        sampler_steps=2,
        latency=Duration(sec=0, nanosec=80_000_000),
    )
    for k, frame in enumerate(frames):
        image = numpy_to_image(frame, "rgb8", Header(stamp=Time(sec=5, nanosec=(k + 1) * 100_000_000)))
        msg.frames.append(image)
        msg.latents.append(PatchLatents(header=image.header, channels=1, height=1, width=1, dtype="float32"))
    echo = round_trip(ros, FutureFrames, "futures", msg)
    assert echo.horizon == 3 and echo.samples == 4 and echo.sampler_steps == 2
    assert echo.dt == pytest.approx(0.1)
    np.testing.assert_allclose(echo.uncertainty, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(echo.actions, msg.actions, rtol=1e-6)
    assert list(echo.action_names) == ["linear.x", "angular.z"]
    assert echo.latency.nanosec == 80_000_000
    assert [f.header.stamp.nanosec for f in echo.frames] == [100_000_000, 200_000_000, 300_000_000]
    assert len(echo.latents) == 3
    for sent, got in zip(frames, echo.frames):
        np.testing.assert_array_equal(image_to_numpy(got), sent)


def test_rollout_service_round_trip(ros):
    client = ros.create_client(Rollout, "rollout")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S), "rollout service of the child never appeared"
    actions = np.arange(3 * 4 * 2, dtype=np.float32)  # (candidates, horizon, action_dim) flattened
    request = Rollout.Request(
        candidates=3, horizon=4, action_dim=2, samples=2, return_images=True, seed=7, actions=actions.tolist()
    )
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(TIMEOUT_S), "no rollout response within the timeout"
    response = future.result()
    assert response.success and response.message == "seed 7 images True"
    assert len(response.futures) == 3
    for c, candidate in enumerate(response.futures):
        assert (candidate.horizon, candidate.samples, candidate.action_dim) == (4, 2, 2)
        np.testing.assert_array_equal(candidate.actions, actions.reshape(3, 8)[c])
    ros.destroy_client(client)
