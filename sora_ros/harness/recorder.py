"""An rclpy node in a background thread that records what a live run needs for its report:
the camera frames (at the model's size, by stamp), the world model's ~/futures and its
/diagnostics counters. `sora-ros demo` and `sora-ros eval --realtime` score from it with
sora_ros/evaluation/live_report.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
import time

import numpy as np

from sora_ros.core.units import NS_PER_MS, NS_PER_S, ros_time_ns

WORLD_MODEL_STATUS = "world_model: inference"
WORLD_MODEL_INPUT = "world_model: input"


class FutureRecorder:
    """Records `camera_topic` and `futures_topic` from construction until `close()`.

    Args:
        as_predicted: camera frame uint8 (H0, W0, 3) -> that frame as the model's predictions of it
            come (sora_ros.runtime.pipeline.as_predicted); may raise AspectError (not scored).
        dt_s: the model's step.
        camera_topic: the camera, sensor_msgs/Image, or CompressedImage when `compressed`.
        futures_topic: the world model's ~/futures.
        node_name: this recorder's ROS node name.

    Latency is measured as (futures received - origin stamp) on the wall clock, so the
    camera must stamp its frames with wall time (the sim and video nodes do; a bag replay
    rebases its stamps to the wall clock); with `sim_time` on this node's ROS clock, which
    follows /clock (a bag played with its own stamps).
    """

    def __init__(self, as_predicted: Callable[[np.ndarray], np.ndarray], dt_s: float, camera_topic: str, futures_topic: str,
                 compressed: bool = False, node_name: str = "future_recorder", sim_time: bool = False) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        from sora_ros.evaluation.live_report import Recording
        from sora_ros.msg import FutureFrames

        self.as_predicted = as_predicted
        self.recording = Recording(dt_ns=round(dt_s * NS_PER_S))
        self.lock = threading.Lock()
        from rclpy.parameter import Parameter

        rclpy.init(args=[])  # not the CLI's sys.argv (rcl reads NAME:=VALUE there as a remap)
        self.sim_time = sim_time
        self.node = rclpy.create_node(node_name, parameter_overrides=[Parameter("use_sim_time", value=sim_time)])
        kind = CompressedImage if compressed else Image
        self.node.create_subscription(kind, camera_topic, self._on_image, qos_profile_sensor_data)
        self.node.create_subscription(FutureFrames, futures_topic, self._on_futures, QoSProfile(depth=20))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=20))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_image(self, msg) -> None:
        from sensor_msgs.msg import CompressedImage

        from sora_ros.core.image import ImageConversionError, compressed_to_rgb, image_to_rgb
        from sora_ros.core.patch_grid import AspectError
        from sora_ros.nodes.messages import stamp_ns

        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
            frame = self.as_predicted(rgb)
        except (ImageConversionError, AspectError):
            return  # the world model counts it as a drop; there is nothing to score it against
        with self.lock:
            self.recording.real[stamp_ns(msg.header)] = frame.copy()
            self.recording.camera_frames += 1

    def _on_futures(self, msg) -> None:
        from sora_ros.core.image import image_to_numpy
        from sora_ros.evaluation.live_report import RecordedFuture
        from sora_ros.nodes.messages import stamp_ns

        received_ns = self.node.get_clock().now().nanoseconds if self.sim_time else time.time_ns()
        origin = stamp_ns(msg.header)
        frames = np.stack([image_to_numpy(image).copy() for image in msg.frames]) if msg.frames else None
        latency = ros_time_ns(msg.latency) / NS_PER_MS
        with self.lock:
            self.recording.futures.append(RecordedFuture(origin, frames, latency, (received_ns - origin) / NS_PER_MS,
                                                         msg.sampler_steps))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name in (WORLD_MODEL_STATUS, WORLD_MODEL_INPUT):
                with self.lock:
                    self.recording.diagnostics.update({kv.key: kv.value for kv in status.values})

    def lifecycle_state(self) -> str | None:
        """The world model's lifecycle state from its latest /diagnostics, None before any."""
        with self.lock:
            return self.recording.diagnostics.get("lifecycle_state")

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()
