"""Stream messages out of rosbag2 bags (MCAP or sqlite3), damaged ones included.

A "bag" here is a rosbag2 directory (metadata.yaml plus storage files), or a
bare `.mcap` / `.db3` file. Storage files are read directly, so a recording
cut short before its metadata.yaml or MCAP summary were written still reads:
up to the first damage, with `stop_reason` saying where it stopped. Messages
are deserialized one at a time; nothing loads a whole bag into memory.

Compression (`ros2 bag record --compression-format zstd`), as rosbag2 writes it:
`--compression-mode file` stores `name.mcap.zstd` / `name.db3.zstd`, each
decompressed (streaming, with rosbags' zstd) into a temporary copy when first
read; `--compression-mode message` stores every message's CDR as a zstd frame,
recognised by its magic bytes (a CDR message never starts with them) so that it
reads with or without metadata.yaml. Any other compression format that
metadata.yaml declares is refused by name.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import struct
import sys
import tempfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2 import ReaderError
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the zstd module rosbags itself uses before Python 3.14
    from backports import zstd

from sora_ros.bag.mcap_scan import McapScanner
from sora_ros.bag.messages import TYPESTORE

STORAGE_SUFFIXES = (".mcap", ".db3")
ZSTD_SUFFIX = ".zstd"  # a file-compressed storage file: name.mcap.zstd, name.db3.zstd
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # every zstd frame starts with it; CDR starts with 0x00
SUPPORTED_COMPRESSION = "zstd"
# What a storage file can throw while being read: damage, not a bug of ours.
# What rosbags raises on damaged files: its own errors, and plain Python ones from its parsers
# (an 8-byte MCAP that is only the magic raised TypeError from McapReader.open).
_READ_ERRORS = (ReaderError, SerdeError, sqlite3.DatabaseError, OSError, EOFError, ValueError, KeyError, TypeError,
                IndexError, struct.error, zstd.ZstdError)


class BagError(Exception):
    """A bag that cannot be opened at all; the message names the file and why."""


class TopicNotFoundError(BagError):
    """The bag lacks a requested topic; the message lists the topics it has."""


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: its message type, how many messages it holds, and the QoS profiles its
    publishers offered when it was recorded (rosbags `Qos`, one per publisher; empty when the
    bag does not say)."""

    msgtype: str
    count: int
    qos: tuple = ()


class BagMessage(NamedTuple):
    topic: str
    log_time_ns: int  # when the recorder received it
    msg: Any  # the deserialized rosbags message, or its CDR bytes (raw=True)


def find_bags(paths: Iterable[Path | str]) -> list[Path]:
    """Expand files and folders into a sorted list of bags.

    Args:
        paths: bags (rosbag2 directories, .mcap or .db3 files) and folders
            that hold bags at any depth.

    Returns:
        Every bag found, each once, in path order.

    Raises:
        FileNotFoundError: a path does not exist, or a folder holds no bag.
    """
    bags: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        found = list(_bags_under(path))
        if not found:
            raise FileNotFoundError(f"{path}: no rosbag2 bag (metadata.yaml, *.mcap, *.db3, or those .zstd) found in it")
        bags.extend(found)
    return sorted(set(bags))


def is_storage_file(path: Path) -> bool:
    """Whether `path` is named like a rosbag2 storage file: .mcap, .db3, or either + .zstd."""
    return path.name.removesuffix(ZSTD_SUFFIX).endswith(STORAGE_SUFFIXES)


def _bags_under(path: Path) -> Iterator[Path]:
    if path.is_file():
        if is_storage_file(path):
            yield path
        return
    if (path / "metadata.yaml").exists() or any(is_storage_file(child) for child in path.iterdir()):
        yield path  # a rosbag2 directory, with or without its metadata
        return
    for child in sorted(path.iterdir()):
        if child.is_dir() or is_storage_file(child):
            yield from _bags_under(child)


