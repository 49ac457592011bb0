"""Convert a video file into a rosbag2 MCAP bag of camera images."""

from __future__ import annotations

from pathlib import Path

from sora_ros.bag import messages as m
from sora_ros.bag.video import VideoError, VideoReader, frame_stamp_ns
from sora_ros.bag.writing import BagWriter

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
) -> int:
    """Write the frames of `video` to a new bag at `out`, frame k stamped start_ns + k / fps.

    Args:
        video: any file OpenCV decodes.
        out: the bag directory to create (must not exist).
        fps: stamp rate; default the video's own rate.
        topic: image topic; with `compressed`, CompressedImage (JPEG) on `topic`/compressed
            unless the topic already ends with /compressed.
        compressed: JPEG CompressedImage instead of rgb8 Image.
        start_ns: stamp of the first frame.
        frame_id: header frame_id of every image.
        begin_s, end_s: keep only frames with begin_s <= k / fps < end_s (video time), e.g. to
            hold out the end of a clip for evaluation.

    Returns:
        The number of frames written.

    Raises:
        VideoError: unreadable video, or no fps given and none in the file.
        rosbags.rosbag2.WriterError: `out` exists.
    """
    reader = VideoReader(video)
    rate = fps or reader.fps
    if not rate or rate <= 0:
        raise VideoError(f"{reader.path}: the file states no frame rate; pass --fps")
    if compressed and not topic.endswith("/compressed"):
        topic = f"{topic}/compressed"
    count = 0
    with BagWriter(out) as bag:
        for index, rgb in enumerate(reader.frames()):
            if index / rate < begin_s:
                continue
            if end_s is not None and index / rate >= end_s:
                break
            stamp = start_ns + frame_stamp_ns(index, rate)
            if compressed:
                bag.write(topic, m.COMPRESSED_IMAGE, stamp, m.compressed_image(rgb, stamp, frame_id))
            else:
                bag.write(topic, m.IMAGE, stamp, m.image(rgb, stamp, frame_id))
            count += 1
    return count
