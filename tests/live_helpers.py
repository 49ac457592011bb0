"""A test-side ROS node for the world-model tests: publishes camera frames and commands,
records what the node under test sends back, and waits on events with timeouts."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from sora_ros.harness import processes, service_call
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.nodes.messages import header, numpy_to_image
from sora_ros.core.units import NS_PER_S
from sora_ros.srv import Rollout

# Generous for a shared 2-core machine; the waits return as soon as the event happens.
TIMEOUT_S = 60.0


def wait_mapped(process: subprocess.Popen, library: str) -> None:
    """Until `process` has loaded a shared library whose path holds `library` (its import began), so a
    signal sent then reaches our code, not Python's own start-up (slow on a loaded machine)."""
    deadline = time.monotonic() + TIMEOUT_S
    while library not in Path(f"/proc/{process.pid}/maps").read_text():
        assert process.poll() is None and time.monotonic() < deadline, f"{library} never loaded"
        time.sleep(0.005)


def start_node(module: str, *ros_args: str) -> subprocess.Popen:
    """A node process started the harness's one way, its output kept for `stop`."""
    return processes.start(processes.node_command(module, ros_args), stdout=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> str:
    """Stop a node the harness's one way (SIGINT, SIGTERM, SIGKILL) and return its output (if piped)."""
    processes.stop([process])
    return process.stdout.read() if process.stdout is not None else ""


class Probe:
    """Publishes `image` frames; records ~/latents, ~/futures and /diagnostics of `node_name`."""

    def __init__(self, node_name: str, image_topic: str, image_size: tuple[int, int]) -> None:
        self.node = rclpy.create_node(f"{node_name}_test_probe")  # one per node under test: no name clash
        self.size = image_size
        self.lock = threading.Lock()
        self.latents: list[PatchLatents] = []
        self.futures: list[FutureFrames] = []
        self.diagnostics: list[DiagnosticArray] = []
        reliable = QoSProfile(depth=50)
        self.node.create_subscription(PatchLatents, f"/{node_name}/latents", self._store(self.latents), reliable)
        self.node.create_subscription(FutureFrames, f"/{node_name}/futures", self._store(self.futures), reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._store(self.diagnostics), reliable)
        self.image_pub = self.node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.compressed_pub = self.node.create_publisher(CompressedImage, f"{image_topic}/compressed",
                                                         qos_profile_sensor_data)
        self.rollout = self.node.create_client(Rollout, f"/{node_name}/rollout")
        self.rng = np.random.default_rng(0)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _store(self, into: list) -> Callable:
        def callback(msg) -> None:
            with self.lock:
                into.append(msg)
        return callback

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                if predicate():
                    return
            assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
            time.sleep(0.02)

    def frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, (*self.size, 3), dtype=np.uint8)

    def send(self, stamp_s: float, pixels: np.ndarray | None = None, encoding: str = "rgb8") -> None:
        """Publish one frame and wait until the node has encoded it (one more ~/latents)."""
        with self.lock:
            seen = len(self.latents)
        msg = numpy_to_image(self.frame() if pixels is None else pixels, encoding,
                             header(round(stamp_s * NS_PER_S), "camera"))
        self._publish_until(msg, lambda: len(self.latents) > seen, "the frame's latents")

    def _publish_until(self, msg, condition: Callable[[], bool], what: str) -> None:
        # Best-effort QoS: republish until the node reacts (a lost first message is not a failure).
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            self.image_pub.publish(msg) if isinstance(msg, Image) else self.compressed_pub.publish(msg)
            for _ in range(25):
                with self.lock:
                    if condition():
                        return
                time.sleep(0.02)
            assert time.monotonic() < deadline, f"timed out waiting for {what}"

    def send_bad(self, msg, counter: str, status: str) -> None:
        """Publish a bad message until `counter` of the `status` diagnostics goes up."""
        before = self.counter(status, counter)
        self._publish_until(msg, lambda: self._counter_unlocked(status, counter) > before, f"{counter} to go up")

    def status(self, name: str):
        """The latest DiagnosticStatus called `name`, or None."""
        with self.lock:
            return self._status_unlocked(name)

    def _status_unlocked(self, name: str):
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name == name:
                    return status
        return None

    def counter(self, status: str, key: str) -> int:
        with self.lock:
            return self._counter_unlocked(status, key)

    def _counter_unlocked(self, status: str, key: str) -> int:
        found = self._status_unlocked(status)
        values = {} if found is None else {kv.key: kv.value for kv in found.values}
        return int(values.get(key, 0))

    def call(self, request: Rollout.Request) -> Rollout.Response:
        return service_call.call(self.rollout, request, TIMEOUT_S)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def rollout_request(actions: np.ndarray, samples: int = 1, seed: int = 0, images: bool = True) -> Rollout.Request:
    """A Rollout request for float32 (N, H, A) actions."""
    n, h, a = actions.shape
    return Rollout.Request(actions=actions.reshape(-1).tolist(), candidates=n, horizon=h, action_dim=a,
                           samples=samples, return_images=images, seed=seed)
