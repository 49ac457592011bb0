"""The `video_camera` node: a video file played as a camera, so any footage can
drive the live graph.

Publishes camera/image_raw (rgb8, sensor-data QoS) and, with
publish_compressed, camera/image_raw/compressed (JPEG), at the video's own
rate or `rate`. At the end it loops (or stops, with loop:=false); stamps come
from the node clock and never go backwards, across the loop included.

    python -m sora_ros.nodes.video_camera --ros-args -p video:=clip.mp4
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from sora_ros.bag.video import VideoError, VideoReader
from sora_ros.nodes import messages, spin

FALLBACK_RATE_HZ = 30.0  # when the file states no frame rate and none is set


class VideoCameraNode(Node):
    """Publishes the frames of a video file on a timer."""

    def __init__(self) -> None:
        """Raises:
        VideoError: the `video` parameter names no readable video.
        """
        super().__init__("video_camera")
        p = self.declare_parameter
        path = p("video", "", ParameterDescriptor(description="video file to play", read_only=True)).value
        rate = p("rate", 0.0, ParameterDescriptor(
            description="frames per second; 0 plays at the video's own rate", read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=240.0, step=0.0)])).value
        self._loop = p("loop", True, ParameterDescriptor(description="start again at the end", read_only=True)).value
        self._frame_id = p("frame_id", "camera_optical_frame", ParameterDescriptor(
            description="header frame_id of the images", read_only=True)).value
        compressed = p("publish_compressed", False, ParameterDescriptor(
            description="also publish JPEG on camera/image_raw/compressed", read_only=True)).value
        self._video = VideoReader(path)
        self.rate = rate or self._video.fps or FALLBACK_RATE_HZ
        self._frames: Iterator[np.ndarray] = self._video.frames()
        self._last_stamp = -1
        self.loops = 0
        self._image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self._compressed_pub = (
            self.create_publisher(CompressedImage, "camera/image_raw/compressed", qos_profile_sensor_data) if compressed else None
        )
        self._timer = self.create_timer(1.0 / self.rate, self._tick)
        self.get_logger().info(f"playing {path} at {self.rate:g} Hz{', looping' if self._loop else ''}")

    def _next_frame(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        if frame is None and self._loop:
            self.loops += 1
            self._frames = self._video.frames()
            frame = next(self._frames, None)
        return frame

    def _tick(self) -> None:
        frame = self._next_frame()  # uint8 (H, W, 3) RGB
        if frame is None:
            self.get_logger().info("video ended")
            self._timer.cancel()
            return
        # Strictly increasing even if the clock stalls or steps back (sim time, loops).
        stamp = max(self.get_clock().now().nanoseconds, self._last_stamp + 1)
        self._last_stamp = stamp
        header = messages.header(stamp, self._frame_id)
        self._image_pub.publish(messages.numpy_to_image(frame, "rgb8", header))
        if self._compressed_pub is not None:
            self._compressed_pub.publish(messages.rgb_to_compressed(frame, "jpeg", header))


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; 1 if the video cannot be read."""
    return spin(VideoCameraNode, args, fatal=(VideoError,))


if __name__ == "__main__":
    raise SystemExit(main())
