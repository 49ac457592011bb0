"""The `encoder` role: camera frames -> ~/latents (sora_ros/msg/PatchLatents).

    python -m sora_ros.nodes.encoder --ros-args -p model_path:=models/default -r image:=/camera/image_raw

The image callback only puts the frame in a one-slot mailbox (`LatestSlot`): a frame that
arrives before the last was taken replaces it (counted as drop/superseded). The encoder
thread converts and encodes the newest frame and publishes its latents.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

from sora_ros.core.image import DEFAULT_MAX_PIXELS, ImageConversionError, compressed_to_rgb, image_to_rgb
from sora_ros.core.scheduling import LatestSlot
from sora_ros.core.stats import LatencyWindow
from sora_ros.msg import PatchLatents
from sora_ros.nodes import messages as m
from sora_ros.nodes import spin_lifecycle
from sora_ros.nodes.model_node import WORKER_POLL_S, ModelNode
from sora_ros.runtime.engine import NonFiniteOutputError
from sora_ros.runtime.pipeline import FrameRefusedError

MAX_IMAGE_PIXELS_LIMIT = 1 << 28  # the largest pixel budget the parameter accepts (16384 x 16384)


class EncoderNode(ModelNode):
    """Camera -> ~/latents. See the module docstring."""

    ENCODES = True

    def __init__(self, name: str = "encoder") -> None:
        super().__init__(name)
        self._slot: LatestSlot = LatestSlot()
        self.latency.update(convert=LatencyWindow(), encode=LatencyWindow())
        self._camera_shape: tuple[int, ...] | None = None  # of the last encoded frame, to log a new camera once

    def _declare_role_parameters(self) -> None:
        super()._declare_role_parameters()
        self.declare_parameter("compressed", False, m.plain_descriptor(
            "subscribe <image>/compressed (JPEG/PNG, image_transport's topic) instead of image"))
        self.declare_parameter("max_image_pixels", DEFAULT_MAX_PIXELS, m.int_descriptor(
            "pixel budget (width x height) of a camera image, checked on its header before decoding; over it: "
            "drop/image_too_large", 1, MAX_IMAGE_PIXELS_LIMIT))

    def _create_outputs(self, reliable: QoSProfile) -> None:
        super()._create_outputs(reliable)
        self._outputs["latents"] = self.create_lifecycle_publisher(PatchLatents, "~/latents", reliable)

    def _create_inputs(self, sensor: QoSProfile) -> None:
        super()._create_inputs(sensor)
        kind, topic = (CompressedImage, self._compressed_topic()) if self.get_parameter("compressed").value \
            else (Image, "image")
        self._inputs.append(self.create_subscription(kind, topic, self._on_image, sensor))

    def _compressed_topic(self) -> str:
        """image_transport's rule: `<image as remapped>/compressed` (`-r image:=/camera/image_raw` ->
        /camera/image_raw/compressed), unless `image/compressed` is remapped itself."""
        own = self.resolve_topic_name("image/compressed")
        if own != self.resolve_topic_name("image/compressed", only_expand=True):
            return own
        return f"{self.resolve_topic_name('image').rstrip('/')}/compressed"

    def _loops(self) -> list[Callable[[], None]]:
        return [*super()._loops(), self._encode_loop]

    def _wake_workers(self) -> None:
        super()._wake_workers()
        self._slot.close()
        self.counters.add("drop/superseded", self._slot.superseded)  # the next activation gets a new slot
        self._slot = LatestSlot()

    def _counters(self) -> dict[str, int]:
        counters = super()._counters()
        counters["drop/superseded"] = counters.get("drop/superseded", 0) + self._slot.superseded
        return counters

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.frames_in.tick(value=self._stamp_age_s(m.stamp_ns(msg.header)))
        self._slot.put((msg, time.monotonic()))

    def _encode_loop(self) -> None:
        while self._workers.running:
            if (item := self._slot.take(WORKER_POLL_S)) is not None:
                self._guarded("encode", self._encode, *item)

    def _encode(self, msg: Image | CompressedImage, receipt_s: float) -> None:
        if self._malformed_stamp(msg.header):
            return
        start = time.perf_counter()
        budget = self.get_parameter("max_image_pixels").value
        try:
            convert = compressed_to_rgb if isinstance(msg, CompressedImage) else image_to_rgb
            rgb = convert(msg, budget)  # (H0, W0, 3)
            converted = time.perf_counter()
            fitted, latent = self.pipeline.encode(rgb)  # (H, W, 3), (C, h, w)
        except ImageConversionError as error:
            return self._drop(error.reason, str(error))
        except FrameRefusedError as error:
            return self._drop(error.reason, str(error))
        except NonFiniteOutputError as error:
            return self._drop("nonfinite_output", str(error))
        # The first frame, or the camera changed: say what the model sees (once per period for a
        # camera that changes size every frame).
        if rgb.shape != self._camera_shape and self._throttle.ready("camera_size"):
            self._camera_shape = rgb.shape
            view = self.pipeline.camera_view(rgb).shape
            cropped = "" if view == rgb.shape else \
                f", cropped to its centred {view[1]}x{view[0]} (aspect_policy crop: outside the model's range)"
            self.get_logger().info(f"camera {rgb.shape[1]}x{rgb.shape[0]}{cropped}: model input {fitted.shape[1]}x"
                                   f"{fitted.shape[0]} ({latent.shape[2]}x{latent.shape[1]} latent cells)")
        self.latency["convert"].add(1e3 * (converted - start))
        self.latency["encode"].add(1e3 * (time.perf_counter() - converted))
        stamp, frame_id = m.stamp_ns(msg.header), msg.header.frame_id
        self._outputs["latents"].publish(m.patch_latents(latent, stamp, frame_id, self.model, self.pipeline.info))
        self.counters.add("published/latents")
        self._encoded(stamp, frame_id, latent, receipt_s, rgb, fitted)  # anchored predictions warp the camera frame


def main(args: list[str] | None = None) -> int:
    """The `encoder` executable; 1 if its model fails to configure."""
    return spin_lifecycle(EncoderNode, sys.argv if args is None else args)


if __name__ == "__main__":
    raise SystemExit(main())
