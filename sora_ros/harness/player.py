"""Play rosbag2 bags over DDS at their recorded rate: `sora-ros bag play`, and the replay of
`sora-ros eval --realtime`.

Messages go out as recorded (their CDR bytes, no re-serialisation), on publishers with the
QoS the bag recorded, at the recorded intervals divided by `rate`. Options as in `ros2 bag
play`: topic selection, remapping, `/clock` from the bag's time for nodes with use_sim_time.
`restamp` moves header stamps onto the wall clock instead (the bag's first stamp becomes
"now"), for nodes that compare stamps with their own clock, and to measure true latency.
"""

from __future__ import annotations

import importlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from sora_ros.core.units import NS_PER_S

# Depth of a publisher whose bag recorded no QoS (rosbag2's default history depth).
DEFAULT_DEPTH = 10


class PlayError(Exception):
    """The bags cannot be played as asked; the message says why."""


def message_class(msgtype: str) -> type:
    """The rclpy class of a bag's message type, e.g. "sensor_msgs/msg/Image".

    Raises:
        PlayError: its Python package is not installed (names the pip package).
    """
    package, _, name = msgtype.rpartition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError, ValueError):
        raise PlayError(f"{msgtype}: no Python message class here (pip install ros-{package.replace('_', '-')}, "
                        "or source the workspace that builds it)") from None  # fmt: skip


