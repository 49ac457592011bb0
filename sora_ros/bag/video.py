"""Read video files frame by frame with OpenCV, with errors that say what went wrong.

Frame times are each frame's own presentation time from the container (OpenCV's
CAP_PROP_POS_MSEC after the frame is read), not index / fps: a phone's
variable-frame-rate video, or one with dropped frames, keeps its true timing. A
frame whose presentation time does not advance (a container without timestamps)
is placed 1 / fps after the previous one and counted; uneven timing is noted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from sora_ros.core.units import NS_PER_S


class VideoError(ValueError):
    """A video file that cannot be opened or holds no readable frame."""


class EmptyWindowError(VideoError):
    """A time window (begin, end) that holds none of a video's frames."""


# The highest frame rate taken, from a container or from the user (`bag from-video --fps`):
# above it, stamps 1 ms apart and less are more likely a typo or a broken header than a camera.
MAX_FPS = 1000.0
# The lowest rate `bag from-video --fps` takes: a time-lapse frame every 1000 s; far below it the
# stamps of a long video leave the int64 nanoseconds a bag stores.
MIN_FPS = 0.001
# The highest rate a video plays at as a camera (the video_camera node's `rate`, `sora-ros video-camera --rate`).
MAX_PLAY_FPS = 240.0
# Frame intervals further than this fraction from their median make a video's timing irregular.
IRREGULAR_INTERVAL = 0.25


def frame_stamp_ns(index: int, fps: float) -> int:
    """Video time of frame `index` (0-based) at `fps` frames per second, integer nanoseconds."""
    return round(index * NS_PER_S / fps)


def timing_note(stamps_ns: np.ndarray) -> str | None:
    """A note when frame intervals are uneven (variable frame rate, dropped frames), else None.

    Args:
        stamps_ns: int64 (N,) increasing frame times, nanoseconds.
    """
    intervals = np.diff(np.asarray(stamps_ns, np.int64))  # (N - 1,)
    if intervals.size < 2:
        return None
    median = float(np.median(intervals))
    off = int(np.count_nonzero(np.abs(intervals - median) > IRREGULAR_INTERVAL * median))
    if not off:
        return None
    ms = NS_PER_S / 1000
    return (f"irregular frame timing: intervals {intervals.min() / ms:.1f} to {intervals.max() / ms:.1f} ms, "
            f"{off} of {intervals.size} more than {IRREGULAR_INTERVAL:.0%} off the median {median / ms:.1f} ms; "
            "frames keep their own presentation times")


class VideoReader:
    """A video file's frames as uint8 (H, W, 3) RGB, and its native frame rate."""

    def __init__(self, path: Path | str) -> None:
        """Open the file and read its first frame to prove it decodes.

        Raises:
            VideoError: the file is missing, not a video OpenCV can decode, or empty.
        """
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such video file")
        capture = cv2.VideoCapture(str(self.path))
        ok, _ = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            capture.release()
            raise VideoError(f"{self.path}: OpenCV cannot decode a frame of it (not a video, unsupported codec, or empty)")
        # Some containers report 0 or nonsense fps; the caller must then set a rate.
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(fps) if 0 < fps < MAX_FPS else None
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        self.notes: list[str] = []  # about the frame timing, after `stamped_frames` has run

    def frames(self) -> Iterator[np.ndarray]:
        """Yield every frame from the start: uint8 (H, W, 3) RGB."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    def stamped_frames(self, fallback_fps: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (presentation time ns from the first frame, uint8 (H, W, 3) RGB) for every frame.

        After the last frame, `notes` says how many frames had no usable presentation time and
        whether the timing is irregular (see the module docstring).

        Args:
            fallback_fps: the rate that places a frame without a usable presentation time when the
                file states none (the rate the user set, `bag from-video --fps`).

        Raises:
            VideoError: a frame without a usable presentation time, and neither the file nor
                `fallback_fps` gives a frame rate.
        """
        self.notes = []
        stamps: list[int] = []
        guessed = 0
        rate = self.fps or fallback_fps
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                stamp = round(capture.get(cv2.CAP_PROP_POS_MSEC) * NS_PER_S / 1000)
                if stamps and stamp <= stamps[-1]:  # no timestamp, or one that does not advance
                    if rate is None:
                        raise VideoError(f"{self.path}: frame {len(stamps)} has no usable presentation time and the "
                                         "video states no frame rate; convert it with `sora-ros bag from-video --fps`")
                    guessed += 1
                    stamp = stamps[-1] + frame_stamp_ns(1, rate)
                stamps.append(stamp)
                yield stamp - stamps[0], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
        if guessed:
            self.notes.append(f"{guessed} of {len(stamps)} frames had no presentation time that advanced: "
                              f"placed 1/{rate:g} s after the previous frame")
        note = timing_note(np.array(stamps, np.int64))
        if note:
            self.notes.append(note)
