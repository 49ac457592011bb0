"""Write rosbag2 MCAP files with rosbags, one call per message, as rosbag2 itself writes them.

rosbags 0.11 leaves three things out that `ros2 bag record` (Kilted, MCAP storage) writes, and
that replay and tools rely on; BagWriter adds them:
- `offered_qos_profiles` of every topic (metadata.yaml and the MCAP channel), so a player can
  publish a camera best-effort again: what the publisher offered, or by default sensor-data
  QoS for camera topics and reliable QoS for the rest (`default_qos`);
- `topic_type_hash` (the RIHS01 type hash) in each MCAP channel's metadata, the key
  rosbag2_storage_mcap writes and reads beside `offered_qos_profiles`;
- `ros_distro: kilted` instead of rosbags' own name, in metadata.yaml and in the MCAP file's
  `rosbag2` metadata record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string
from rosbags.typesys.store import Typestore

from sora_ros.bag import messages as m
from sora_ros.bag.messages import TYPESTORE
from sora_ros.core.files import staged_path

# rosbag2 metadata version 9 is what Jazzy and Kilted write.
BAG_VERSION = 9
# The distribution our message definitions (TYPESTORE) and the rclpy wheels come from.
ROS_DISTRO = "kilted"
# The MCAP channel metadata key rosbag2_storage_mcap keeps the type hash under.
TYPE_HASH_KEY = "topic_type_hash"

# RMW_DURATION_INFINITE as rosbag2 writes it into offered_qos_profiles.
INFINITE = QosTime(9223372036, 854775807)
# rclpy's qos_profile_sensor_data: what cameras publish with.
SENSOR_DATA_QOS = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE,
                      INFINITE, INFINITE, QosLiveliness.AUTOMATIC, INFINITE, False)  # fmt: skip
# rclpy's default publisher QoS (reliable, volatile, keep last 10).
RELIABLE_QOS = SENSOR_DATA_QOS._replace(depth=10, reliability=QosReliability.RELIABLE)
CAMERA_TYPES = frozenset({m.IMAGE, m.COMPRESSED_IMAGE, m.CAMERA_INFO})


def default_qos(msgtype: str) -> Qos:
    """The QoS our writers record for a topic of `msgtype` that states none: sensor data
    (best effort, keep last 5) for camera messages, reliable keep last 10 for the rest."""
    return SENSOR_DATA_QOS if msgtype in CAMERA_TYPES else RELIABLE_QOS


def _as_kilted(metadata: str) -> str:
    fixed, count = re.subn(r"^(\s*)ros_distro: rosbags$", rf"\1ros_distro: {ROS_DISTRO}", metadata, flags=re.M)
    assert count == 1, "rosbags' metadata has no `ros_distro: rosbags` line to replace"
    return fixed


class _Rosbag2McapWriter(McapWriter):
    """rosbags' MCAP storage plus rosbag2's `topic_type_hash` channel metadata and ros_distro."""

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        """rosbags' McapWriter.add_connection, with the type hash in the channel metadata."""
        metadata = BytesIO()
        for key, value in (("offered_qos_profiles", offered_qos_profiles), (TYPE_HASH_KEY, connection.digest)):
            write_string(metadata, key)
            write_string(metadata, value)
        channel = Channel(connection.id, connection.msgtype, connection.topic, connection.ext.serialization_format,
                          metadata.getvalue())  # fmt: skip
        self.channels.append(channel)
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, channel, self.schemas)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, _as_kilted(metadata))


class _Rosbag2Writer(Writer):
    STORAGE_PLUGINS = {StoragePlugin.MCAP: _Rosbag2McapWriter}

    def close(self) -> None:
        super().close()
        self.metapath.write_text(_as_kilted(self.metapath.read_text("utf8")), "utf8")


class BagWriter:
    """A rosbag2 MCAP bag open for writing; topics are added on first use.

    Use as a context manager: the bag (its MCAP summary and metadata.yaml) is
    complete only after close. A bag closed by an exception is still closed, so
    what was written stays readable.
    """

    def __init__(self, path: Path | str, typestore: Typestore = TYPESTORE) -> None:
        """Create the bag directory `path` (it must not exist).

        Raises:
            rosbags.rosbag2.WriterError: the path exists already.
        """
        self.path = Path(path)
        self._typestore = typestore
        self._writer = _Rosbag2Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._connections: dict[str, Any] = {}

    def set_compression(self, mode: CompressionMode, fmt: CompressionFormat = CompressionFormat.ZSTD) -> None:
        """Compress what follows (before `__enter__`): CompressionMode.STORAGE compresses the
        MCAP chunks, as rosbag2's MCAP storage presets do; MESSAGE and FILE as rosbag2 does."""
        self._writer.set_compression(mode, fmt)

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._writer.close()

    def add_topic(self, topic: str, msgtype: str, qos: Sequence[Qos] | None = None, type_hash: str | None = None) -> None:
        """Add `topic` (once) with the QoS its publishers offered and its type hash.

        Args:
            topic: the topic name.
            msgtype: e.g. "sensor_msgs/msg/Image"; its definition must be in the typestore.
            qos: the offered profiles (rosbags `Qos`); None: `default_qos(msgtype)`.
            type_hash: "RIHS01_<hex>" as the publisher announced it; None: computed from the typestore.
        """
        if topic in self._connections:
            return
        qos = [default_qos(msgtype)] if qos is None else list(qos)
        if type_hash is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._typestore, offered_qos_profiles=qos)
        else:
            msgdef, _ = self._typestore.generate_msgdef(msgtype, ros_version=2)
            connection = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=type_hash,
                                                     offered_qos_profiles=qos)  # fmt: skip
        self._connections[topic] = connection

    def write(self, topic: str, msgtype: str, log_time_ns: int, msg: Any) -> None:
        """Serialize `msg` (a rosbags message of `msgtype`) and write it on `topic`.

        Args:
            topic: the topic name; its connection is created on first use, with `default_qos`
                unless `add_topic` named the QoS before.
            msgtype: e.g. "sensor_msgs/msg/Image".
            log_time_ns: the bag's receive time for the message, nanoseconds.
            msg: the message object.
        """
        self.add_topic(topic, msgtype)
        self.write_cdr(topic, log_time_ns, self._typestore.serialize_cdr(msg, msgtype))

    def write_cdr(self, topic: str, log_time_ns: int, data: bytes | memoryview) -> None:
        """Write a message already serialized (CDR, as received over DDS) on a topic `add_topic` added.

        Raises:
            KeyError: the topic was not added.
        """
        self._writer.write(self._connections[topic], int(log_time_ns), data)


@contextmanager
def staged_bag_path(path: Path | str) -> Iterator[Path]:
    """A path to write a whole bag at, in a hidden temporary directory beside `path`: when the
    block ends without an exception, the bag is renamed to `path`; otherwise it is removed, so a
    failed or interrupted write leaves nothing behind (nor a `path` that blocks a rerun).
    `sora_ros.core.files.staged_path`, with rosbags' error for an existing bag.

        with staged_bag_path(out) as staged, BagWriter(staged) as bag:
            ...

    Parent directories of `path` that did not exist are created, and removed again on failure.

    Raises:
        rosbags.rosbag2.WriterError: `path` exists (before the block runs, or by the time it ends).
        OSError: the staging directory cannot be made beside `path`.
    """
    from rosbags.rosbag2 import WriterError

    try:
        with staged_path(path) as staged:
            yield staged
    except FileExistsError as error:
        raise WriterError(str(error)) from None
