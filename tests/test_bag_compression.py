"""Compressed bags (`ros2 bag record --compression-mode message|file --compression-format zstd`),
MCAP and sqlite3, written by rosbags as rosbag2 writes them: every tool reads the frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from sora_ros import cli
from sora_ros.bag import messages as m
from sora_ros.bag.clips import ClipReader
from sora_ros.bag.info import summarize
from sora_ros.bag.reading import BagError, BagReader
from sora_ros.core.units import NS_PER_MS

IMAGE = "/camera/image_raw"
FRAMES = 20  # 64x64 rgb8 at 10 Hz, frame k filled with 10 k
PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def write_compressed(path: Path, mode: CompressionMode, plugin: str) -> Path:
    writer = Writer(path, version=9, storage_plugin=PLUGINS[plugin])
    writer.set_compression(mode, CompressionFormat.ZSTD)
    with writer:
        connection = writer.add_connection(IMAGE, m.IMAGE, typestore=m.TYPESTORE)
        for k in range(FRAMES):
            stamp = k * 100 * NS_PER_MS
            image = m.image(np.full((64, 64, 3), 10 * k, np.uint8), stamp, "cam")
            writer.write(connection, stamp, m.TYPESTORE.serialize_cdr(image, m.IMAGE))
    return path


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
@pytest.mark.parametrize("mode", [CompressionMode.MESSAGE, CompressionMode.FILE], ids=["message", "file"])
def test_compressed_bags_read_in_info_and_clips(tmp_path: Path, mode: CompressionMode, plugin: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_compressed(tmp_path / "bag", mode, plugin)
    summary = summarize(bag)
    assert summary.stop_reason is None
    assert [(t.topic, t.count) for t in summary.topics] == [(IMAGE, FRAMES)]
    assert summary.topics[0].rate_hz == pytest.approx(10.0)
    assert summary.compression == f"zstd per {mode.name.lower()}"
    assert cli.main(["bag", "info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert f"compression: zstd per {mode.name.lower()}" in out and "WARNING" not in out
    clips = list(ClipReader(bag, IMAGE, dt_ns=100 * NS_PER_MS, clip_length=FRAMES, size=(64, 64)))
    assert len(clips) == 1
    assert [int(f[0, 0, 0]) for f in clips[0].frames] == [10 * k for k in range(FRAMES)]


def test_message_compressed_file_without_metadata_still_reads(tmp_path: Path) -> None:
    bag = write_compressed(tmp_path / "bag", CompressionMode.MESSAGE, "mcap")
    (bag / "metadata.yaml").unlink()
    assert summarize(bag / "bag.mcap").topics[0].count == FRAMES


def test_unsupported_compression_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_compressed(tmp_path / "bag", CompressionMode.MESSAGE, "mcap")
    metadata = bag / "metadata.yaml"
    info = yaml.safe_load(metadata.read_text())
    info["rosbag2_bagfile_information"]["compression_format"] = "lz4"
    metadata.write_text(yaml.safe_dump(info))
    with pytest.raises(BagError, match=r"metadata.yaml: compression format 'lz4' in message mode is not supported"):
        BagReader(bag)
    assert cli.main(["bag", "info", str(bag)]) == 1
    assert "'lz4'" in capsys.readouterr().err


def test_truncated_file_compressed_bag_says_where_it_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_compressed(tmp_path / "bag", CompressionMode.FILE, "mcap")
    compressed = bag / "bag.mcap.zstd"
    compressed.write_bytes(compressed.read_bytes()[: compressed.stat().st_size * 2 // 3])
    assert cli.main(["bag", "info", str(bag)]) == 1  # its one chunk is cut: nothing readable, and it says why
    out = capsys.readouterr().out
    assert "WARNING: damaged bag, read up to: bag.mcap.zstd: does not decompress to its end" in out