def storage_files(bag: Path) -> list[Path]:
    """The storage files of a bag, in recording order.

    Uses metadata.yaml's file list when there is one, else the directory's
    .mcap/.db3 (or .zstd) files ordered by their split index (name_0, name_1, ...).
    """
    if bag.is_file():
        return [bag]
    metadata = bag / "metadata.yaml"
    if metadata.exists():
        try:
            info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
            files = [bag / Path(name).name for name in info["relative_file_paths"]]
            if all(file.exists() for file in files):
                return files
        except (yaml.YAMLError, KeyError, TypeError):
            pass  # unreadable metadata: fall back to the files themselves
    return sorted((f for f in bag.iterdir() if is_storage_file(f)), key=_split_index)


def _split_index(path: Path) -> tuple[int, str]:
    match = re.search(r"_(\d+)$", Path(path.name.removesuffix(ZSTD_SUFFIX)).stem)
    return (int(match.group(1)) if match else 0, path.name)


def declared_compression(bag: Path) -> str | None:
    """The compression metadata.yaml declares, e.g. "zstd per message" or "zstd per file"; None if none.

    Raises:
        BagError: a compression format other than zstd (what rosbag2 and rosbags support).
    """
    metadata = bag / "metadata.yaml"
    if bag.is_file() or not metadata.exists():
        return None
    try:
        info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
        mode = str(info.get("compression_mode") or "none").lower()
        fmt = str(info.get("compression_format") or "")
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None  # unreadable metadata: the storage files are read as they are
    if mode in ("none", ""):
        return None
    if fmt.lower() != SUPPORTED_COMPRESSION:
        raise BagError(f"{metadata}: compression format {fmt or '(none named)'!r} in {mode} mode is not supported "
                       f"(only {SUPPORTED_COMPRESSION}); decompress the bag first, e.g. `ros2 bag convert`")
    return f"{fmt.lower()} per {mode}"


