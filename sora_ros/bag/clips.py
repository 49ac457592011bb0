"""Fixed-length clips of frames and actions from bags: the one data path that
training and evaluation share.

    reader = ClipReader(["runs/"], "/camera/image_raw", "/cmd_vel",
                        dt_ns=100_000_000, clip_length=9, size=(64, 64))
    for clip in reader:
        clip.frames   # uint8 (T, H, W, 3) RGB
        clip.actions  # float32 (T, A): (linear.x m/s, angular.z rad/s), A = 0 without actions
    print(reader.report.summary())

Time: frames are stamped by their header stamp. Actions are held (zero-order
hold) from the latest command at or before each frame's stamp: the header
stamp of a TwistStamped, the bag receive time of a plain Twist. So
actions[t] is the command in force when frame t was taken, the one that
drives the world from frame t towards frame t + 1. Header stamps that cannot be
true (zero, constant, or on another clock: `sora_ros.core.stamps`) are not used:
that stream is aligned by the bag's receive times instead, and the report says so.
The image stamps are checked on a bag's first STAMP_SAMPLE images, the action
stamps on all of them.

Resampling: the source is put on a grid of step `dt_ns` by the rule of
`sora_ros.core.timegrid` (each grid time takes the nearest frame within dt/2,
the grid anchored at the first frame of a run); a grid time without a frame is
a gap and ends the clip. Faster sources are thinned (30 Hz -> 10 Hz keeps every
third frame); slower ones give gaps.

Resizing: frames are fitted to `size` by `sora_ros.core.preprocess.fit_frame`
(centre crop to the aspect ratio, then area resize), as the nodes do.

Streaming: a bag is read twice, first its action topic (a few floats per
message), then its images one at a time; at most one clip's frames are held.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from sora_ros.bag import messages as m
from sora_ros.core.preprocess import fit_frame
from sora_ros.bag.reading import BagError, BagReader, find_bags
from sora_ros.core.image import ImageConversionError, compressed_to_rgb, image_to_rgb
from sora_ros.core.stamps import stamp_problem
from sora_ros.core.timegrid import Gap, GridResampler
from sora_ros.core.twist import CMD_VEL_ACTIONS, twist_indices, twist_vector
from sora_ros.core.units import NS_PER_S, ros_time_ns

IMAGE_TYPES = (m.IMAGE, m.COMPRESSED_IMAGE)
ACTION_TYPES = (m.TWIST, m.TWIST_STAMPED)

# Reasons a frame or action is dropped, as counted in ClipReport.skipped.
NON_FINITE_ACTION = "action with NaN or Inf"
UNDECODABLE_IMAGE = "image not decodable"
STAMP_NOT_INCREASING = "image stamp not after the previous one (duplicate or out of order)"
CLOCK_JUMP_BACK = "image stamp jumped back (clock reset or bag loop): clip restarted"
GAP = "no frame within dt/2 of the next step (gap: frame rate below 1/dt, or frames missing): clip restarted"
BEFORE_FIRST_ACTION = "frame before the first action"
RESOLUTION_CHANGE = "the camera's resolution changed: clip restarted (no clip mixes two, as the live context)"

# Images of a bag whose header stamps are checked (sora_ros.core.stamps) before its clips are read.
STAMP_SAMPLE = 100


class ClipError(ValueError):
    """No clip could be made; the message says why (e.g. clips longer than the bags)."""


@dataclass(frozen=True)
class Clip:
    """T consecutive frames at dt spacing and the actions in force at each."""

    frames: np.ndarray  # uint8 (T, H, W, 3) RGB in [0, 255]
    actions: np.ndarray  # float32 (T, A), A = len(action_names), or 0 without an action topic
    stamps_ns: np.ndarray  # int64 (T,), header stamps of the frames
    source: str  # the bag it came from
    frame_id: str = ""  # header.frame_id of the source images ("" for video files)
    camera_shape: tuple[int, int] | None = None  # (H0, W0) of the recorded images before fitting; None: as frames


@dataclass
class ClipReport:
    """What a ClipReader (or `model_clips`, over bags and videos) read, made, and dropped, and why."""

    sources: int = 0  # bags (and video files) read
    frames_read: int = 0
    clips: int = 0
    longest_run: int = 0  # the longest run of consecutive grid frames of any source, capped at T
    skipped: Counter[str] = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)  # reason -> first detailed message
    stopped: list[str] = field(default_factory=list)  # damaged bags: where reading stopped
    too_short: list[str] = field(default_factory=list)  # bags that gave no clip, and their longest run
    receive_time: list[str] = field(default_factory=list)  # streams aligned by receive time, and why

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        if detail:
            self.first_error.setdefault(reason, detail)

    def merge(self, other: ClipReport) -> None:
        """Add another source's report to this one."""
        self.sources += other.sources
        self.frames_read += other.frames_read
        self.clips += other.clips
        self.longest_run = max(self.longest_run, other.longest_run)
        self.skipped.update(other.skipped)
        for reason, detail in other.first_error.items():
            self.first_error.setdefault(reason, detail)
        self.stopped += other.stopped
        self.too_short += other.too_short
        self.receive_time += other.receive_time

    def cause(self) -> str:
        """Why no clip came out, dominant reason first, with counts: no frame readable (and where
        reading stopped), else the most frequent drop, else sources too short."""
        if self.frames_read == 0:
            stopped = f"; {self.stopped[0]}" + (f" (and {len(self.stopped) - 1} more)" if len(self.stopped) > 1 else "") \
                if self.stopped else ""
            return f"not one image was readable in {self.sources} source(s){stopped}"
        run = f"the longest continuous run is {self.longest_run} frames"
        if not self.skipped:
            return f"the sources are too short: {run} ({self.frames_read} frames read)"
        reason, count = self.skipped.most_common(1)[0]
        first = f" (first: {self.first_error[reason]})" if reason in self.first_error else ""
        return f"{count} x {reason}{first}, of {self.frames_read} frames read; {run}"

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.clips} clips from {self.sources} sources ({self.frames_read} frames read)"]
        for reason, count in self.skipped.most_common():
            detail = f" (first: {self.first_error[reason]})" if reason in self.first_error else ""
            lines.append(f"  skipped {count}: {reason}{detail}")
        lines += [f"  stopped early: {note}" for note in self.stopped]
        lines += [f"  aligned by receive time: {note}" for note in self.receive_time]
        lines += [f"  no clip: {note}" for note in self.too_short]
        return "\n".join(lines)


