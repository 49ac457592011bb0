"""The clip reader on hand-made bags: stamps, actions and damage are known exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from sora_ros.bag import messages as m
from sora_ros.bag.clips import (
    BEFORE_FIRST_ACTION,
    GAP,
    NON_FINITE_ACTION,
    RESOLUTION_CHANGE,
    UNDECODABLE_IMAGE,
    ClipError,
    ClipReader,
)
from sora_ros.bag.reading import TopicNotFoundError
from sora_ros.bag.writing import BagWriter
from sora_ros.core.units import NS_PER_MS

MS = NS_PER_MS
IMAGE, CMD = "/camera/image_raw", "/cmd_vel"


def frame(index: int, size: tuple[int, int] = (8, 12)) -> np.ndarray:
    """uint8 (H, W, 3) whose every pixel encodes `index` (survives resizing a flat image)."""
    return np.full((*size, 3), (index * 7) % 256, np.uint8)


def write_bag(path: Path, frames_ms: list[int], twists: list[tuple[int, float, float]] = (), *, compressed: bool = False,
              stamped: bool = False) -> Path:
    """Frames at the given stamps (ms) and twists (log/header time ms, v, w)."""
    with BagWriter(path) as bag:
        events = [(t, "frame", i) for i, t in enumerate(frames_ms)] + [(t, "twist", (v, w)) for t, v, w in twists]
        for t, kind, payload in sorted(events, key=lambda e: e[0]):
            stamp = t * MS
            if kind == "frame" and compressed:
                bag.write(IMAGE, m.COMPRESSED_IMAGE, stamp, m.compressed_image(frame(payload), stamp, "cam", "png"))
            elif kind == "frame":
                bag.write(IMAGE, m.IMAGE, stamp, m.image(frame(payload), stamp, "cam"))
            elif stamped:
                # Header stamp = t, but logged 30 ms late: alignment must use the header.
                msg = m.TYPESTORE.types[m.TWIST_STAMPED](header=m.header(stamp, "base_link"), twist=m.twist(*payload))
                bag.write(CMD, m.TWIST_STAMPED, stamp + 30 * MS, msg)
            else:
                bag.write(CMD, m.TWIST, stamp, m.twist(*payload))
    return path


def index_of(clip_frames: np.ndarray) -> list[int]:
    return [int(f[0, 0, 0]) // 7 for f in clip_frames]


def test_image_bag_clips_with_zero_order_hold_actions(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "b", [100 * k for k in range(10)], [(0, 0.5, 0.0), (250, 0.2, -1.0), (700, 0.0, 1.5)])
    reader = ClipReader(bag, IMAGE, CMD, dt_ns=100 * MS, clip_length=5, size=(4, 6))
    clips = list(reader)
    assert len(clips) == 2 and reader.report.clips == 2
    assert clips[0].frames.shape == (5, 4, 6, 3) and clips[0].frames.dtype == np.uint8
    assert index_of(clips[0].frames) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(clips[0].stamps_ns, np.arange(5) * 100 * MS)
    # Frames at 0..200 ms hold the 0 ms command; 300, 400 hold the 250 ms one.
    np.testing.assert_allclose(clips[0].actions, [[0.5, 0], [0.5, 0], [0.5, 0], [0.2, -1], [0.2, -1]])
    np.testing.assert_allclose(clips[1].actions[:, 1], [-1, -1, 1.5, 1.5, 1.5])
    assert clips[1].actions.dtype == np.float32 and clips[1].source == str(bag)


def test_compressed_bag_with_twist_stamped_uses_header_stamps(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "c", [100 * k for k in range(4)], [(0, 1.0, 0.0), (200, 2.0, 0.0)], compressed=True, stamped=True)
    clip = next(iter(ClipReader(bag, IMAGE, CMD, dt_ns=100 * MS, clip_length=4, size=(8, 12))))
    assert index_of(clip.frames) == [0, 1, 2, 3]  # PNG is lossless
    # Logged at 230 ms, stamped 200 ms: the frame at 200 ms already holds it.
    np.testing.assert_allclose(clip.actions[:, 0], [1, 1, 2, 2])


def test_without_action_topic_actions_are_empty(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "n", [100 * k for k in range(3)])
    clip = next(iter(ClipReader(bag, IMAGE, dt_ns=100 * MS, clip_length=3, size=(8, 12))))
    assert clip.actions.shape == (3, 0)


def test_resamples_30hz_to_10hz_and_breaks_clips_at_gaps(tmp_path: Path) -> None:
    stamps = [round(1000 * k / 30) for k in range(30)]  # 1 s at 30 Hz
    stamps += [2000 + s for s in stamps]  # a 1 s hole, then 1 s more
    bag = write_bag(tmp_path / "r", stamps)
    reader = ClipReader(bag, IMAGE, dt_ns=100 * MS, clip_length=10, size=(8, 12), stride=1)
    clips = list(reader)
    assert index_of(clips[0].frames) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert all(np.all(np.diff(c.stamps_ns) < 110 * MS) for c in clips)  # no clip spans the hole
    assert reader.report.skipped[GAP] == 1
    # Each side keeps 11 frames (frame 29 at 967 ms is the nearest to 1000 ms): 2 clips each side.
    assert [c.stamps_ns[0] // MS for c in clips] == [0, 100, 2000, 2100]


def test_non_finite_twists_are_dropped_and_counted(tmp_path: Path) -> None:
    twists = [(0, 0.1, 0.0), (150, math.nan, 0.0), (250, 0.3, math.inf), (350, 0.4, 0.0)]
    bag = write_bag(tmp_path / "nan", [100 * k for k in range(5)], twists)
    reader = ClipReader(bag, IMAGE, CMD, dt_ns=100 * MS, clip_length=5, size=(8, 12))
    clip = next(iter(reader))
    np.testing.assert_allclose(clip.actions[:, 0], [0.1, 0.1, 0.1, 0.1, 0.4])
    assert reader.report.skipped[NON_FINITE_ACTION] == 2


def test_frames_before_the_first_action_are_not_in_clips(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "late", [100 * k for k in range(6)], [(200, 0.1, 0.0)])
    reader = ClipReader(bag, IMAGE, CMD, dt_ns=100 * MS, clip_length=4, size=(8, 12))
    assert [index_of(c.frames) for c in reader] == [[2, 3, 4, 5]]
    assert reader.report.skipped[BEFORE_FIRST_ACTION] == 2


def test_missing_topic_names_the_topics_the_bag_has(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "t", [0, 100])
    with pytest.raises(TopicNotFoundError, match=r"no topic '/camera/other'.*/camera/image_raw \(sensor_msgs/msg/Image, 2\)"):
        list(ClipReader(bag, "/camera/other", dt_ns=100 * MS, clip_length=2, size=(8, 12)))


def test_clip_longer_than_the_bag_says_so(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "short", [100 * k for k in range(5)])
    with pytest.raises(ClipError, match="longest continuous run is 5 frames .* a clip needs 8"):
        list(ClipReader(bag, IMAGE, dt_ns=100 * MS, clip_length=8, size=(8, 12)))


def test_undecodable_image_is_counted_and_breaks_the_clip(tmp_path: Path) -> None:
    path = tmp_path / "corrupt"
    with BagWriter(path) as bag:
        for k in range(6):
            msg = m.compressed_image(frame(k), k * 100 * MS, "cam", "png")
            if k == 2:
                msg.data = np.frombuffer(b"not an image at all", np.uint8)
            bag.write(IMAGE, m.COMPRESSED_IMAGE, k * 100 * MS, msg)
    reader = ClipReader(path, IMAGE, dt_ns=100 * MS, clip_length=3, size=(8, 12))
    assert [index_of(c.frames) for c in reader] == [[3, 4, 5]]
    assert reader.report.skipped[UNDECODABLE_IMAGE] == 1


@pytest.mark.parametrize("size", [None, (8, 12)])
def test_a_resolution_change_restarts_the_clip_and_is_counted(tmp_path: Path, size) -> None:
    """A camera that switches from 12x8 to 16x8 mid-bag: no clip mixes the two, at the camera's
    resolution or fitted to one size; each clip knows its camera's shape."""
    path = tmp_path / "switch"
    with BagWriter(path) as bag:
        for k in range(8):
            shape = (8, 12) if k < 4 else (8, 16)
            bag.write(IMAGE, m.IMAGE, k * 100 * MS, m.image(frame(k, shape), k * 100 * MS, "cam"))
    reader = ClipReader(path, IMAGE, dt_ns=100 * MS, clip_length=3, size=size)
    clips = list(reader)
    assert [index_of(c.frames) for c in clips] == [[0, 1, 2], [4, 5, 6]]  # frame 3 alone: no clip
    assert [c.camera_shape for c in clips] == [(8, 12), (8, 16)]
    assert reader.report.skipped[RESOLUTION_CHANGE] == 1
    assert "12x8 -> 16x8" in reader.report.summary()


