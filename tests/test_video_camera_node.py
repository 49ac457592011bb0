"""The video_camera node and `sora-ros video-camera` on bad input (a missing or undecodable video: one
line, the path, what is wrong, what to do), integer values for its double parameters (and any node's,
through IntegersForDoubles, on a real rclpy node with real overrides), and Ctrl-C while it starts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor  # noqa: E402
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from sora_ros import cli  # noqa: E402
from sora_ros.core.parameters import as_declared_type  # noqa: E402
from sora_ros.nodes import video_camera  # noqa: E402
from sora_ros.nodes.parameters import IntegersForDoubles  # noqa: E402
from live_helpers import wait_mapped  # noqa: E402

NODE = "sora_ros.nodes.video_camera"
GIVE = "give the path of a video file OpenCV can decode (mp4, avi, mkv, ...), e.g. "
START_TIMEOUT_S = 60.0  # a shared 2-core machine; the waits end as soon as the line comes
# After the "playing" line, until the node surely spins: `spin` makes its executor after the node, and a
# KeyboardInterrupt inside that constructor (a millisecond) still prints rclpy's "Exception ignored".
PLAYING_S = 0.5


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A small MJPEG AVI written with OpenCV (12 flat gray frames at 15 fps)."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (32, 24))
    for k in range(12):
        writer.write(np.full((24, 32, 3), 20 * k, np.uint8))
    writer.release()
    return path


def _node(*ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", NODE, "--ros-args", *ros_args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)  # fmt: skip


def _output(process: subprocess.Popen) -> str:
    """All the process's output once it has exited; killed (and the test failed) if it has not within a minute."""
    try:
        return process.communicate(timeout=START_TIMEOUT_S)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running a minute after SIGINT: {process.communicate()[0]}")


def _wait_for_line(process: subprocess.Popen, words: str) -> list[str]:
    """The process's lines up to the first with `words` (fails if it exits or the time runs out first)."""
    lines, deadline = [], time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if words in line:
            return lines
    process.kill()
    pytest.fail(f"no line with {words!r}: {''.join(lines)}{process.stdout.read()}")


# --- a missing or undecodable video ---------------------------------------------------------------


def test_video_file_problem_names_the_path_what_is_wrong_and_what_to_do(tmp_path, monkeypatch):
    missing, folder, dangling = tmp_path / "nope.mp4", tmp_path / "videos", tmp_path / "link.mp4"
    folder.mkdir()
    dangling.symlink_to(tmp_path / "gone.mp4")
    example = "--ros-args -p video:=clip.mp4"
    assert video_camera.video_file_problem("") == f"no video given (the video parameter is empty); {GIVE}{example}"
    assert video_camera.video_file_problem(missing) == (f"{missing}: video file not found (no such file); check the "
                                                        f"path, or {GIVE}{example}")  # fmt: skip
    assert video_camera.video_file_problem(folder) == f"{folder}: a directory, not a video file; {GIVE}{example}"
    assert "video file not found (a link to nothing)" in video_camera.video_file_problem(dangling)
    unreadable = tmp_path / "locked.mp4"
    unreadable.write_bytes(b"x")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_camera, "open", refused, raising=False)  # root reads any file: refuse it here
    assert video_camera.video_file_problem(unreadable) == (f"{unreadable}: cannot read it (Permission denied); make it "
                                                           f"readable, or {GIVE}{example}")  # fmt: skip


def test_the_command_refuses_a_missing_video_in_one_line_before_ros_starts(tmp_path, capsys):
    missing = tmp_path / "nope.mp4"
    assert cli.main(["video-camera", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"sora-ros video-camera: {missing}: video file not found (no such file); check the path, "
                            f"or {GIVE}sora-ros video-camera clip.mp4\n")  # fmt: skip
    assert not captured.out


@pytest.mark.parametrize("kind", ["undecodable", "no video given"])
def test_the_node_refuses_a_video_it_cannot_play_in_one_line(tmp_path, kind):
    bogus = tmp_path / "bogus.avi"
    bogus.write_bytes(b"not a video")
    run = subprocess.run([sys.executable, "-m", NODE, *(["--ros-args", "-p", f"video:={bogus}"]
                                                        if kind == "undecodable" else [])],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout, run.stderr
    if kind == "undecodable":
        assert f"{bogus}: OpenCV cannot decode a frame of it" in run.stderr
        assert f"check that it plays (`ffprobe {bogus}`)" in run.stderr and GIVE in run.stderr
    else:
        assert f"no video given (the video parameter is empty); {GIVE}--ros-args -p video:=clip.mp4" in run.stderr


# --- integers for double parameters ----------------------------------------------------------------


def test_as_declared_type_makes_an_integer_a_float_for_a_float_parameter_only():
    assert as_declared_type(1.0, 8) == 8.0 and isinstance(as_declared_type(1.0, 8), float)
    assert as_declared_type(1, 8) == 8 and isinstance(as_declared_type(1, 8), int)
    assert as_declared_type(1.0, True) is True, "a bool is no number here: ROS refuses it"
    assert as_declared_type(1.0, "8") == "8" and as_declared_type(None, 8) == 8


class _Gains(IntegersForDoubles, Node):
    """A node declaring a double in a range, an int and a string, as the project's nodes do."""

    def __init__(self, context) -> None:
        super().__init__("gains", context=context)
        self.declare_parameter("weight", 1.0, ParameterDescriptor(
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=100.0, step=0.0)]))
        self.declare_parameter("count", 2)
        self.declare_parameter("name", "a")


