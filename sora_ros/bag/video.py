"""Read video files frame by frame with OpenCV, with errors that say what went wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from sora_ros.core.units import NS_PER_S


class VideoError(ValueError):
    """A video file that cannot be opened or holds no readable frame."""


def frame_stamp_ns(index: int, fps: float) -> int:
    """Video time of frame `index` (0-based) at `fps` frames per second, integer nanoseconds."""
    return round(index * NS_PER_S / fps)


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
        self.fps: float | None = float(fps) if 0 < fps < 1000 else None
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()

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

    def stamped_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (video time ns, uint8 (H, W, 3) RGB) for every frame, at the file's own rate.

        Raises:
            VideoError: the file states no frame rate (`fps` is None).
        """
        if self.fps is None:
            raise VideoError(f"{self.path}: the video does not say its frame rate; "
                             "convert it with `sora-ros bag from-video --fps`")
        for index, rgb in enumerate(self.frames()):
            yield frame_stamp_ns(index, self.fps), rgb