class ClipWindows:
    """Clips of T consecutive grid frames, one starting every `stride` frames of a run.

    Args:
        clip_length: frames per clip (T).
        stride: frames between the starts of consecutive clips of a run; a new run may
            start a clip at its first frame.
        source: the bag or video the frames come from.
    """

    def __init__(self, clip_length: int, stride: int, source: Path | str) -> None:
        self.source = str(source)
        self.frame_id = ""  # set by the reader from the images' headers
        self.camera_shape: tuple[int, int] | None = None  # set by the reader: (H0, W0) of the recorded images
        self._run: deque[tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=clip_length)
        self.stride = stride
        self._since_last_clip = 0
        self.longest = 0  # the longest run seen, capped at T

    def add(self, frame: tuple[int, np.ndarray, np.ndarray] | None) -> Clip | None:
        """Append the next grid frame (stamp ns, uint8 (H, W, 3), float32 (A,)), or None
        where the run breaks; returns the clip this frame completes, if any."""
        if frame is None:
            self._run.clear()
            return None
        if not self._run:
            self._since_last_clip = self.stride  # a new run may start a clip at once
        self._run.append(frame)
        self._since_last_clip += 1
        self.longest = max(self.longest, len(self._run))
        if len(self._run) < self._run.maxlen or self._since_last_clip < self.stride:
            return None
        self._since_last_clip = 0
        return Clip(
            frames=np.stack([f for _, f, _ in self._run]),  # (T, H, W, 3)
            actions=np.stack([a for _, _, a in self._run]).astype(np.float32),  # (T, A)
            stamps_ns=np.array([s for s, _, _ in self._run], np.int64),
            source=self.source,
            frame_id=self.frame_id,
            camera_shape=self.camera_shape,
        )


