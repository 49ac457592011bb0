"""Training data: bags and video files as fixed-length frame sequences held in memory.

Training draws random frames (VAE) and random windows (DiT) from these
sequences at every step, so they are read once, up front, through the same
clip reader evaluation uses. At 64x64 one frame is 12 KiB: an hour at 10 Hz
is 440 MiB.

Video files carry no actions: their action rows are NaN, which the model
reads as "actions unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sora_ros.bag.clips import ClipReader
from sora_ros.bag.video import VideoReader
from sora_ros.preprocess import fit_frame

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass
class Sequences:
    """N sequences of S frames at the model's dt, with their actions."""

    frames: np.ndarray  # uint8 (N, S, H, W, 3) RGB
    actions: np.ndarray  # float32 (N, S, A); NaN rows: unknown (video)
    sources: list[str]  # per sequence: the bag or video it came from
    notes: list[str] = field(default_factory=list)  # what the readers skipped, one line each

    def summary(self) -> dict:
        """Counts for logs and model.json: sequences, frames, per source."""
        per_source: dict[str, int] = {}
        for source in self.sources:
            per_source[Path(source).name] = per_source.get(Path(source).name, 0) + self.frames.shape[1]
        return {"sequences": len(self.sources), "frames": int(self.frames.shape[0] * self.frames.shape[1]),
                "frames_per_source": per_source, "skipped": self.notes}  # fmt: skip


def _video_sequences(path: Path, dt: float, length: int, size: tuple[int, int], action_dim: int):
    reader = VideoReader(path)
    if reader.fps is None:
        raise ValueError(f"{path}: the video does not say its frame rate; convert it with `sora-ros bag from-video --fps`")
    frame_dt = 1.0 / reader.fps
    kept: list[np.ndarray] = []
    next_time = 0.0
    # Keep the first frame at or after each multiple of dt (a 30 fps video at dt 0.1 keeps every third).
    for index, rgb in enumerate(reader.frames()):
        if index * frame_dt + 1e-9 >= next_time:
            kept.append(fit_frame(rgb, size))
            next_time += dt
        if len(kept) == length:
            yield np.stack(kept), np.full((length, action_dim), np.nan, np.float32)
            kept = []


def load_sequences(
    paths: list[str | Path],
    image_topic: str | None,
    action_topic: str | None,
    *,
    dt: float,
    length: int,
    size: tuple[int, int],
    action_dim: int,
) -> Sequences:
    """Read bags (folders of them) and video files into non-overlapping sequences.

    Args:
        paths: rosbag2 bags or folders of them, and video files.
        image_topic: the camera topic in the bags (needed when a bag is given).
        action_topic: Twist/TwistStamped topic, or None (actions NaN = unknown).
        dt: seconds between frames (the model's dt); sources are resampled to it.
        length: frames per sequence (S).
        size: (H, W) model input; frames are centre-cropped and resized to it.
        action_dim: A of the model (0 for an unconditioned one).

    Raises:
        ValueError: no sequence could be made, a bag without an image topic given,
            or actions of a dimension the model does not take.
    """
    videos = [Path(p) for p in paths if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    bags = [Path(p) for p in paths if Path(p).suffix.lower() not in VIDEO_SUFFIXES]
    frames, actions, sources, notes = [], [], [], []
    if bags:
        if not image_topic:
            raise ValueError("--image-topic is required to read bags")
        reader = ClipReader(bags, image_topic, action_topic if action_dim else None,
                            dt_ns=round(dt * 1e9), clip_length=length, size=size)  # fmt: skip
        for clip in reader:
            clip_actions = clip.actions
            if action_dim and clip_actions.shape[1] == 0:
                clip_actions = np.full((length, action_dim), np.nan, np.float32)
            if clip_actions.shape[1] != action_dim:
                raise ValueError(f"{clip.source}: actions have {clip_actions.shape[1]} dims, the model takes {action_dim}")
            frames.append(clip.frames)
            actions.append(clip_actions)
            sources.append(clip.source)
        notes += reader.report.summary().splitlines()[1:]
    for video in videos:
        count = 0
        for video_frames, video_actions in _video_sequences(video, dt, length, size, action_dim):
            frames.append(video_frames)
            actions.append(video_actions)
            sources.append(str(video))
            count += 1
        if count == 0:
            notes.append(f"{video}: shorter than one sequence of {length} frames at dt {dt:g} s")
    if not frames:
        raise ValueError(f"no sequence of {length} frames at dt {dt:g} s in {', '.join(map(str, paths))}")
    return Sequences(np.stack(frames), np.stack(actions), sources, notes)
