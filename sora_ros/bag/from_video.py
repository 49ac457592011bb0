"""Convert a video file into a rosbag2 MCAP bag of camera images."""

from __future__ import annotations

import math
from pathlib import Path

from sora_ros.bag import messages as m
from sora_ros.bag.video import MAX_FPS, MIN_FPS, EmptyWindowError, VideoError, VideoReader, frame_stamp_ns
from sora_ros.bag.writing import BagWriter, staged_bag_path
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
    """Write the frames of `video` to a new bag at `out`, each stamped start_ns + its presentation time
    (or, with `fps`, start_ns + k / fps for the video's frame k).

    The bag is written beside `out` and renamed to it when complete: on any error nothing is left
    at `out`.

    Args:
        video: any file OpenCV decodes.
        out: the bag directory to create (must not exist).
        fps: stamp frame k at k / fps instead (a constant rate the user chose, MIN_FPS to MAX_FPS);
            default: each frame's own presentation time from the container (variable frame rate kept).
        topic: image topic; with `compressed`, CompressedImage (JPEG) on `topic`/compressed
            unless the topic already ends with /compressed.
        compressed: JPEG CompressedImage instead of rgb8 Image.
        start_ns: stamp of the first frame.
        frame_id: header frame_id of every image.
        begin_s, end_s: keep only frames with begin_s <= presentation time < end_s (finite seconds),
            e.g. to hold out the end of a clip for evaluation. The presentation time is the source
            video's own (what a player shows), with or without `fps`: the window is cut before
            re-stamping.
        notes: if given, receives the reader's notes on the frame timing (irregular, guessed) when
            the frames keep it (no `fps`).

    Returns:
        The number of frames written.

    Raises:
        VideoError: unreadable video, an fps outside [MIN_FPS, MAX_FPS], a begin or end that is not a finite
            number, or frames without times and no fps.
        EmptyWindowError: no frame lies in [begin_s, end_s).
        rosbags.rosbag2.WriterError: `out` exists.
    """
    if fps is not None and not MIN_FPS <= fps <= MAX_FPS:  # NaN fails it too
        raise VideoError(f"fps must be from {MIN_FPS:g} to {MAX_FPS:g}, got {fps:g}")
    if not all(math.isfinite(s) for s in (begin_s, 0.0 if end_s is None else end_s)):
        raise VideoError(f"begin and end must be finite seconds, got {begin_s:g} and {end_s}")
    reader = VideoReader(video)
    if compressed and not topic.endswith("/compressed"):
        topic = f"{topic}/compressed"
    count, before_ns, after_ns = 0, None, None  # the frames on either side of an empty window
    with staged_bag_path(out) as staged, BagWriter(staged) as bag:
        for index, (video_ns, rgb) in enumerate(reader.stamped_frames(fallback_fps=fps)):
            if video_ns < begin_s * NS_PER_S:
                before_ns = video_ns
                continue
            if end_s is not None and video_ns >= end_s * NS_PER_S:
                after_ns = video_ns
                break
            stamp = start_ns + (frame_stamp_ns(index, fps) if fps else video_ns)
            if compressed:
                bag.write(topic, m.COMPRESSED_IMAGE, stamp, m.compressed_image(rgb, stamp, frame_id))
            else:
                bag.write(topic, m.IMAGE, stamp, m.image(rgb, stamp, frame_id))
            count += 1
        if not count:
            window = f"[{begin_s:g} s, {'the end' if end_s is None else f'{end_s:g} s'})"
            around = " and ".join(f"{ns / NS_PER_S:g} s" for ns in (before_ns, after_ns) if ns is not None)
            raise EmptyWindowError(f"{reader.path}: no frame lies in the window {window} of the video's own "
                                   "presentation time (what a player shows, not the --fps stamps); the frames "
                                   f"nearest it are at {around}")  # fmt: skip
    if notes is not None and not fps:  # with fps the source's own timing is replaced, as asked
        notes += reader.notes
    return count
