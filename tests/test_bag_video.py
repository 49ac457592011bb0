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
from sora_ros.bag.reading import BagReader
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


def test_a_window_with_a_set_rate_is_cut_in_the_videos_own_time(video: Path, tmp_path: Path) -> None:
    """At 15 fps, [0.3 s, 0.6 s) holds frames 5..8 (gray 100..160); --fps 5 then stamps frame k at k / 5 s.
    The window was cut on the re-stamped timeline: frames 2..3 (0.4, 0.6 s at 5 fps)."""
    out = tmp_path / "window"
    assert cli.main(["bag", "from-video", str(video), str(out), "--fps", "5", "--begin", "0.3", "--end", "0.6"]) == 0
    messages = list(BagReader(out).messages(["/camera/image_raw"]))
    assert [msg.log_time_ns for msg in messages] == [k * NS_PER_S // 5 for k in range(5, 9)]
    grays = [np.frombuffer(msg.msg.data, np.uint8).mean() for msg in messages]
    np.testing.assert_allclose(grays, [100, 120, 140, 160], atol=3)


def test_unreadable_video_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoError, match="bogus.mp4: OpenCV cannot decode"):
        video_to_bag(bogus, tmp_path / "out")
    assert cli.main(["bag", "from-video", str(tmp_path / "missing.mp4"), str(tmp_path / "o")]) == 1
    assert "no such video file" in capsys.readouterr().err


BAD_FROM_VIDEO_OPTIONS = {
    "fps NaN": (["--fps", "nan"], "argument --fps: must be a finite number"),
    "fps infinite": (["--fps", "inf"], "argument --fps: must be a finite number"),
    "fps tiny": (["--fps", "1e-300"], "argument --fps: must be from 0.001 to 1000"),
    "fps zero": (["--fps", "0"], "argument --fps: must be from 0.001 to 1000"),
    "fps negative": (["--fps", "-5"], "argument --fps: must be from 0.001 to 1000"),
    "fps huge": (["--fps", "1e6"], "argument --fps: must be from 0.001 to 1000"),
    "fps not a number": (["--fps", "fast"], "argument --fps: must be a number"),
    "begin NaN": (["--begin", "nan"], "argument --begin: must be a finite number"),
    "begin negative": (["--begin", "-1"], "argument --begin: must be 0 or more"),
    "end NaN": (["--end", "nan"], "argument --end: must be a finite number"),
    "end infinite": (["--end", "inf"], "argument --end: must be a finite number"),
    "topic with a space": (["--topic", "/bad topic!"], "argument --topic: '/bad topic!' is not a ROS 2 topic name"),
    "topic not fully qualified": (["--topic", "camera/image"], "must be absolute"),
    "topic ending in a slash": (["--topic", "/camera/"], "must not end with a '/'"),
}


@pytest.mark.parametrize("words, message", BAD_FROM_VIDEO_OPTIONS.values(), ids=BAD_FROM_VIDEO_OPTIONS.keys())
def test_from_video_refuses_a_bad_option_before_writing(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        words: list[str], message: str) -> None:
    if "topic" in words[0]:
        pytest.importorskip("rclpy")  # the topic rules are rclpy's; without it the name is taken as given
    with pytest.raises(SystemExit) as stop:
        cli.main(["bag", "from-video", str(video), str(tmp_path / "out"), *words])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"], "nothing written"