def test_truncated_bag_yields_what_is_readable_and_reports_where_it_stopped(tmp_path: Path) -> None:
    # 64x64 rgb8 frames are 12 KiB; rosbags closes an MCAP chunk every 1 MiB, so 300 frames make 3+ chunks.
    path = tmp_path / "cut"
    with BagWriter(path) as bag:
        for k in range(300):
            bag.write(IMAGE, m.IMAGE, k * 100 * MS, m.image(frame(k, (64, 64)), k * 100 * MS, "cam"))
    mcap = path / "cut.mcap"
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.6)])
    reader = ClipReader(path, IMAGE, dt_ns=100 * MS, clip_length=10, size=(8, 8))
    clips = list(reader)
    assert 50 <= len(clips) * 10 <= 180  # the intact chunks, not the whole bag
    assert index_of(clips[0].frames)[0] == 0
    assert len(reader.report.stopped) == 1 and "cut.mcap: byte " in reader.report.stopped[0]


def test_reads_sqlite3_bags_and_folders_of_bags(tmp_path: Path) -> None:
    db_bag = tmp_path / "runs" / "sqlite"
    db_bag.parent.mkdir()
    with Writer(db_bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection(IMAGE, m.IMAGE, typestore=m.TYPESTORE)
        for k in range(3):
            writer.write(conn, k * 100 * MS, m.TYPESTORE.serialize_cdr(m.image(frame(k), k * 100 * MS, "cam"), m.IMAGE))
    write_bag(tmp_path / "runs" / "mcap", [100 * k for k in range(3)])
    clips = list(ClipReader(tmp_path / "runs", IMAGE, dt_ns=100 * MS, clip_length=3, size=(8, 12)))
    assert sorted(Path(c.source).name for c in clips) == ["mcap", "sqlite"]
    assert all(index_of(c.frames) == [0, 1, 2] for c in clips)


def test_a_bag_cut_short_before_its_first_image_is_a_counted_drop_among_good_ones(tmp_path: Path) -> None:
    """A recording cut short within its first chunk holds no readable message: in a folder of good
    bags it is noted where it stopped, as later damage is, instead of failing the whole read."""
    write_bag(tmp_path / "runs" / "good", [100 * k for k in range(6)])
    cut = tmp_path / "runs" / "cut"
    write_bag(cut, [100 * k for k in range(6)])
    mcap = cut / "cut.mcap"
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    reader = ClipReader(tmp_path / "runs", IMAGE, dt_ns=100 * MS, clip_length=3, size=(8, 12))
    clips = list(reader)
    assert [Path(c.source).name for c in clips] == ["good", "good"]
    assert reader.report.sources == 2 and len(reader.report.stopped) == 1
    assert reader.report.stopped[0].startswith(f"{cut}: cut.mcap: byte ")
    assert reader.report.stopped[0].endswith(f"before any message on {IMAGE}")
    with pytest.raises(ClipError, match="not one image was readable in 1 source.*cut.mcap: byte "):
        list(ClipReader(cut, IMAGE, dt_ns=100 * MS, clip_length=3, size=(8, 12)))


def test_a_bag_that_lacks_the_topic_undamaged_is_still_an_error(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "b", [100 * k for k in range(6)])
    with pytest.raises(TopicNotFoundError, match="no topic '/front/image'"):
        list(ClipReader(bag, "/front/image", dt_ns=100 * MS, clip_length=3, size=(8, 12)))
