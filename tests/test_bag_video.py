"""Video to bag, bag info, damaged bags, and the video camera node over real DDS."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sora_ros import cli
from sora_ros.bag import messages as m
from sora_ros.bag.clips import ClipReader
from sora_ros.bag.from_video import video_to_bag
from sora_ros.bag.info import summarize
from sora_ros.bag.video import VideoError
from sora_ros.bag.writing import BagWriter
from sora_ros.core.units import NS_PER_S, ros_time_ns

FRAMES, FPS, SIZE = 12, 15, (48, 64)  # (H, W)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A small MJPEG AVI written with OpenCV: frame k is flat gray level 20 k."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (SIZE[1], SIZE[0]))
    for k in range(FRAMES):
        writer.write(np.full((*SIZE, 3), 20 * k, np.uint8))
    writer.release()
    return path


def test_from_video_then_info_round_trip(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bag"
    assert cli.main(["bag", "from-video", str(video), str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["bag", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"/camera/image_raw  {FRAMES:7d} msgs     {FPS:.2f} Hz  sensor_msgs/msg/Image" in text
    assert text.splitlines()[-1].endswith(f"sensor_msgs/msg/Image  {SIZE[1]}x{SIZE[0]} rgb8"), "size and encoding"
    summary = summarize(out)
    assert summary.duration_ns == round((FRAMES - 1) * NS_PER_S / FPS)
    clip = next(iter(ClipReader(out, "/camera/image_raw", dt_ns=round(NS_PER_S / FPS), clip_length=FRAMES, size=SIZE)))
    np.testing.assert_allclose(clip.frames.reshape(FRAMES, -1).mean(axis=1), 20 * np.arange(FRAMES), atol=3)


def test_from_video_compressed_at_a_set_rate(video: Path, tmp_path: Path) -> None:
    count = video_to_bag(video, tmp_path / "c", fps=5.0, compressed=True)
    (topic,) = summarize(tmp_path / "c").topics
    assert (count, topic.topic, topic.msgtype, topic.count) == (FRAMES, "/camera/image_raw/compressed", m.COMPRESSED_IMAGE, FRAMES)
    assert topic.rate_hz == pytest.approx(5.0)
    assert topic.images == (f"{SIZE[1]}x{SIZE[0]} jpeg (first message)",)


def test_from_video_keeps_a_time_window(video: Path, tmp_path: Path) -> None:
    """--begin/--end cut a held-out part; stamps stay in video time."""
    out = tmp_path / "window"
    assert cli.main(["bag", "from-video", str(video), str(out), "--begin", "0.3", "--end", "0.6"]) == 0
    (topic,) = summarize(out).topics
    assert topic.count == 4  # frames 5..8 at 15 fps: 0.333 s .. 0.533 s (0.6 s excluded)
    assert summarize(out).first_ns == round(5 * NS_PER_S / FPS)


def test_unreadable_video_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoError, match="bogus.mp4: OpenCV cannot decode"):
        video_to_bag(bogus, tmp_path / "out")
    assert cli.main(["bag", "from-video", str(tmp_path / "missing.mp4"), str(tmp_path / "o")]) == 1
    assert "no such video file" in capsys.readouterr().err


def test_info_on_a_truncated_bag_reports_where_it_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cut"
    with BagWriter(path) as bag:
        for k in range(200):
            bag.write("/camera/image_raw", m.IMAGE, k * 10**8, m.image(np.zeros((64, 64, 3), np.uint8), k * 10**8, "cam"))
    (path / "metadata.yaml").unlink()  # as after a crash: neither metadata nor a footer
    mcap = path / "cut.mcap"
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    assert cli.main(["bag", "info", str(path)]) == 1
    text = capsys.readouterr().out
    assert "WARNING: damaged bag, read up to: cut.mcap: byte" in text
    count = summarize(path).topics[0].count
    assert 0 < count < 200


def test_video_camera_node_loops_with_stamps_that_never_go_back(video: Path) -> None:
    rclpy = pytest.importorskip("rclpy")
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from live_helpers import start_node, stop

    # The harness's one way (its own process group), which `stop` needs.
    process = start_node("sora_ros.nodes.video_camera", "-p", f"video:={video}", "-p", "rate:=60.0")
    rclpy.init()
    node = rclpy.create_node("video_camera_test")
    stamps: list[int] = []
    done = threading.Event()

    def on_image(msg: Image) -> None:
        stamps.append(ros_time_ns(msg.header.stamp))
        assert (msg.height, msg.width) == SIZE
        if len(stamps) >= 3 * FRAMES:  # three passes over the video: at least two loops seen
            done.set()

    node.create_subscription(Image, "camera/image_raw", on_image, qos_profile_sensor_data)
    try:
        deadline = time.monotonic() + 40
        while not done.is_set() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert done.is_set(), f"got {len(stamps)} images, wanted {3 * FRAMES}"
        assert np.all(np.diff(stamps) > 0)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        stop(process)


def test_video_camera_node_refuses_an_unreadable_video(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.avi"
    bogus.write_bytes(b"nope")
    result = subprocess.run(
        [sys.executable, "-m", "sora_ros.nodes.video_camera", "--ros-args", "-p", f"video:={bogus}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "OpenCV cannot decode" in result.stderr