def publisher_qos(profiles: Iterable) -> "QoSProfile":  # noqa: F821 (rclpy, imported lazily)
    """The QoS to publish a topic with, from the profiles its publishers offered at recording
    (rosbags `Qos`). One publisher: its reliability, durability, history and depth. Several:
    reliable if any was (a reliable publisher serves best-effort subscribers too), transient
    local only if all were, the largest depth. None recorded: reliable, volatile, keep last 10.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    profiles = list(profiles)
    if not profiles:
        return QoSProfile(depth=DEFAULT_DEPTH)
    reliable = any(p.reliability.name != "BEST_EFFORT" for p in profiles)
    latched = all(p.durability.name == "TRANSIENT_LOCAL" for p in profiles)
    keep_all = any(p.history.name == "KEEP_ALL" for p in profiles)
    return QoSProfile(
        depth=max([p.depth for p in profiles if p.depth > 0] or [DEFAULT_DEPTH]),
        history=HistoryPolicy.KEEP_ALL if keep_all else HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagPlayer:
    """Publishers for the topics of some bags, on an rclpy node, and the playback loop."""

    def __init__(self, node, bags: list[Path], topics: Iterable[str] | None = None, remap: dict[str, str] | None = None,
                 rate: float = 1.0, clock_hz: float = 0.0, restamp: bool = False) -> None:  # fmt: skip
        """Inspect the bags and create one publisher per played topic.

        Args:
            node: the rclpy node that publishes.
            bags: played one after another, each on its own timeline.
            topics: bag topics to play (None: all those whose message types are installed).
            remap: bag topic -> topic to publish on.
            rate: playback speed, 1.0 = as recorded.
            clock_hz: publish /clock (rosgraph_msgs/Clock, the bag's time) this often; 0: no /clock.
            restamp: move `header.stamp` of each message by (now - the bag's first stamp).

        Raises:
            PlayError: a topic is in no bag, typed differently across bags, of a type not
                installed (when asked for by name), or the options contradict each other.
            BagError, FileNotFoundError: a bag cannot be opened.
        """
        from rosgraph_msgs.msg import Clock

        from sora_ros.bag.reading import BagReader

        if not rate > 0:
            raise PlayError(f"rate {rate} must be > 0")
        if clock_hz and restamp:
            raise PlayError("restamped messages and /clock from the bag disagree: choose one")
        self.node, self.bags, self.rate, self.clock_hz, self.restamp = node, bags, rate, clock_hz, restamp
        found: dict[str, tuple[str, tuple]] = {}  # topic -> (msgtype, offered QoS profiles)
        for bag in bags:
            for topic, info in BagReader(bag).topics.items():
                if topic in found and found[topic][0] != info.msgtype:
                    raise PlayError(f"{topic} has different types in different bags ({found[topic][0]}, {info.msgtype})")
                found[topic] = (info.msgtype, found.get(topic, ("", ()))[1] + info.qos)
        wanted = list(found) if topics is None else list(topics)
        missing = [t for t in wanted if t not in found]
        if missing:
            have = ", ".join(f"{t} ({m})" for t, (m, _) in sorted(found.items())) or "no topics"
            raise PlayError(f"no topic {', '.join(missing)} in the bags; they have: {have}")
        remap = remap or {}
        unknown = [source for source in remap if source not in wanted]
        if unknown:
            raise PlayError(f"--remap names {', '.join(unknown)}, which is not played")
        self.skipped: dict[str, str] = {}  # topic -> why it is not played
        self.publishers: dict[str, tuple[type, object]] = {}  # bag topic -> (class, publisher)
        for topic in wanted:
            msgtype, profiles = found[topic]
            try:
                cls = message_class(msgtype)
            except PlayError as error:
                if topics is not None:
                    raise
                self.skipped[topic] = str(error)
                continue
            self.publishers[topic] = (cls, node.create_publisher(cls, remap.get(topic, topic), publisher_qos(profiles)))
        self._clock = (Clock, node.create_publisher(Clock, "/clock", DEFAULT_DEPTH)) if clock_hz else None
        self.published: Counter = Counter()  # output topic -> messages sent, over every play()

    def topic_name(self, topic: str) -> str:
        """The topic a bag topic is published on."""
        return self.publishers[topic][1].topic_name

    def play(self, bag: Path, check: Callable[[], None] | None = None) -> str | None:
        """Publish one bag's messages at the recorded rate, counting them in `published`.

        Args:
            check: called before each message; raises to stop playback (e.g. a node died).

        Returns:
            Why reading stopped early (damage), or None.
        """
        from rclpy.serialization import deserialize_message

        from sora_ros.bag.reading import BagReader
        from sora_ros.nodes.messages import header, stamp_ns

        reader = BagReader(bag)
        first_log_ns = wall_start_ns = stamp_offset_ns = None
        self._clock_ns = -1  # the last /clock published: it never goes back within a bag
        for message in reader.messages(list(self.publishers), raw=True):
            if check is not None:
                check()
            if first_log_ns is None:
                first_log_ns, wall_start_ns = message.log_time_ns, time.monotonic_ns()
            self._wait(wall_start_ns + round((message.log_time_ns - first_log_ns) / self.rate), first_log_ns, wall_start_ns)
            cls, publisher = self.publishers[message.topic]
            payload = message.msg
            if self.restamp and "header" in getattr(cls, "_fields_and_field_types", {}):
                msg = deserialize_message(payload, cls)
                if stamp_offset_ns is None:
                    stamp_offset_ns = time.time_ns() - stamp_ns(msg.header)
                msg.header = header(stamp_ns(msg.header) + stamp_offset_ns, msg.header.frame_id)
                payload = msg
            if self._clock is not None:
                self._publish_clock(message.log_time_ns)
            publisher.publish(payload)
            self.published[publisher.topic_name] += 1
        return reader.stop_reason

    def _wait(self, until_ns: int, first_log_ns: int, wall_start_ns: int) -> None:
        """Sleep until monotonic time `until_ns`, publishing /clock every 1/clock_hz meanwhile."""
        period_ns = round(NS_PER_S / self.clock_hz) if self._clock else None
        while (left_ns := until_ns - time.monotonic_ns()) > 0:
            if period_ns is None:
                time.sleep(left_ns / NS_PER_S)
                return
            time.sleep(min(left_ns, period_ns) / NS_PER_S)
            self._publish_clock(first_log_ns + round((time.monotonic_ns() - wall_start_ns) * self.rate))

    def _publish_clock(self, bag_time_ns: int) -> None:
        from sora_ros.nodes.messages import header

        cls, publisher = self._clock
        self._clock_ns = max(self._clock_ns, bag_time_ns)
        publisher.publish(cls(clock=header(self._clock_ns, "").stamp))