class ClipReader:
    """Iterate fixed-length clips over one or many bags (MCAP or sqlite3).

    Iterating again re-reads the bags and resets `report`.
    """

    def __init__(
        self,
        paths: Path | str | Iterable[Path | str],
        image_topic: str,
        action_topic: str | None = None,
        *,
        dt_ns: int,
        clip_length: int,
        size: tuple[int, int] | None,
        stride: int | None = None,
        action_names: tuple[str, ...] = CMD_VEL_ACTIONS,
    ) -> None:
        """Find the bags; reading starts when iterated.

        Args:
            paths: bags (rosbag2 directories, .mcap, .db3) and folders of them.
            image_topic: sensor_msgs/Image (any supported encoding) or CompressedImage.
            action_topic: geometry_msgs/Twist or TwistStamped, or None for A = 0.
            dt_ns: time between the frames of a clip, nanoseconds.
            clip_length: frames per clip (T).
            size: (H, W) of the returned frames; None: as recorded (the camera's own resolution).
            stride: frames between the starts of consecutive clips (default T:
                clips do not overlap).
            action_names: the Twist fields that make up an action, in order (sora_ros/core/twist.py).

        Raises:
            FileNotFoundError: a path does not exist or holds no bag.
            ValueError: a non-positive dt, length, size or stride, or an action name that is not a Twist field.
        """
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.sources = find_bags(paths)
        stride = clip_length if stride is None else stride
        if dt_ns <= 0 or clip_length <= 0 or stride <= 0 or (size is not None and min(size) <= 0):
            raise ValueError(f"dt_ns, clip_length, stride and size must be positive: {dt_ns}, {clip_length}, {stride}, {size}")
        self.image_topic, self.action_topic = image_topic, action_topic
        self.dt_ns, self.clip_length, self.stride = int(dt_ns), clip_length, stride
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.action_indices = twist_indices(action_names)
        self.report = ClipReport()

    def __iter__(self) -> Iterator[Clip]:
        """Yield clips bag by bag, in path order.

        Raises:
            TopicNotFoundError: a bag lacks the image or action topic (names the topics it has).
            BagError: a topic of the wrong type, or a bag that cannot be opened.
            ClipError: at the end, if no bag gave a single clip.
        """
        self.report = ClipReport()
        for bag in self.sources:
            yield from self._bag_clips(bag)
        if self.report.clips == 0:
            raise ClipError(f"no clip of {self.clip_length} frames at dt {self.dt_ns / NS_PER_S:g} s: "
                            f"{self.report.cause()}\n{self.report.summary()}")

    def _bag_clips(self, bag: Path) -> Iterator[Clip]:
        reader = BagReader(bag)
        topics = [self.image_topic] + ([self.action_topic] if self.action_topic else [])
        missing = [topic for topic in topics if topic not in reader.topics]
        if missing and reader.damage:  # damaged before their first message: a counted drop, as later damage is
            self.report.sources += 1
            self.report.stopped.append(f"{bag}: {reader.damage}, before any message on {', '.join(missing)}")
            return
        reader.require(topics)
        check_topic_type(reader, self.image_topic, IMAGE_TYPES)
        self.report.sources += 1
        sample = [(ros_time_ns(message.msg.header.stamp), message.log_time_ns)
                  for message in islice(reader.messages([self.image_topic]), STAMP_SAMPLE)]  # fmt: skip
        images_by_receive = stamps_fail(reader, self.image_topic, *np.array(sample, np.int64).reshape(-1, 2).T,
                                        self.report)
        if self.action_topic:
            check_topic_type(reader, self.action_topic, ACTION_TYPES)
            action_stamps, actions = read_twists(reader, self.action_topic, self.action_indices, self.report)
        else:
            action_stamps, actions = np.zeros(0, np.int64), np.zeros((0, 0), np.float32)

        windows = ClipWindows(self.clip_length, self.stride, bag)
        clips_before = self.report.clips
        for stamp, msg in _resample(self._stamped_images(reader, images_by_receive), self.dt_ns, self.report):
            rgb = None if msg is None else self._decode(msg)
            if msg is not None:
                windows.frame_id = msg.header.frame_id
            if rgb is not None:
                if windows.camera_shape not in (None, rgb.shape[:2]):
                    windows.add(None)
                    self.report.skip(RESOLUTION_CHANGE, f"{bag}: {windows.camera_shape[1]}x{windows.camera_shape[0]} "
                                     f"-> {rgb.shape[1]}x{rgb.shape[0]} at {stamp} ns")
                windows.camera_shape = rgb.shape[:2]
            frame = None if rgb is None else self._fit(rgb)
            action = None if frame is None else _action_at(stamp, action_stamps, actions, self.report)
            clip = windows.add(None if frame is None or action is None else (stamp, frame, action))
            if clip is not None:
                self.report.clips += 1
                yield clip
        if reader.stop_reason:
            self.report.stopped.append(f"{bag}: {reader.stop_reason}")
        self.report.longest_run = max(self.report.longest_run, windows.longest)
        if self.report.clips == clips_before:
            dt_s = self.dt_ns / NS_PER_S
            self.report.too_short.append(
                f"{bag}: the longest continuous run is {windows.longest} frames "
                f"({windows.longest * dt_s:.2f} s at dt {dt_s:g} s), a clip needs {self.clip_length}"
            )

    def _stamped_images(self, reader: BagReader, by_receive: bool) -> Iterator[tuple[int, Any]]:
        """(stamp ns, message) of every image: its header stamp, or with `by_receive` its receive time."""
        for message in reader.messages([self.image_topic]):
            self.report.frames_read += 1
            yield message.log_time_ns if by_receive else ros_time_ns(message.msg.header.stamp), message.msg

    def _decode(self, msg: Any) -> np.ndarray | None:
        """uint8 (H0, W0, 3) RGB as recorded, or None (counted) if the image does not decode."""
        try:
            return compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)
        except ImageConversionError as error:
            self.report.skip(UNDECODABLE_IMAGE, str(error))
            return None

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB at self.size, owning its pixels."""
        fitted = rgb if self.size is None else fit_frame(rgb, self.size)
        # Own the pixels: an unresized frame is a view of the message buffer, which would stay alive.
        return fitted.copy() if fitted.base is not None else fitted


def check_topic_type(reader: BagReader, topic: str, allowed: tuple[str, ...]) -> None:
    """Raises BagError when `topic` (which the bag has) is not of one of the `allowed` types."""
    msgtype = reader.topics[topic].msgtype
    if msgtype not in allowed:
        raise BagError(f"{reader.path}: topic {topic!r} has type {msgtype}, expected one of {', '.join(allowed)}")


def stamps_fail(reader: BagReader, topic: str, header_ns: np.ndarray, receive_ns: np.ndarray,
                report: ClipReport) -> bool:
    """Whether `topic`'s header stamps cannot be believed (noted in the report); see sora_ros.core.stamps."""
    problem = stamp_problem(header_ns, receive_ns)
    if problem:
        report.receive_time.append(f"{reader.path}: {topic}: {problem}")
    return problem is not None


