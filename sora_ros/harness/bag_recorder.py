"""Record topics from DDS into a rosbag2 MCAP bag, as `ros2 bag record` does: `sora-ros bag
record`, and the demo's bag of the world model's outputs (out/demo/outputs/).

Each topic's type, offered QoS and RIHS01 type hash come from its publishers in the ROS graph
(a topic without a publisher yet is looked up again every `DISCOVERY_PERIOD_S`); the
subscription matches them (best effort if any publisher is, transient local only if all are);
messages are written as received (their CDR bytes, no re-serialisation), logged at their
receive time on the wall clock. Our own messages (FutureFrames, PatchLatents) get their
definitions from the package's msg/ files, so Foxglove and rosbags decode the bag without ROS.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from sora_ros.bag.writing import BagWriter
from sora_ros.core.paths import PACKAGE, PackageNotFoundError, package_share
from sora_ros.core.units import NS_PER_S

DISCOVERY_PERIOD_S = 0.5
# Subscription depth: enough to ride out a slow disk write without dropping.
SUBSCRIPTION_DEPTH = 20
# The world model's outputs, relative to its node name (the demo records /world_model/...).
WORLD_MODEL_OUTPUTS = ("futures", "latents", "predicted/image", "comparison/image")


def typestore() -> Typestore:
    """Kilted's message types plus sora_ros's own (from msg/ of the installed package)."""
    store = get_typestore(Stores.ROS2_KILTED)
    try:
        msg_dir = package_share(PACKAGE) / "msg"
    except PackageNotFoundError:
        return store
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def _qos_time(duration) -> QosTime:
    sec, nsec = divmod(int(duration.nanoseconds), NS_PER_S)
    return QosTime(sec, nsec)


def offered_qos(profile) -> Qos:
    """A publisher's rclpy QoSProfile (from the graph) as rosbags writes it into a bag."""
    return Qos(QosHistory[profile.history.name], profile.depth, QosReliability[profile.reliability.name],
               QosDurability[profile.durability.name], _qos_time(profile.deadline), _qos_time(profile.lifespan),
               QosLiveliness[profile.liveliness.name], _qos_time(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))  # fmt: skip


def subscription_qos(offered: list[Qos]):
    """What rosbag2 subscribes with: best effort if any publisher offers it (a reliable
    subscription would not match those), transient local only if every publisher is."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    best_effort = any(q.reliability == QosReliability.BEST_EFFORT for q in offered)
    latched = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(depth=SUBSCRIPTION_DEPTH,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)  # fmt: skip


class TopicRecorder:
    """Records `topics` on an rclpy `node` (spun by the caller) into the MCAP bag `path` until `close()`.

    Args:
        node: the rclpy node that subscribes; its executor must be spinning.
        path: the bag directory to create (it must not exist).
        topics: fully qualified topic names.
        compress: zstd-compress the MCAP chunks (Foxglove and rosbag2 read them).

    Raises:
        rosbags.rosbag2.WriterError: `path` exists.
    """

    def __init__(self, node, path: Path | str, topics: list[str], compress: bool = True) -> None:
        self.node, self.path, self.topics = node, Path(path), list(topics)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._bag = BagWriter(self.path, typestore())
        if compress:
            self._bag.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._bag.__enter__()
        self._closed = False
        self._subscriptions: dict[str, object] = {}
        self._discover()
        self._timer = node.create_timer(DISCOVERY_PERIOD_S, self._discover)

    def _discover(self) -> None:
        """Subscribe to every wanted topic that now has a publisher."""
        from sora_ros.harness.player import PlayError, message_class

        for topic in self.topics:
            if topic in self._subscriptions:
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            msgtype = publishers[0].topic_type
            try:
                cls = message_class(msgtype)
            except PlayError as error:
                self.node.get_logger().warning(f"not recording {topic}: {error}")
                self._subscriptions[topic] = None
                continue
            offered = [offered_qos(p.qos_profile) for p in publishers]
            with self._lock:
                self._bag.add_topic(topic, msgtype, offered, str(publishers[0].topic_type_hash))
            self._subscriptions[topic] = self.node.create_subscription(
                cls, topic, lambda data, topic=topic: self._on_message(topic, data), subscription_qos(offered), raw=True)

    def _on_message(self, topic: str, data: bytes) -> None:
        received_ns = time.time_ns()
        with self._lock:
            if self._closed:
                return
            self._bag.write_cdr(topic, received_ns, data)
            self.counts[topic] += 1

    def close(self) -> None:
        """Stop recording and complete the bag (metadata.yaml, MCAP summary)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._bag.__exit__(None, None, None)
        self.node.destroy_timer(self._timer)
        for subscription in self._subscriptions.values():
            if subscription is not None:
                self.node.destroy_subscription(subscription)