class BagReader:
    """Read one bag's topics and messages, streaming, across its split files.

    `stop_reason` is None while everything read cleanly; after damage it says
    which file, where, and why reading stopped. Messages before the damage are
    still yielded.
    """

    def __init__(self, bag: Path | str) -> None:
        """Raises:
        FileNotFoundError: the bag does not exist or has no storage file.
        """
        self.path = Path(bag)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such bag")
        self.files = storage_files(self.path)
        if not self.files:
            raise FileNotFoundError(f"{self.path}: no .mcap or .db3 storage file in the bag")
        self.compression = declared_compression(self.path)  # BagError: an unsupported compression
        if self.compression is None and any(f.name.endswith(ZSTD_SUFFIX) for f in self.files):
            self.compression = f"{SUPPORTED_COMPRESSION} per file"
        self.stop_reason: str | None = None
        # Set by `topics`: where damage stopped the scan of a storage file without an index, so that
        # topics recorded after it are missing from `topics` (e.g. a recording cut short at its start).
        self.damage: str | None = None
        self._topics: dict[str, TopicInfo] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None  # decompressed copies of .zstd files
        self._plain: dict[Path, tuple[Path, str | None]] = {}

    def _readable(self, file: Path) -> tuple[Path, str | None]:
        """The storage file itself, or for a .zstd file its decompressed copy and, if the
        compressed file is cut short or damaged, why decompression stopped (the copy holds
        what came before)."""
        if not file.name.endswith(ZSTD_SUFFIX):
            return file, None
        if file not in self._plain:
            self._tmp = self._tmp or tempfile.TemporaryDirectory(prefix="sora_ros_bag_")
            plain = Path(self._tmp.name) / file.name.removesuffix(ZSTD_SUFFIX)
            problem = None
            with file.open("rb") as compressed, plain.open("wb") as out:
                try:
                    with zstd.open(compressed, "rb") as stream:
                        shutil.copyfileobj(stream, out)
                except (zstd.ZstdError, EOFError) as error:
                    problem = f"does not decompress to its end ({type(error).__name__}: {error})"
            self._plain[file] = (plain, problem)
        return self._plain[file]

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topic name -> type and message count, over all files.

        For a damaged MCAP file the counts come from a scan up to the damage.

        Raises:
            BagError: a storage file cannot be opened at all.
        """
        if self._topics is None:
            counts: dict[str, TopicInfo] = {}
            for file in self.files:
                plain, problem = self._readable(file)
                topics, stopped = _file_topics(plain)
                for topic, info in topics.items():
                    old = counts.get(topic, TopicInfo(info.msgtype, 0))
                    counts[topic] = TopicInfo(old.msgtype, old.count + info.count, old.qos or info.qos)
                if (problem or stopped) and self.damage is None:
                    self.damage = f"{file.name}: {'; '.join(filter(None, (problem, stopped)))}"
            self._topics = dict(sorted(counts.items()))
        return self._topics

    def require(self, topics: Iterable[str]) -> None:
        """Check that every topic is in the bag.

        Raises:
            TopicNotFoundError: naming the missing topic and the topics the bag has.
        """
        for topic in topics:
            if topic not in self.topics:
                have = ", ".join(f"{name} ({info.msgtype}, {info.count})" for name, info in self.topics.items())
                raise TopicNotFoundError(f"{self.path}: no topic {topic!r}; the bag has: "
                                         + (have or f"no topics (empty, or damaged: `sora-ros bag info {self.path}`)"))

    def messages(self, topics: Collection[str], raw: bool = False) -> Iterator[BagMessage]:
        """Yield the messages on `topics`, file by file in time order: deserialized, or with
        `raw` their CDR bytes as recorded.

        Damage stops the iteration and sets `stop_reason`; messages read before
        it are yielded.
        """
        self.stop_reason = None
        for file in self.files:
            plain, problem = self._readable(file)
            reader = _FileMessages(plain, topics, raw)
            yield from reader
            if reader.stop_reason or problem:
                reason = "; ".join(filter(None, (problem, reader.stop_reason)))
                self.stop_reason = f"{file.name}: {reason} (after {reader.count} messages)"
                return


def _file_topics(file: Path) -> tuple[dict[str, TopicInfo], str | None]:
    """The topics of one storage file, from its index or, without one, a scan of its messages; and
    where damage stopped that scan (None: read to its end)."""
    indexed = _open_indexed(file)
    if indexed is not None:
        try:
            topics: dict[str, TopicInfo] = {}
            for conn in indexed.connections:
                old = topics.get(conn.topic, TopicInfo(conn.msgtype, 0))
                qos = tuple(getattr(conn.ext, "offered_qos_profiles", ()))
                topics[conn.topic] = TopicInfo(conn.msgtype, old.count + conn.msgcount, old.qos + qos)
            return topics, None
        finally:
            indexed.close()
    scanner = McapScanner(file)
    counts: dict[int, int] = {}
    for message in scanner.messages():
        counts[message.channel_id] = counts.get(message.channel_id, 0) + 1
    topics = {}
    for channel_id, channel in scanner.channels.items():
        msgtype = channel.schema.name if channel.schema else "unknown"
        old = topics.get(channel.topic, TopicInfo(msgtype, 0))
        topics[channel.topic] = TopicInfo(msgtype, old.count + counts.get(channel_id, 0))
    return topics, scanner.stop_reason


def _open_indexed(file: Path) -> McapReader | Sqlite3Reader | None:
    """The rosbags reader of a storage file, open; None for an MCAP file to be scanned instead.

    Raises:
        BagError: a sqlite3 file that does not open, or a file that is no MCAP at all.
    """
    if file.suffix == ".db3":
        reader = Sqlite3Reader(file)
        try:
            reader.open()
        except (ReaderError, sqlite3.DatabaseError) as error:
            raise BagError(f"{file}: not a readable sqlite3 rosbag2 file: {error}") from None
        return reader
    with file.open("rb") as bio:
        if bio.read(8) != b"\x89MCAP0\r\n":
            raise BagError(f"{file}: not an MCAP file (bad magic bytes)")
    reader = McapReader(file)
    try:
        reader.open()
    except _READ_ERRORS:
        return None  # no readable summary or footer: scan it
    return reader


class _FileMessages:
    """Iterator over one storage file's messages on some topics; sets stop_reason on damage."""

    def __init__(self, file: Path, topics: Collection[str], raw: bool = False) -> None:
        self.file, self.topics, self.raw = file, set(topics), raw
        self.stop_reason: str | None = None
        self.count = 0

    def __iter__(self) -> Iterator[BagMessage]:
        indexed = _open_indexed(self.file)
        if indexed is None:
            yield from self._scanned()
            return
        try:
            connections = [c for c in indexed.connections if c.topic in self.topics]
            typestore = _typestore((c.msgtype, c.msgdef.format, c.msgdef.data) for c in connections)
            if connections:
                for conn, log_time, raw in indexed.messages(connections):
                    cdr = _cdr(raw)
                    msg = bytes(cdr) if self.raw else typestore.deserialize_cdr(cdr, conn.msgtype)
                    self.count += 1
                    yield BagMessage(conn.topic, log_time, msg)
        except _READ_ERRORS as error:
            self.stop_reason = f"{type(error).__name__}: {error}"
        finally:
            indexed.close()

    def _scanned(self) -> Iterator[BagMessage]:
        scanner = McapScanner(self.file)
        typestores: dict[int, tuple[Typestore, str]] = {}
        try:
            for message in scanner.messages():
                channel = scanner.channels.get(message.channel_id)
                if channel is None or channel.topic not in self.topics or channel.schema is None:
                    continue
                if self.raw:
                    self.count += 1
                    yield BagMessage(channel.topic, message.log_time_ns, bytes(_cdr(message.data)))
                    continue
                if message.channel_id not in typestores:
                    schema = channel.schema
                    fmt = MessageDefinitionFormat.IDL if schema.encoding == "ros2idl" else MessageDefinitionFormat.MSG
                    typestores[message.channel_id] = (_typestore([(schema.name, fmt, schema.data)]), schema.name)
                typestore, msgtype = typestores[message.channel_id]
                msg = typestore.deserialize_cdr(_cdr(message.data), msgtype)
                self.count += 1
                yield BagMessage(channel.topic, message.log_time_ns, msg)
        except _READ_ERRORS as error:
            self.stop_reason = f"{type(error).__name__}: {error}"
            return
        self.stop_reason = scanner.stop_reason