def test_bag_record_refuses_a_bad_topic_name_before_it_subscribes(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rclpy")
    with pytest.raises(SystemExit) as stop:
        cli.main(["bag", "record", str(tmp_path / "rec"), "/ok", "not ok"])
    assert stop.value.code == 2 and "argument TOPIC: 'not ok' is not a ROS 2 topic name" in capsys.readouterr().err
    assert not (tmp_path / "rec").exists()


EMPTY_WINDOWS = {  # frames at k / 15 s, k = 0..11 (0 to 0.733 s)
    "after the end": (["--begin", "5"], "no frame lies in the window [5 s, the end)"),
    "between two frames": (["--begin", "0.1", "--end", "0.11"],
                           "the frames nearest it are at 0.0666667 s and 0.133333 s"),
    "end before begin": (["--begin", "0.6", "--end", "0.5"], "--end 0.5 must be after --begin 0.6"),
    "end at begin": (["--begin", "0.2", "--end", "0.2"], "--end 0.2 must be after --begin 0.2"),
    # --fps re-stamps frames 1 ms apart, but the window is cut in the video's own time (0 to 0.733 s).
    "after the end, set rate": (["--fps", "1000", "--begin", "1"],
                                "no frame lies in the window [1 s, the end) of the video's own presentation time"),
}


@pytest.mark.parametrize("words, message", EMPTY_WINDOWS.values(), ids=EMPTY_WINDOWS.keys())
def test_from_video_refuses_a_window_without_frames_and_writes_nothing(video: Path, tmp_path: Path, words: list[str],
                                                                       message: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["bag", "from-video", str(video), str(out), *words]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sora-ros bag from-video: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"], "no bag, no staging folder"
    assert cli.main(["bag", "from-video", str(video), str(out)]) == 0, "a rerun is not blocked"


def test_from_video_failing_midway_leaves_nothing_behind(video: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A video that stops decoding after some frames, or Ctrl-C: no half-written bag at OUT (nor any
    staging folder beside it, nor the parent folders it made), and a rerun writes the bag."""
    real_image, written = m.image, []

    def failing_image(*args, **kwargs):
        written.append(1)
        if len(written) > 3:
            raise VideoError("frame 4 does not decode")
        return real_image(*args, **kwargs)

    monkeypatch.setattr(m, "image", failing_image)
    out = tmp_path / "new" / "folders" / "bag"
    with pytest.raises(VideoError, match="frame 4 does not decode"):
        video_to_bag(video, out)
    written.clear()
    monkeypatch.setattr(m, "image", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        video_to_bag(video, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]
    monkeypatch.setattr(m, "image", real_image)
    assert video_to_bag(video, out) == FRAMES and summarize(out).topics[0].count == FRAMES
    assert sorted(p.name for p in out.parent.iterdir()) == ["bag"]


def test_from_video_library_refuses_non_finite_numbers(video: Path, tmp_path: Path) -> None:
    for kwargs in ({"fps": float("nan")}, {"fps": float("inf")}, {"fps": 1e-300}, {"begin_s": float("nan")},
                   {"end_s": float("inf")}):  # fmt: skip
        with pytest.raises(VideoError, match="fps must be from|must be finite seconds"):
            video_to_bag(video, tmp_path / "out", **kwargs)
        assert not (tmp_path / "out").exists()


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


@pytest.mark.parametrize("data, why", [(b"", "CompressedImage.data is empty"),
                                       (b"\xff\xd8garbage" * 10, "the data is not jpeg")], ids=["empty", "garbage"])
def test_info_on_an_undecodable_compressed_image_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          data: bytes, why: str) -> None:
    """An empty or damaged first CompressedImage is described, not a crash (OpenCV asserted on empty data)."""
    path = tmp_path / "bad"
    with BagWriter(path) as bag:
        for k in range(3):
            msg = m.compressed_image(np.zeros((*SIZE, 3), np.uint8), k * 100_000_000, "cam")
            msg.data = np.frombuffer(data, np.uint8)
            bag.write("/camera/image_raw/compressed", m.COMPRESSED_IMAGE, k * 100_000_000, msg)
    assert cli.main(["bag", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sensor_msgs/msg/CompressedImage  jpeg (first message not decodable: " in out and why in out


def test_info_prints_epoch_stamps_to_the_nanosecond(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Seconds as the integer nanoseconds say, not as a float rounds them (20.700000048 s)."""
    stamp = 1_700_000_020_700_000_000
    with BagWriter(tmp_path / "b") as bag:
        bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(np.zeros((*SIZE, 3), np.uint8), stamp, "cam"))
    assert cli.main(["bag", "info", str(tmp_path / "b")]) == 0
    assert f"end:      1700000020.700000000 s ({stamp} ns)" in capsys.readouterr().out


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