def message_stamps(reader: BagReader, topic: str, headers: list[int], receipts: list[int],
                   report: ClipReport) -> np.ndarray:
    """int64 (N,) stamps of `topic`'s messages as read: their header stamps, or their receive times
    when the headers cannot be true (`stamps_fail`); a read that stopped early is noted in `report`."""
    if reader.stop_reason:
        report.stopped.append(f"{reader.path} ({topic}): {reader.stop_reason}")
    header, receive = np.array(headers, np.int64), np.array(receipts, np.int64)
    return receive if stamps_fail(reader, topic, header, receive, report) else header


def read_twists(reader: BagReader, topic: str, indices: list[int], report: ClipReport) -> tuple[np.ndarray, np.ndarray]:
    """Every finite Twist/TwistStamped of `topic`, the fields at `indices` of twist_vector's 6-vector.

    Stamps: a TwistStamped's header stamp, a Twist's receive time; the receive time for all of
    them when the header stamps cannot be true (noted in `report`). Non-finite commands are
    dropped and counted in `report`.

    Returns:
        int64 (N,) stamps, sorted; float32 (N, len(indices)).
    """
    headers, receipts, values = [], [], []
    for message in reader.messages([topic]):
        msg = message.msg
        stamped = hasattr(msg, "twist")
        twist = msg.twist if stamped else msg
        value = twist_vector(twist)[indices]
        if not np.all(np.isfinite(value)):
            report.skip(NON_FINITE_ACTION, f"{value} at {message.log_time_ns} ns")
            continue
        headers.append(ros_time_ns(msg.header.stamp) if stamped else message.log_time_ns)
        receipts.append(message.log_time_ns)
        values.append(value)
    stamps = message_stamps(reader, topic, headers, receipts, report)
    order = np.argsort(stamps, kind="stable")
    return stamps[order], np.array(values, np.float32).reshape(-1, len(indices))[order]


def _action_at(stamp: int, stamps: np.ndarray, actions: np.ndarray, report: ClipReport) -> np.ndarray | None:
    """The action held at `stamp` (zero-order hold): float32 (A,), or None (counted) before the first."""
    if actions.shape[1] == 0:
        return actions.reshape(0)
    index = int(np.searchsorted(stamps, stamp, side="right")) - 1
    if index < 0:
        report.skip(BEFORE_FIRST_ACTION)
        return None
    return actions[index]


def _resample(images: Iterator[tuple[int, Any]], dt_ns: int, report: ClipReport) -> Iterator[tuple[int, Any | None]]:
    """Thin a stamped stream to one frame per grid time (sora_ros.core.timegrid).

    Yields (stamp, msg) for each kept frame and (stamp, None) where the stream
    breaks (gap or clock jump): the consumer ends its clip there. Frames that
    fall between steps are passed over silently; that is resampling, not loss.
    """
    grid: GridResampler[Any] = GridResampler(dt_ns)
    last: int | None = None
    for stamp, msg in images:
        if last is not None and stamp <= last:
            if last - stamp < dt_ns:
                report.skip(STAMP_NOT_INCREASING, f"{stamp} ns after {last} ns")
                continue
            report.skip(CLOCK_JUMP_BACK, f"{last} ns -> {stamp} ns")
            yield from grid.finish()
            yield stamp, None
        last = stamp
        for kept in grid.push(stamp, msg):
            if isinstance(kept, Gap):
                report.skip(GAP, f"nothing near {kept.grid_ns} ns; next frame at {kept.next_ns} ns")
                yield kept.next_ns, None
            else:
                yield kept
    yield from grid.finish()
