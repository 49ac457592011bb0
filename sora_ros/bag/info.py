"""Summarise a bag: topics, types, counts, rates, duration, first and last stamps, compression,
image size and encoding per image topic, and header stamps that cannot be true or are out of order
(sora_ros.core.stamps)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sora_ros.bag.reading import BagReader
from sora_ros.core.image import ImageConversionError, compressed_to_rgb
from sora_ros.core.stamps import stamp_order_problem, stamp_problem
from sora_ros.core.units import NS_PER_S, ros_time_ns


@dataclass(frozen=True)
class TopicSummary:
    topic: str
    msgtype: str
    count: int
    first_ns: int | None  # receive times, nanoseconds
    last_ns: int | None
    images: tuple[str, ...] = ()  # image topics: each distinct "WIDTHxHEIGHT encoding" (compressed: its first message)

    @property
    def rate_hz(self) -> float | None:
        """Mean message rate over the topic's own span; None under two messages."""
        if self.count < 2 or self.first_ns is None or self.last_ns is None or self.last_ns == self.first_ns:
            return None
        return (self.count - 1) * NS_PER_S / (self.last_ns - self.first_ns)


@dataclass(frozen=True)
class BagSummary:
    path: Path
    files: list[Path]
    topics: list[TopicSummary]
    stop_reason: str | None  # where reading stopped in a damaged bag
    compression: str | None = None  # e.g. "zstd per message", as metadata.yaml or the file names say
    stamp_problems: dict[str, str] = field(default_factory=dict)  # topic -> why its header stamps are not used
    stamp_order: dict[str, str] = field(default_factory=dict)  # topic -> its used stamps' steps back, duplicates, gaps

    @property
    def first_ns(self) -> int | None:
        stamps = [t.first_ns for t in self.topics if t.first_ns is not None]
        return min(stamps) if stamps else None

    @property
    def last_ns(self) -> int | None:
        stamps = [t.last_ns for t in self.topics if t.last_ns is not None]
        return max(stamps) if stamps else None

    @property
    def duration_ns(self) -> int:
        return 0 if self.first_ns is None or self.last_ns is None else self.last_ns - self.first_ns

    def format(self) -> str:
        """The human-readable report `sora-ros bag info` prints."""
        lines = [
            f"bag:      {self.path}",
            f"files:    {', '.join(f.name for f in self.files)}",
            *([f"compression: {self.compression}"] if self.compression else []),
            f"duration: {self.duration_ns / NS_PER_S:.3f} s",
            f"start:    {_stamp(self.first_ns)}",
            f"end:      {_stamp(self.last_ns)}",
            f"messages: {sum(t.count for t in self.topics)}",
            "topics:",
        ]
        width = max((len(t.topic) for t in self.topics), default=0)
        for t in self.topics:
            rate = f"{t.rate_hz:8.2f} Hz" if t.rate_hz else "       - Hz"
            images = f"  {', '.join(t.images)}" if t.images else ""
            lines.append(f"  {t.topic:{width}s}  {t.count:7d} msgs  {rate}  {t.msgtype}{images}")
        for topic, problem in self.stamp_problems.items():
            lines.append(f"WARNING: {topic}: {problem}; sora-ros aligns it by receive time")
        for topic, problem in self.stamp_order.items():
            lines.append(f"WARNING: {topic}: {problem}")
        if self.stop_reason:
            lines.append(f"WARNING: damaged bag, read up to: {self.stop_reason}")
        return "\n".join(lines)


def _stamp(ns: int | None) -> str:
    """"SECONDS.NANOSECONDS s (NS ns)", the seconds exact: a float of an epoch stamp in ns is not."""
    if ns is None:
        return "-"
    seconds, nanoseconds = divmod(abs(ns), NS_PER_S)
    return f"{'-' if ns < 0 else ''}{seconds}.{nanoseconds:09d} s ({ns} ns)"


def summarize(bag: Path | str) -> BagSummary:
    """Read the whole bag once (message by message) and summarise it.

    Counts and times are measured from the messages actually readable, so a
    damaged bag reports what it really holds.

    Raises:
        FileNotFoundError: no such bag.
        BagError: a storage file that cannot be opened at all.
    """
    reader = BagReader(bag)
    types = reader.topics
    counts = {topic: 0 for topic in types}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    stamps: dict[str, tuple[array, array]] = {}  # topic -> header stamps, receive times (int64) of stamped messages
    images: dict[str, dict[str, None]] = {}  # topic -> distinct image descriptions, in order seen
    for message in reader.messages(list(types)):
        counts[message.topic] += 1
        if (description := _image_description(message.msg, images.get(message.topic))) is not None:
            images.setdefault(message.topic, {})[description] = None
        first.setdefault(message.topic, message.log_time_ns)
        last[message.topic] = message.log_time_ns
        header = getattr(message.msg, "header", None)
        if header is not None and hasattr(header, "stamp"):
            headers, receipts = stamps.setdefault(message.topic, (array("q"), array("q")))
            headers.append(ros_time_ns(header.stamp))
            receipts.append(message.log_time_ns)
    topics = [TopicSummary(t, types[t].msgtype, counts[t], first.get(t), last.get(t), tuple(images.get(t, ())))
              for t in types]  # fmt: skip
    problems = {topic: problem for topic, (headers, receipts) in stamps.items()
                if (problem := stamp_problem(np.frombuffer(headers, np.int64), np.frombuffer(receipts, np.int64)))}
    # Gaps only on image topics: commands and odometry may come at any rate (the latest one holds).
    order = {topic: problem for topic, (headers, _) in stamps.items() if topic not in problems
             and (problem := stamp_order_problem(np.frombuffer(headers, np.int64), count_gaps=topic in images))}
    return BagSummary(reader.path, reader.files, topics, reader.stop_reason, reader.compression, problems, order)


# Distinct image descriptions listed per topic, beyond which a topic is summarised as varying.
_MAX_IMAGE_DESCRIPTIONS = 3


def _image_description(msg, seen: dict[str, None] | None) -> str | None:
    """"WIDTHxHEIGHT encoding" of a sensor_msgs Image, or of a CompressedImage's first message
    (decoded once: its header does not say); None for anything else or nothing new to say."""
    if hasattr(msg, "encoding") and hasattr(msg, "width") and hasattr(msg, "height"):
        description = f"{msg.width}x{msg.height} {msg.encoding}"
        if seen is None or description in seen:
            return description
        return description if len(seen) < _MAX_IMAGE_DESCRIPTIONS else "..."
    if hasattr(msg, "format") and hasattr(msg, "data") and seen is None:
        try:  # as training and eval decode it: empty, damaged, over the pixel budget or not what `format` says
            decoded = compressed_to_rgb(msg)
        except ImageConversionError as error:
            return f"{msg.format} (first message not decodable: {error})"
        return f"{decoded.shape[1]}x{decoded.shape[0]} {msg.format} (first message)"
    return None
