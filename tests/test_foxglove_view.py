"""`sora-ros view` over real DDS and a real WebSocket: a client speaking the Foxglove protocol
receives the camera image and a predicted frame of one horizon."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("foxglove")
websockets = pytest.importorskip("websockets")
from live_helpers import stop  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from sora_ros.harness import processes  # noqa: E402
from sora_ros.msg import FutureFrames  # noqa: E402
from sora_ros.nodes.messages import header, numpy_to_image  # noqa: E402

SUBPROTOCOL = "foxglove.sdk.v1"
LAYOUT = Path(__file__).parents[1] / "config" / "foxglove_layout.json"
CAMERA = np.full((6, 8, 3), 17, np.uint8)  # every byte 17
HORIZON_4 = np.full((6, 8, 3), 44, np.uint8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def receive(port: int, wanted: dict[str, bytes], timeout: float) -> tuple[dict[str, str], set[str]]:
    """Subscribe to the `wanted` channels; once a message holding its bytes came on each, return
    their schemas and every topic the server advertised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL])
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    async with ws:
        channels, got, advertised = {}, {}, set()
        while len(got) < len(wanted):
            message = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            if isinstance(message, str):
                op = json.loads(message)
                if op["op"] == "advertise":
                    advertised |= {c["topic"] for c in op["channels"]}
                    new = [c for c in op["channels"] if c["topic"] in wanted]
                    channels.update({c["id"]: c for c in new})
                    await ws.send(json.dumps({"op": "subscribe",
                                              "subscriptions": [{"id": c["id"], "channelId": c["id"]} for c in new]}))
                continue
            # Binary "message data": opcode 1, subscription id (u32), log time (u64), payload.
            assert message[0] == 1
            channel = channels[int.from_bytes(message[1:5], "little")]
            if wanted[channel["topic"]] in message[13:]:
                got[channel["topic"]] = channel["schemaName"]
        return got, advertised


def test_view_serves_the_camera_and_the_predictions_to_a_foxglove_client():
    port = free_port()
    view = processes.start([sys.executable, "-m", "sora_ros.cli", "view", "--image", "/camera/image_raw",
                            "--port", str(port)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    rclpy.init()
    node = rclpy.create_node("foxglove_view_test")
    camera = node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    futures = node.create_publisher(FutureFrames, "/world_model/futures", 5)
    done = threading.Event()

    def publish() -> None:
        while not done.wait(0.1):
            stamp = time.time_ns()
            camera.publish(numpy_to_image(CAMERA, "rgb8", header(stamp, "camera")))
            frames = [numpy_to_image(HORIZON_4 if k == 4 else CAMERA * 0, "rgb8", header(stamp + k * 10**8, "camera"))
                      for k in range(1, 9)]  # fmt: skip
            futures.publish(FutureFrames(header=header(stamp, "camera"), horizon=8, frames=frames,
                                         uncertainty=[0.1] * 8))  # fmt: skip

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        wanted = {"/camera/image_raw": CAMERA.tobytes(), "/world_model/futures/h4": HORIZON_4.tobytes()}
        got, advertised = asyncio.run(receive(port, wanted, timeout=60))
        assert got == {"/camera/image_raw": "foxglove.RawImage", "/world_model/futures/h4": "foxglove.RawImage"}
        layout = json.loads(LAYOUT.read_text())["configById"].values()
        shown = {c["imageMode"]["imageTopic"] for c in layout if "imageMode" in c} | \
                {c["topicPath"] for c in layout if "topicPath" in c} | \
                {p["value"].split(".")[0] for c in layout for p in c.get("paths", [])}
        assert shown <= advertised, f"the shipped layout shows topics the view does not serve: {shown - advertised}"
    finally:
        done.set()
        publisher.join()
        node.destroy_node()
        rclpy.shutdown()
        output = stop(view)
    assert view.returncode == 0 and f"ws://localhost:{port}" in output, output


def test_view_refuses_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "view", "--port", str(taken.getsockname()[1])],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "cannot serve on 127.0.0.1" in result.stderr, result.stderr