def _cdr(raw: bytes | memoryview) -> bytes | memoryview:
    """A message's CDR bytes: decompressed if rosbag2 stored it as a zstd frame (message compression)."""
    return zstd.decompress(raw) if bytes(raw[:4]) == ZSTD_MAGIC else raw


def _typestore(definitions: Iterable[tuple[str, MessageDefinitionFormat, str]]) -> Typestore:
    """A typestore for the bag's own message definitions.

    Bags whose definitions all match ROS 2 Kilted's (the common case) share
    one store; others (other distributions, our own sora_ros messages) get a
    store of their own, cached by definition, so they deserialize without a
    ROS install. Types a bag gives no definition for fall back to Kilted's.
    """
    types: dict[str, Any] = {}
    for msgtype, fmt, text in definitions:
        if not text:
            continue
        if fmt == MessageDefinitionFormat.MSG:
            types.update(get_types_from_msg(text, msgtype))
        elif fmt == MessageDefinitionFormat.IDL:
            separator = "=" * 80 + "\n"
            for block in text.split(separator)[1:] if text.startswith(separator) else [text]:
                types.update(get_types_from_idl(block.split("\n", 1)[1] if block.startswith("IDL: ") else block))
    if all(TYPESTORE.fielddefs.get(name) == fields for name, fields in types.items()):
        return TYPESTORE
    key = repr(sorted(types.items()))
    if key not in _STORES:
        store = get_typestore(Stores.EMPTY)
        store.register(types)
        _STORES[key] = store
    return _STORES[key]


_STORES: dict[str, Typestore] = {}
