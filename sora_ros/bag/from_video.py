"""Convert a video file into a rosbag2 MCAP bag of camera images."""

from __future__ import annotations

from pathlib import Path

from sora_ros.bag import messages as m
from sora_ros.bag.video import VideoError, VideoReader, frame_stamp_ns
from sora_ros.bag.writing import BagWriter
from sora_ros.core.units import NS_PER_S

DEFAULT_TOPIC = "/camera/image_raw"
DEFAULT_FRAME_ID = "camera_optical_frame"


def video_to_bag(
    video: Path | str,
    out: Path | str,
    *,
    fps: float | None = None,
    topic: str = DEFAULT_TOPIC,
    compressed: bool = False,
    start_ns: int = 0,
    frame_id: str = DEFAULT_FRAME_ID,
    begin_s: float = 0.0,
    end_s: float | None = None,
    notes: list[str] | None = None,
) -> int:
    """Write the frames of `video` to a new bag at `out`, each stamped start_ns + its presentation time.

    Args:
        video: any file OpenCV decodes.
        out: the bag directory to create (must not exist).
        fps: stamp frame k at k / fps instead (a constant rate the user chose); default: each
            frame's own presentation time from the container (variable frame rate kept).
        topic: image topic; with `compressed`, CompressedImage (JPEG) on `topic`/compressed
            unless the topic already ends with /compressed.
        compressed: JPEG CompressedImage instead of rgb8 Image.
        start_ns: stamp of the first frame.
        frame_id: header frame_id of every image.
        begin_s, end_s: keep only frames with begin_s <= video time < end_s (seconds), e.g. to
            hold out the end of a clip for evaluation.
        notes: if given, receives the reader's notes on the frame timing (irregular, guessed).

    Returns:
        The number of frames written.

    Raises:
        VideoError: unreadable video, a non-positive fps, or frames without times and no fps.
        rosbags.rosbag2.WriterError: `out` exists.
    """
    reader = VideoReader(video)
    if fps is not None and fps <= 0:
        raise VideoError(f"{reader.path}: --fps must be positive, got {fps:g}")
    if compressed and not topic.endswith("/compressed"):
        topic = f"{topic}/compressed"
    frames = ((frame_stamp_ns(index, fps), rgb) for index, rgb in enumerate(reader.frames())) if fps \
        else reader.stamped_frames()
    count = 0
    with BagWriter(out) as bag:
        for video_ns, rgb in frames:
            if video_ns < begin_s * NS_PER_S:
                continue
            if end_s is not None and video_ns >= end_s * NS_PER_S:
                break
            stamp = start_ns + video_ns
            if compressed:
                bag.write(topic, m.COMPRESSED_IMAGE, stamp, m.compressed_image(rgb, stamp, frame_id))
            else:
                bag.write(topic, m.IMAGE, stamp, m.image(rgb, stamp, frame_id))
            count += 1
    if notes is not None:
        notes += reader.notes
    return count
