"""A forward scan of an MCAP file that reads up to the first damage.

rosbags reads an MCAP file through its summary and footer, which a recording
cut short (crash, full disk, copy interrupted) never got. This scanner walks
the records from the start instead, unpacking chunks one at a time, and stops
at the first record it cannot read, remembering where and why.

Record layout (MCAP spec): opcode u8, length u64, then `length` bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

# rosbags' own chunk decompression (none, zstd, lz4, with CRC check).
from rosbags.rosbag2.storage_mcap import decompress

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
_RECORD_PREFIX = struct.Struct("<BQ")  # opcode, content length
_MESSAGE_PREFIX = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_CHUNK_PREFIX = struct.Struct("<QQQI")  # start time, end time, uncompressed size, crc


class ScannedSchema(NamedTuple):
    name: str  # the message type, e.g. sensor_msgs/msg/Image
    encoding: str  # ros2msg or ros2idl
    data: str  # the message definition text


class ScannedChannel(NamedTuple):
    topic: str
    schema: ScannedSchema | None


class ScannedMessage(NamedTuple):
    channel_id: int
    log_time_ns: int
    data: bytes


class McapScanner:
    """Iterate the messages of a possibly damaged MCAP file, front to back.

    After `messages()` ends, `stop_reason` is None if the scan reached the
    data end record, else says at which byte offset it stopped and why.
    `channels` grows as channel records are met.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.schemas: dict[int, ScannedSchema] = {}
        self.channels: dict[int, ScannedChannel] = {}
        self.stop_reason: str | None = None

    def messages(self) -> Iterator[ScannedMessage]:
        """Yield every readable message in file order; set stop_reason at damage."""
        self.stop_reason = None
        with self.path.open("rb") as bio:
            if bio.read(len(MAGIC)) != MAGIC:
                self.stop_reason = "byte 0: not an MCAP file (bad magic)"
                return
            try:
                yield from self._records(bio, self.size, nested=False)
            except _Damage as damage:
                self.stop_reason = f"byte {damage.offset} of {self.size}: {damage}"

    def _records(self, bio: BinaryIO, end: int, nested: bool) -> Iterator[ScannedMessage]:
        while True:
            offset = bio.tell()
            if offset == end:
                if not nested:
                    raise _Damage(offset, "file ends without an MCAP data-end record (recording cut short?)")
                return
            prefix = bio.read(_RECORD_PREFIX.size)
            if len(prefix) < _RECORD_PREFIX.size:
                raise _Damage(offset, "truncated record header")
            opcode, length = _RECORD_PREFIX.unpack(prefix)
            if length > end - bio.tell():
                raise _Damage(offset, f"record 0x{opcode:02x} claims {length} bytes, only {end - bio.tell()} remain")
            if opcode in (OP_DATA_END, OP_FOOTER) and not nested:
                return
            content = bio.read(length)
            try:
                if opcode == OP_MESSAGE:
                    channel_id, _, log_time, _ = _MESSAGE_PREFIX.unpack_from(content)
                    yield ScannedMessage(channel_id, log_time, content[_MESSAGE_PREFIX.size :])
                elif opcode == OP_SCHEMA:
                    self._add_schema(content)
                elif opcode == OP_CHANNEL:
                    self._add_channel(content)
                elif opcode == OP_CHUNK and not nested:
                    records = self._unpack_chunk(content)
                    yield from self._records(_BytesReader(records), len(records), nested=True)
            except (struct.error, UnicodeDecodeError, ValueError) as error:
                raise _Damage(offset, f"unreadable record 0x{opcode:02x}: {error}") from None
            except _Damage as damage:  # inside a chunk: report the chunk's file offset
                raise _Damage(offset, f"chunk damaged ({damage})") from None

    def _add_schema(self, content: bytes) -> None:
        (schema_id,), pos = struct.unpack_from("<H", content), 2
        name, pos = _string(content, pos)
        encoding, pos = _string(content, pos)
        data, pos = _string(content, pos)
        self.schemas[schema_id] = ScannedSchema(name, encoding, data)

    def _add_channel(self, content: bytes) -> None:
        channel_id, schema_id = struct.unpack_from("<HH", content)
        topic, _ = _string(content, 4)
        self.channels[channel_id] = ScannedChannel(topic, self.schemas.get(schema_id))

    @staticmethod
    def _unpack_chunk(content: bytes) -> bytes:
        _, _, uncompressed_size, crc = _CHUNK_PREFIX.unpack_from(content)
        compression, pos = _string(content, _CHUNK_PREFIX.size)
        (compressed_size,) = struct.unpack_from("<Q", content, pos)
        pos += 8
        compressed = content[pos : pos + compressed_size]
        if len(compressed) != compressed_size:
            raise ValueError(f"chunk holds {len(compressed)} of {compressed_size} bytes")
        try:
            return decompress(compressed, compression, uncompressed_size, crc)
        except Exception as error:  # rosbags raises ReaderError or the codec's own error
            raise ValueError(f"chunk does not decompress ({compression or 'none'}): {error}") from None


class _Damage(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset


class _BytesReader:
    """The read/tell subset of a file over an in-memory chunk."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = memoryview(data), 0

    def tell(self) -> int:
        return self._pos

    def read(self, size: int) -> bytes:
        out = bytes(self._data[self._pos : self._pos + size])
        self._pos += len(out)
        return out


def _string(content: bytes, pos: int) -> tuple[str, int]:
    """An MCAP string (u32 length, UTF-8) at `pos`; returns it and the next position."""
    (length,) = struct.unpack_from("<I", content, pos)
    pos += 4
    if pos + length > len(content):
        raise ValueError(f"string of {length} bytes overruns its record")
    return bytes(content[pos : pos + length]).decode(), pos + length
