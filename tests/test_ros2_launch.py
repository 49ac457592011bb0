"""The launch files and the node under the real ROS 2 tools (`ros2 launch`, `ros2 param`,
`ros2 lifecycle`, from ../shared/ros2-tools, installed by `make ros2-tools`), against the ROS
layout `make setup` installs into the venv; and where `sora-ros launch` differs from them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from live_helpers import Probe, stop  # noqa: E402
from sora_ros.harness import processes  # noqa: E402

VENV = Path(sys.prefix)
ROS2 = VENV / "bin" / "ros2"
pytestmark = pytest.mark.skipif(not ROS2.exists(), reason=f"{ROS2} missing: run `make ros2-tools`")
IMAGE = "/ros2_launch_test/image"
SIZE = (64, 64)  # the default model's input


def ros2_environment() -> dict[str, str]:
    """The venv as the only ament prefix, as the ros2-tools README says (the wheels' start-up
    hook has already put the venv's libraries on this process's LD_LIBRARY_PATH)."""
    return {**os.environ, "AMENT_PREFIX_PATH": str(VENV), "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def ros2(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROS2), *args], env=ros2_environment(), capture_output=True, text=True,
                          timeout=timeout_s)


def ros2_on_node(*args: str, attempts: int = 10) -> subprocess.CompletedProcess:
    """A `ros2 param/lifecycle` verb on a node known to be running: the daemon's graph may not list
    it yet on a busy machine ("Node not found"), so ask again, a second apart."""
    for _ in range(attempts):
        result = ros2(*args)
        if "Node not found" not in result.stderr + result.stdout:
            return result
        time.sleep(1.0)
    return result


@pytest.fixture(scope="module")
def ros() -> Iterator[None]:
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def daemon() -> Iterator[None]:
    """The ros2 daemon: `ros2 param/lifecycle` find the node reliably on a busy machine."""
    ros2("daemon", "start")
    yield
    ros2("daemon", "stop")


def test_show_args_lists_both_launch_files_arguments() -> None:
    for launch_file, expected in (("world_model.launch.yaml", ("image", "use_sim_time", "image_reliability")),
                                  ("demo.launch.yaml", ("use_video", "use_sim_time"))):
        result = ros2("launch", "--show-args", "sora_ros", launch_file)
        assert result.returncode == 0, result.stderr
        for name in expected:
            assert f"'{name}':" in result.stdout, result.stdout


def test_installed_executables_are_the_nodes() -> None:
    result = ros2("pkg", "executables", "sora_ros")
    assert result.returncode == 0, result.stderr
    assert {"sora_ros world_model", "sora_ros sim", "sora_ros planner"} <= set(result.stdout.splitlines())


def test_world_model_launch_under_ros2_launch(ros, daemon) -> None:
    """ros2 launch sora_ros world_model.launch.yaml: futures for a camera, use_sim_time reaches
    the node, its parameters and lifecycle state answer the ros2 CLI."""
    launch = processes.start([str(ROS2), "launch", "sora_ros", "world_model.launch.yaml", f"image:={IMAGE}",
                              "use_sim_time:=true", "horizon:=2"], env=ros2_environment(),
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    probe = Probe("world_model", IMAGE, SIZE)
    try:
        for n in range(8):  # K=4 context frames, 0.1 s apart, then futures
            probe.send(100.0 + 0.1 * n)
        probe.wait_for(lambda: len(probe.futures) > 0, "futures from the node ros2 launch started")
        assert len(probe.futures[-1].frames) == 2, "horizon:=2 reached the node"
        described = ros2_on_node("param", "describe", "/world_model", "horizon")
        assert described.returncode == 0 and "predicted frames per live rollout" in described.stdout, described
        assert "True" in ros2_on_node("param", "get", "/world_model", "use_sim_time").stdout, \
            "use_sim_time:=true ignored"
        state = ros2_on_node("lifecycle", "get", "/world_model")
        assert state.stdout.startswith("active"), state
    finally:
        probe.close()
        output = stop(launch)
    assert "Traceback" not in output and "process has finished cleanly" in output, output


def test_demo_launch_runs_under_ros2_launch() -> None:
    """demo.launch.yaml for a few seconds: every node starts and none dies."""
    launch = processes.start([str(ROS2), "launch", "sora_ros", "demo.launch.yaml"], env=ros2_environment(),
                             stdout=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            launch.wait(timeout=8)
    finally:
        output = stop(launch)
    assert "Traceback" not in output and "process has died" not in output, output
    for node in ("sim", "world_model", "planner"):
        assert f"[{node}-" in output, f"{node} did not start:\n{output}"


def test_where_sora_ros_launch_differs_from_ros2_launch() -> None:
    """ros2 launch accepts an argument no file declares (and ignores it); sora-ros launch refuses
    it as a likely typo. Both accept use_sim_time."""
    typo = ros2("launch", "--print", "sora_ros", "world_model.launch.yaml", "use_sim_tim:=true")
    assert typo.returncode == 0, typo.stderr
    ours = subprocess.run([sys.executable, "-m", "sora_ros.cli", "launch", "launch/world_model.launch.yaml",
                           "use_sim_tim:=true", "--print"], capture_output=True, text=True, env=ros2_environment(),
                          cwd=Path(__file__).parents[1])  # fmt: skip
    assert ours.returncode == 2 and "use_sim_tim not declared" in ours.stderr, ours
    sim_time = subprocess.run([sys.executable, "-m", "sora_ros.cli", "launch", "launch/world_model.launch.yaml",
                               "use_sim_time:=true", "--print"], capture_output=True, text=True,
                              env=ros2_environment(), cwd=Path(__file__).parents[1])  # fmt: skip
    assert sim_time.returncode == 0 and "-p use_sim_time:=true" in sim_time.stdout, sim_time
