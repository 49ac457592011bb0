"""Variable-frame-rate video: every frame keeps its own presentation time, in the video reader,
`bag from-video` and eval's video source, with a note that the timing is irregular."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from vfr_video import write_vfr_mp4  # noqa: E402

from sora_ros import cli  # noqa: E402
from sora_ros.bag.clip_sources import model_clips  # noqa: E402
from sora_ros.bag.reading import BagReader  # noqa: E402
from sora_ros.bag.video import VideoReader  # noqa: E402
from sora_ros.core.units import NS_PER_MS, ros_time_ns  # noqa: E402

DURATIONS = [0.05] * 20 + [0.2] * 10  # frame 20 at 1.000 s, the last (29) at 2.800 s
TRUE_NS = [round(t * 1000) * NS_PER_MS for t in np.concatenate([[0.0], np.cumsum(DURATIONS)[:-1]])]


@pytest.fixture
def vfr(tmp_path: Path) -> Path:
    path = tmp_path / "vfr.mp4"
    write_vfr_mp4(path, DURATIONS)
    return path


def test_reader_stamps_each_frame_by_its_presentation_time(vfr: Path) -> None:
    reader = VideoReader(vfr)
    stamps = [stamp for stamp, _ in reader.stamped_frames()]
    assert stamps == TRUE_NS and stamps[20] == 1000 * NS_PER_MS and stamps[-1] == 2800 * NS_PER_MS
    (note,) = reader.notes
    assert note.startswith("irregular frame timing: intervals 50.0 to 200.0 ms, 9 of 29")


def test_constant_rate_video_has_no_note(tmp_path: Path) -> None:
    path = tmp_path / "cfr.mp4"
    write_vfr_mp4(path, [0.05] * 10)
    reader = VideoReader(path)
    assert [s for s, _ in reader.stamped_frames()] == [k * 50 * NS_PER_MS for k in range(10)] and reader.notes == []


def test_from_video_keeps_the_presentation_times(vfr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bag"
    assert cli.main(["bag", "from-video", str(vfr), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: " in printed and "irregular frame timing" in printed and "stamped by their presentation times" in printed
    messages = list(BagReader(out).messages(["/camera/image_raw"]))
    assert [ros_time_ns(msg.msg.header.stamp) for msg in messages] == TRUE_NS
    assert [msg.log_time_ns for msg in messages] == TRUE_NS
    # --begin/--end cut in video time: [0.9 s, 1.5 s) holds 0.90, 0.95, 1.00, 1.20, 1.40.
    cut = tmp_path / "cut"
    assert cli.main(["bag", "from-video", str(vfr), str(cut), "--begin", "0.9", "--end", "1.5"]) == 0
    assert [m.log_time_ns // NS_PER_MS for m in BagReader(cut).messages(["/camera/image_raw"])] == [900, 950, 1000, 1200, 1400]
    # With --fps the same window holds the same frames (18..22), re-stamped k / 10 s: 1.8 .. 2.2 s;
    # frames 9..14 (k / 10 in [0.9, 1.5), presentation times 0.45 to 0.70 s) were kept before.
    fixed = tmp_path / "fixed"
    assert cli.main(["bag", "from-video", str(vfr), str(fixed), "--fps", "10", "--begin", "0.9", "--end", "1.5"]) == 0
    assert [m.log_time_ns // NS_PER_MS for m in BagReader(fixed).messages(["/camera/image_raw"])] == [1800, 1900, 2000,
                                                                                                    2100, 2200]


def test_eval_video_source_puts_the_true_times_on_the_grid(vfr: Path) -> None:
    notes: list[str] = []
    # dt 0.2 s: 0.0 ... 1.0 from the fast part (every 4th frame), then every frame of the slow part.
    (clip,) = list(model_clips([vfr], None, None, dt=0.2, length=15, size=(48, 64), action_names=(), notes=notes))
    np.testing.assert_array_equal(clip.stamps_ns, np.arange(15) * 200 * NS_PER_MS)
    assert any("irregular frame timing" in note for note in notes)


def test_video_camera_node_publishes_each_frame_at_its_own_time(vfr: Path) -> None:
    """The fast part (50 ms apart) goes out faster than the slow part (200 ms apart), pass after pass."""
    rclpy = pytest.importorskip("rclpy")
    import time

    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from live_helpers import start_node, stop

    process = start_node("sora_ros.nodes.video_camera", "-p", f"video:={vfr}")
    rclpy.init()
    node = rclpy.create_node("vfr_test")
    received: list[tuple[float, int]] = []  # (monotonic s, frame index from its grey level 8 k)
    node.create_subscription(Image, "camera/image_raw", lambda msg: received.append((time.monotonic(), round(msg.data[0] / 8))),
                             qos_profile_sensor_data)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(k == 29 for _, k in received) < 2:  # two slow tails seen
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        stop(process)
    gaps = {"fast": [], "slow": []}  # seconds between consecutive frames k, k + 1 as received
    for (t0, k0), (t1, k1) in zip(received, received[1:]):
        if k1 == k0 + 1:
            gaps["slow" if k0 >= 20 else "fast"].append(t1 - t0)
    assert len(gaps["slow"]) >= 8 and len(gaps["fast"]) >= 10, (gaps, received[:5])
    assert np.median(gaps["slow"]) == pytest.approx(0.2, abs=0.06)
    assert np.median(gaps["fast"]) == pytest.approx(0.05, abs=0.04)
