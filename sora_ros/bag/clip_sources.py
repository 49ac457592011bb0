"""Clips for the model from bags and video files: what training and evaluation read.

Frames are fitted to the model's input size and resampled to its dt. Sources
without commands (video files, bags without the action topic) get NaN
actions, which the model reads as "actions unknown".

Training holds its data in memory as `Buckets` of `Sequences`, one per model input size
(it draws random frames and windows at every step); at 64x64 one frame is 12 KiB, an hour at
10 Hz 440 MiB.
Evaluation streams `model_clips` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sora_ros.bag.clips import GAP, Clip, ClipError, ClipReader, ClipReport, ClipWindows
from sora_ros.bag.reading import BagReader, find_bags
from sora_ros.bag.video import VideoReader
from sora_ros.core.patch_grid import AspectError
from sora_ros.core.preprocess import fit_frame
from sora_ros.core.timegrid import Gap, resample
from sora_ros.core.units import NS_PER_S

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def _video_clips(path: Path, dt_ns: int, length: int, stride: int, size: tuple[int, int] | None, action_dim: int,
                 notes: list[str], report: ClipReport) -> Iterator[Clip]:
    """Clips of a video file, its frames stamped in video time and put on the grid like a bag's
    (sora_ros.core.timegrid); a note says when the frame rate left gaps."""
    reader = VideoReader(path)
    unknown = np.full(action_dim, np.nan, np.float32)  # (A,)
    windows = ClipWindows(length, stride, path)
    report.sources += 1
    gaps = 0

    def counted(frames: Iterator[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
        for frame in frames:
            report.frames_read += 1
            yield frame

    for kept in resample(counted(reader.stamped_frames()), dt_ns):
        if isinstance(kept, Gap):
            gaps += 1
            report.skip(GAP, f"{path}: nothing near {kept.grid_ns} ns of video time")
            clip = windows.add(None)
        else:
            stamp, rgb = kept
            windows.camera_shape = rgb.shape[:2]
            clip = windows.add((stamp, rgb if size is None else fit_frame(rgb, size), unknown))
        if clip is not None:
            report.clips += 1
            yield clip
    report.longest_run = max(report.longest_run, windows.longest)
    notes += [f"{path}: {note}" for note in reader.notes]
    if gaps:
        notes.append(f"{path}: {gaps} gaps: its frame rate is below 1/dt"
                     + (f" ({reader.fps:g} fps on average)" if reader.fps else ""))


def action_topic_problem(paths: list[str | Path], action_topic: str) -> str | None:
    """Why `action_topic` gives no action at all in `paths` (a typo, or video files only), or None
    when some bag has it: bags and videos without it count as without commands, with a note.

    Raises:
        FileNotFoundError, BagError: a source that does not exist or cannot be read.
    """
    bags = [path for path in paths if Path(path).suffix.lower() not in VIDEO_SUFFIXES]
    if not bags:
        return (f"--action-topic {action_topic}: video files carry no actions; leave the option out, or give bags "
                "that recorded the topic")  # fmt: skip
    have: dict[str, str] = {}
    for bag in find_bags(bags):
        topics = BagReader(bag).topics
        if action_topic in topics:
            return None
        have.update((name, info.msgtype) for name, info in topics.items())
    listing = (", ".join(f"{name} ({msgtype})" for name, msgtype in sorted(have.items()))
               or "no topics (empty, or damaged: `sora-ros bag info BAG` checks them)")
    return f"--action-topic {action_topic} is in none of the bags; they have: {listing}"


def model_clips(
    paths: list[str | Path],
    image_topic: str | None,
    action_topic: str | None,
    *,
    dt: float,
    length: int,
    size: tuple[int, int] | None,
    action_names: tuple[str, ...],
    stride: int | None = None,
    notes: list[str] | None = None,
    report: ClipReport | None = None,
) -> Iterator[Clip]:
    """Clips of `length` frames from bags (folders of them) and video files, source by source.

    Args:
        paths: rosbag2 bags or folders of them, and video files.
        image_topic: the camera topic in the bags (needed when a bag is given).
        action_topic: Twist/TwistStamped topic, or None (actions NaN = unknown).
        dt: seconds between frames (the model's dt); sources are resampled to it.
        length: frames per clip (T).
        size: (H, W) model input; frames are centre-cropped and resized to it. None: frames as
            recorded (evaluation at the camera's resolution).
        action_names: the model's actions as Twist fields (sora_ros/core/twist.py), e.g. ("linear_x",
            "angular_z"); A = their number, empty for an unconditioned model.
        stride: frames between the starts of consecutive clips (default `length`).
        notes: if given, receives one line per thing skipped or assumed.
        report: if given, receives every source's counts (`ClipReport.cause` says why no clip came out).

    Yields:
        Clip with frames uint8 (T, H, W, 3) and actions float32 (T, A), NaN rows when unknown.

    Raises:
        ValueError: a bag given without an image topic, an action name that is not a Twist field.
        FileNotFoundError, BagError, VideoError: unreadable sources.
    """
    notes = [] if notes is None else notes
    report = ClipReport() if report is None else report
    dt_ns = round(dt * NS_PER_S)
    action_dim = len(action_names)
    stride = length if stride is None else stride
    videos = [Path(p) for p in paths if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    bags = [Path(p) for p in paths if Path(p).suffix.lower() not in VIDEO_SUFFIXES]
    if bags and not image_topic:
        raise ValueError("an image topic is required to read bags (--image-topic)")
    for bag in find_bags(bags) if bags else []:
        has_actions = bool(action_topic and action_dim) and action_topic in BagReader(bag).topics
        if action_dim and action_topic and not has_actions:
            notes.append(f"{bag}: no {action_topic}: actions unknown")
        reader = ClipReader(bag, image_topic, action_topic if has_actions else None, dt_ns=dt_ns,
                            clip_length=length, size=size, stride=stride, action_names=action_names)  # fmt: skip
        try:
            for clip in reader:
                if not has_actions:
                    clip = replace(clip, actions=np.full((length, action_dim), np.nan, np.float32))
                yield clip
        except ClipError:
            pass  # too short for one clip: the report says so below
        finally:  # also when the caller stops early (closes this generator): what was read is reported
            report.merge(reader.report)
            notes += [f"{bag}: {line.strip()}" for line in reader.report.summary().splitlines()[1:]]
    for video in videos:
        count = 0
        for clip in _video_clips(video, dt_ns, length, stride, size, action_dim, notes, report):
            count += 1
            yield clip
        if count == 0:
            notes.append(f"{video}: shorter than one clip of {length} frames at dt {dt:g} s")


# The model input (H, W) pixels for a camera of (height, width) pixels, e.g. a model's
# `PatchGrid.input_size`; it may raise (an aspect ratio the model does not take).
SizeFor = Callable[[int, int], tuple[int, int]]


def size_name(size: tuple[int, int]) -> str:
    """"HxW" of an (H, W) size: a bucket's name in logs and model.json."""
    return f"{size[0]}x{size[1]}"


@dataclass
class Sequences:
    """N sequences of S frames at the model's dt, with their actions, held in memory."""

    frames: np.ndarray  # uint8 (N, S, H, W, 3) RGB
    actions: np.ndarray  # float32 (N, S, A); NaN rows: unknown
    sources: list[str]  # per sequence: the bag or video it came from

    @property
    def frame_count(self) -> int:
        """N x S."""
        return int(self.frames.shape[0] * self.frames.shape[1])

    def subset(self, mask: np.ndarray) -> Sequences:
        """The sequences where `mask` (bool (N,)) is set."""
        return Sequences(self.frames[mask], self.actions[mask], [s for s, m in zip(self.sources, mask) if m])


@dataclass
class Buckets:
    """Sequences grouped by model input size: each source's frames are fitted to the size its
    camera gets, so one model trains on every camera at that camera's own token grid.

    Attributes:
        by_size: model input (H, W) pixels -> its sequences, largest bucket first.
        cameras: source -> (height, width) pixels of its camera as recorded.
        notes: what the readers skipped or assumed, one line each.
    """

    by_size: dict[tuple[int, int], Sequences]
    cameras: dict[str, tuple[int, int]]
    notes: list[str] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        """Per sequence, bucket by bucket in `by_size` order: the bag or video it came from."""
        return [source for data in self.by_size.values() for source in data.sources]

    @property
    def frame_count(self) -> int:
        return sum(data.frame_count for data in self.by_size.values())

    @property
    def aspect_range(self) -> tuple[float, float]:
        """(lowest, highest) camera width / height of the sources."""
        aspects = [w / h for h, w in self.cameras.values()]
        return min(aspects), max(aspects)

    def subset(self, mask: np.ndarray) -> Buckets:
        """The sequences where `mask` (bool, one per sequence in `sources` order) is set; buckets
        left empty are dropped, and so are the cameras of sources left out."""
        ends = np.cumsum([len(data.sources) for data in self.by_size.values()])[:-1]
        kept = {size: data.subset(part) for (size, data), part in zip(self.by_size.items(), np.split(mask, ends))
                if part.any()}  # fmt: skip
        sources = {source for data in kept.values() for source in data.sources}
        return Buckets(kept, {s: c for s, c in self.cameras.items() if s in sources}, self.notes)

    def summary(self) -> dict:
        """Counts for logs and model.json: sequences, frames, frames per source, per bucket, camera aspect ratios."""
        per_source: dict[str, int] = {}
        for data in self.by_size.values():
            for source in data.sources:
                per_source[Path(source).name] = per_source.get(Path(source).name, 0) + data.frames.shape[1]
        buckets = {size_name(size): {"sequences": len(data.sources), "frames": data.frame_count}
                   for size, data in self.by_size.items()}  # fmt: skip
        return {"sequences": sum(b["sequences"] for b in buckets.values()),
                "frames": self.frame_count, "frames_per_source": per_source,
                "buckets": buckets, "aspect_range": list(self.aspect_range), "notes": self.notes}  # fmt: skip


def fit_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, h, w, 3) camera frames -> uint8 (T, H, W, 3) at `size` (`fit_frame`, frame by frame)."""
    return np.stack([fit_frame(frame, size) for frame in frames])


def load_sequences(paths: list[str | Path], image_topic: str | None, action_topic: str | None, *,
                   dt: float, length: int, size_for: SizeFor, action_names: tuple[str, ...]) -> Buckets:  # fmt: skip
    """Read every non-overlapping clip of `length` frames into memory (see `model_clips`), each
    source's frames fitted to `size_for` of its camera's (height, width), grouped by that size.

    Clips are read at the camera's resolution and fitted one at a time, so at most one clip of
    full-resolution frames is held.

    Raises:
        ValueError: no clip could be made, or as `model_clips`.
        AspectError: `size_for` refused a source's camera (the message names the source).
    """
    notes: list[str] = []
    report = ClipReport()
    grouped: dict[tuple[int, int], list[Clip]] = {}
    cameras: dict[str, tuple[int, int]] = {}
    for clip in model_clips(paths, image_topic, action_topic, dt=dt, length=length, size=None,
                            action_names=action_names, notes=notes, report=report):  # fmt: skip
        camera = clip.frames.shape[1:3]
        cameras.setdefault(clip.source, camera)
        try:
            size = size_for(*camera)
        except AspectError as error:
            raise AspectError(f"{clip.source}: {error}") from None
        fitted = Clip(fit_frames(clip.frames, size), clip.actions, clip.stamps_ns, clip.source)
        grouped.setdefault(size, []).append(fitted)
    if not grouped:
        detail = "".join(f"\n  {note}" for note in notes)
        raise ValueError(f"no sequence of {length} frames at dt {dt:g} s in {', '.join(map(str, paths))}: "
                         f"{report.cause()}{detail}")
    by_size = {size: Sequences(np.stack([c.frames for c in clips]), np.stack([c.actions for c in clips]),
                               [c.source for c in clips])
               for size, clips in sorted(grouped.items(), key=lambda item: -len(item[1]))}  # fmt: skip
    return Buckets(by_size, cameras, notes)
