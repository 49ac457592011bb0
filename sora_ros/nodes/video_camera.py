"""The `video_camera` node: a video file played as a camera, so any footage can
drive the live graph.

Publishes camera/image_raw (rgb8, sensor-data QoS) and, with
publish_compressed, camera/image_raw/compressed (JPEG). By default each frame goes
out at its own presentation time in the video (a variable-frame-rate video keeps
its timing); with `rate` > 0, frame k at k / rate instead. At the end it loops (or
stops, with loop:=false); stamps come from the node clock and never go backwards,
across the loop included.

    python -m sora_ros.nodes.video_camera --ros-args -p video:=clip.mp4

A Ctrl-C (SIGINT) ends it quietly with exit code 0, while it plays and while it starts
(sora_ros/nodes/__init__.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from sora_ros.bag.video import MAX_PLAY_FPS, VideoError, VideoReader
from sora_ros.core.units import NS_PER_S
from sora_ros.nodes import messages, spin
from sora_ros.nodes.parameters import IntegersForDoubles

FALLBACK_RATE_HZ = 30.0  # when the file states no frame rate and none is set
# What to do about a video that cannot be played, closing each refusal; {example}: how to name one.
GIVE_A_VIDEO = "give the path of a video file OpenCV can decode (mp4, avi, mkv, ...), e.g. {example}"
NODE_EXAMPLE = "--ros-args -p video:=clip.mp4"


def video_file_problem(path: str | Path, example: str = NODE_EXAMPLE) -> str | None:
    """Why `path` is no video file to open (none given, not found, a folder, unreadable), or None;
    one line naming the path and what to do (`example`: how the caller names a video). Decoding is
    `open_video`'s to check."""
    give = GIVE_A_VIDEO.format(example=example)
    if not str(path):
        return f"no video given (the video parameter is empty); {give}"
    file = Path(path)
    if not file.exists():
        what = "a link to nothing" if file.is_symlink() else "no such file"
        return f"{path}: video file not found ({what}); check the path, or {give}"
    if file.is_dir():
        return f"{path}: a directory, not a video file; {give}"
    try:
        with open(file, "rb") as handle:
            handle.read(1)
    except OSError as error:  # permission denied, an I/O error
        return f"{path}: cannot read it ({error.strerror or error}); make it readable, or {give}"
    return None


def open_video(path: str | Path) -> VideoReader:
    """The reader of the video at `path`, its first frame decoded.

    Raises:
        VideoError: `video_file_problem`'s reasons, or nothing in the file decodes (one line: the path,
            what is wrong, what to do).
    """
    problem = video_file_problem(path)
    if problem:
        raise VideoError(problem)
    try:
        return VideoReader(path)
    except VideoError as error:  # not a video, an unsupported codec, empty
        raise VideoError(f"{error}; check that it plays (`ffprobe {path}`) and convert it if not (`ffmpeg -i {path} "
                         f"-c:v libx264 clip.mp4`), or {GIVE_A_VIDEO.format(example=NODE_EXAMPLE)}") from None


class VideoCameraNode(IntegersForDoubles, Node):
    """Publishes the frames of a video file on a timer."""

    def __init__(self) -> None:
        """Raises:
        VideoError: the `video` parameter names no readable video (`open_video`).
        """
        super().__init__("video_camera")
        p = self.declare_parameter
        path = p("video", "", ParameterDescriptor(description="video file to play", read_only=True)).value
        rate = p("rate", 0.0, ParameterDescriptor(
            description="frames per second; 0 plays at the video's own rate", read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=MAX_PLAY_FPS, step=0.0)])).value
        self._loop = p("loop", True, ParameterDescriptor(description="start again at the end", read_only=True)).value
        self._frame_id = p("frame_id", "camera_optical_frame", ParameterDescriptor(
            description="header frame_id of the images", read_only=True)).value
        compressed = p("publish_compressed", False, ParameterDescriptor(
            description="also publish JPEG on camera/image_raw/compressed", read_only=True)).value
        self._video = open_video(path)
        self._rate = rate  # 0: the video's own presentation times
        # Between loops: one frame interval of the set rate, else of the video's average rate.
        self._loop_gap_ns = round(NS_PER_S / (rate or self._video.fps or FALLBACK_RATE_HZ))
        self._frames = self._timed_frames()
        self._pending = next(self._frames)  # (video time ns, uint8 (H, W, 3) RGB): the next to publish
        self._loop_start_ns = self.get_clock().now().nanoseconds  # node time of video time 0 in this loop
        self._last_stamp = -1
        self.loops = 0
        self._image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self._compressed_pub = (
            self.create_publisher(CompressedImage, "camera/image_raw/compressed", qos_profile_sensor_data) if compressed else None
        )
        self._timer = self.create_timer(self._loop_gap_ns / NS_PER_S, self._tick)
        self._timer.timer_period_ns = 1  # the first frame at once; each tick sets the wait for the next
        self._timer.reset()
        timing = f"at {rate:g} Hz (rate)" if rate else "at its own frame times" + (
            f" ({self._video.fps:g} fps on average)" if self._video.fps else "")
        self.get_logger().info(f"playing {path} {timing}{', looping' if self._loop else ''}")

    def _timed_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(video time ns, RGB) of one pass: presentation times, or k / rate with `rate`."""
        if self._rate:
            return ((round(k * NS_PER_S / self._rate), rgb) for k, rgb in enumerate(self._video.frames()))
        return self._video.stamped_frames()

    def _advance(self) -> None:
        """Fetch the next frame into `_pending` (None at the end), starting a new pass when looping."""
        last_ns = self._pending[0]
        self._pending = next(self._frames, None)
        if self._pending is None and self._loop:
            for note in self._video.notes if not self._rate and self.loops == 0 else ():
                self.get_logger().info(f"{self._video.path}: {note}")
            self.loops += 1
            self._loop_start_ns += last_ns + self._loop_gap_ns
            self._frames = self._timed_frames()
            self._pending = next(self._frames, None)

    def _tick(self) -> None:
        if self._pending is None:
            return
        frame = self._pending[1]  # uint8 (H, W, 3) RGB
        self._publish(frame)
        self._advance()
        if self._pending is None:
            self.get_logger().info("video ended")
            self._timer.cancel()
            return
        due_ns = self._loop_start_ns + self._pending[0]
        self._timer.timer_period_ns = max(1, due_ns - self.get_clock().now().nanoseconds)
        self._timer.reset()

    def _publish(self, frame: np.ndarray) -> None:
        # Strictly increasing even if the clock stalls or steps back (sim time, loops).
        stamp = max(self.get_clock().now().nanoseconds, self._last_stamp + 1)
        self._last_stamp = stamp
        header = messages.header(stamp, self._frame_id)
        self._image_pub.publish(messages.numpy_to_image(frame, "rgb8", header))
        if self._compressed_pub is not None:
            self._compressed_pub.publish(messages.rgb_to_compressed(frame, "jpeg", header))


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; 1 if the video cannot be read (one line), 0 on Ctrl-C."""
    return spin(VideoCameraNode, args, fatal=(VideoError,))


if __name__ == "__main__":
    raise SystemExit(main())
