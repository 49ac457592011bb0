"""Every node executable, as the harness and launch files start it (`python -m sora_ros.nodes.<exec>`):
an integer for a double parameter is taken, and a Ctrl-C while it starts exits 0 without a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy")

from live_helpers import wait_mapped  # noqa: E402

# node module -> (ROS arguments that start it here, a double parameter given as an integer)
NODES = {
    "sora_ros.nodes.planner": ([], "risk_weight:=8"),
    "sora_ros.nodes.sim": ([], "world_size:=9"),
    "sora_ros.nodes.world_model": (["-p", "autostart:=false"], "rollout_rate:=5"),
}


def _run(module: str, ros_args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)  # fmt: skip


@pytest.mark.parametrize("module", NODES)
def test_an_integer_for_a_double_parameter_starts_the_node(module):
    ros_args, integer = NODES[module]
    process = _run(module, [*ros_args, "-p", integer])
    time.sleep(3.0)  # refused: it exits within a second with "expecting type 'DOUBLE'"
    alive = process.poll() is None
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert alive and "expecting type" not in output, output
    assert process.returncode == 0, output


@pytest.mark.parametrize("library", ["numpy", "librcl"])  # mid-import; rclpy starting, the node being built
@pytest.mark.parametrize("module", NODES)
def test_ctrl_c_while_the_node_starts_exits_0_without_a_traceback(module, library):
    process = _run(module, NODES[module][0])
    wait_mapped(process, library)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, (process.returncode, output)
    assert "Traceback" not in output and "Exception ignored" not in output, output
