"""Write rosbag2 MCAP files with rosbags, one call per message."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from sora_ros.bag.messages import TYPESTORE

# rosbag2 metadata version 9 is what Jazzy and Kilted write.
BAG_VERSION = 9


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
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._writer.close()

    def write(self, topic: str, msgtype: str, log_time_ns: int, msg: Any) -> None:
        """Serialize `msg` (a rosbags message of `msgtype`) and write it on `topic`.

        Args:
            topic: the topic name; its connection is created on first use.
            msgtype: e.g. "sensor_msgs/msg/Image".
            log_time_ns: the bag's receive time for the message, nanoseconds.
            msg: the message object.
        """
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self._connections[topic] = connection
        self._writer.write(connection, int(log_time_ns), self._typestore.serialize_cdr(msg, msgtype))
