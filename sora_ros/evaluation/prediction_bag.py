"""Write the frames an evaluation saw and predicted into an MCAP bag, for Foxglove side by side.

Topics: /eval/real (the camera frames as the model saw them) and
/eval/<method>/h<h> (each method's prediction h steps ahead), every image
stamped with the time it shows, so a player lines them up. Header stamps and
frame_id are the source's, exactly (a prediction carries those of the real frame
it predicts; video files, which have no frame_id, get `camera`). Sources that
share a time range (simulated episodes all start at 0) are laid end to end, one
second apart, on the bag's log time only, which is what players play by.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sora_ros.bag import messages as m
from sora_ros.bag.writing import BagWriter
from sora_ros.core.units import NS_PER_S

REAL_TOPIC = "/eval/real"
FRAME_ID = "camera"  # for sources without a frame_id (video files)
SOURCE_GAP_NS = NS_PER_S  # one second between bags laid end to end


def _topic_name(method: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in method).strip("_")


class PredictionBag:
    """Collects clips and their predictions while an evaluation runs; a context manager.

    The bag is created with the first clip, and removed again if the evaluation fails: an
    evaluation that scores nothing, or stops on an error, leaves no bag behind.
    """

    def __init__(self, path: Path | str, horizons: list[int], context_length: int):
        """Raises:
        rosbags.rosbag2.WriterError: `path` exists already.
        """
        self.path = Path(path)
        self.writer = BagWriter(self.path)  # refuses an existing path now; opened by the first clip
        self._open = False
        self.horizons, self.context_length = horizons, context_length
        self._source: str | None = None
        self._offset_ns = 0  # log time - header stamp for the current source
        self._last_log = None  # the latest log time written

    def __enter__(self) -> PredictionBag:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if not self._open:
            return
        self.writer.__exit__(exc_type, exc, traceback)
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)  # half an evaluation: no half a bag

    def add(self, clip, predictions: dict[str, np.ndarray]) -> None:
        """Write the clip's new real frames and every method's prediction per horizon."""
        if not self._open:
            self.writer.__enter__()
            self._open = True
        if clip.source != self._source:
            self._source = clip.source
            first = int(clip.stamps_ns[0])
            self._offset_ns = 0 if self._last_log is None else max(0, self._last_log + SOURCE_GAP_NS - first)
        frame_id = clip.frame_id or FRAME_ID
        logs = clip.stamps_ns + self._offset_ns
        real_from = -1 if self._last_log is None else self._last_log
        for stamp, log, frame in zip(clip.stamps_ns.tolist(), logs.tolist(), clip.frames):
            if log > real_from:  # overlapping clips: each real frame once
                self.writer.write(REAL_TOPIC, m.IMAGE, log, m.image(frame, stamp, frame_id))
                self._last_log = log if self._last_log is None else max(self._last_log, log)
        for method, predicted in predictions.items():
            for h in self.horizons:
                index = self.context_length - 1 + h
                stamp, log = int(clip.stamps_ns[index]), int(logs[index])
                topic = f"/eval/{_topic_name(method)}/h{h}"
                self.writer.write(topic, m.IMAGE, log, m.image(predicted[h - 1], stamp, frame_id))