def _with_node(overrides: list[str], check) -> None:
    """Run `check(node)` on a _Gains node built with `-p` `overrides` (parsed by rcl, as on a command line)."""
    context = rclpy.Context()
    rclpy.init(args=["gains", "--ros-args", *[word for o in overrides for word in ("-p", o)]], context=context)
    try:
        check(context)
    finally:
        rclpy.shutdown(context=context)


def test_an_integer_override_of_a_double_parameter_is_that_double_in_a_real_node():
    def check(context) -> None:
        node = _Gains(context)
        try:
            weight, count = node.get_parameter("weight"), node.get_parameter("count")
            assert weight.type_ == Parameter.Type.DOUBLE and weight.value == 8.0
            assert count.type_ == Parameter.Type.INTEGER and count.value == 3, "an int stays an int"
            # Set at run time (`ros2 param set /gains weight 5` sends an INTEGER), and refused as before.
            assert node.set_parameters([Parameter("weight", value=5)])[0].successful
            assert node.get_parameter("weight").value == 5.0 and node.get_parameter("weight").type_ == Parameter.Type.DOUBLE
            out_of_range = node.set_parameters([Parameter("weight", value=500)])[0]
            assert not out_of_range.successful and "out of range" in out_of_range.reason
            wrong = node.set_parameters([Parameter("weight", value="heavy")])[0]
            assert not wrong.successful and "Wrong parameter type" in wrong.reason
            assert not node.set_parameters([Parameter("name", value=3)])[0].successful, "no int for a string"
        finally:
            node.destroy_node()

    _with_node(["weight:=8", "count:=3"], check)


@pytest.mark.parametrize("value, refusal", [("heavy", InvalidParameterTypeException),
                                            ("true", InvalidParameterTypeException),
                                            ("500", InvalidParameterValueException)])
def test_a_string_bool_or_out_of_range_integer_for_a_double_is_still_refused(value, refusal):
    def check(context) -> None:
        with pytest.raises(refusal) as raised:
            _Gains(context)
        assert "weight" in str(raised.value)

    _with_node([f"weight:={value}"], check)


def test_the_video_camera_node_takes_an_integer_rate(video):
    process = _node("-p", f"video:={video}", "-p", "rate:=8")
    try:
        lines = _wait_for_line(process, "playing")
        assert "at 8 Hz (rate)" in lines[-1], lines
        time.sleep(PLAYING_S)
    finally:
        process.send_signal(signal.SIGINT)
        output = _output(process)
    assert process.returncode == 0 and "Traceback" not in output, output


# --- Ctrl-C while starting -------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["numpy", "librcl", "onnxruntime_pybind11"])
def test_ctrl_c_while_the_node_imports_or_starts_exits_0_without_a_traceback(video, library):
    """Mid-import (numpy, rclpy and onnxruntime's libraries just loaded; their imports take seconds on a
    loaded machine) or while rclpy starts and the node is built. Every time: exit 0, as when it is
    stopped while running, and no traceback."""
    process = _node("-p", f"video:={video}")
    wait_mapped(process, library)
    process.send_signal(signal.SIGINT)
    output = _output(process)
    assert process.returncode == 0, (process.returncode, output)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output


def test_ctrl_c_while_the_node_plays_exits_0(video):
    process = _node("-p", f"video:={video}")
    try:
        _wait_for_line(process, "playing")  # the node's constructor's last line
        time.sleep(PLAYING_S)
    finally:
        process.send_signal(signal.SIGINT)
        output = _output(process)
    assert process.returncode == 0 and "Traceback" not in output, output
