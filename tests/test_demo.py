"""`sora-ros demo` end to end with a tiny model: sim -> world model -> ~/futures and the planner
over real DDS, launched from launch/demo.launch.yaml, then out/demo/ written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model_helpers import export_tiny, export_tiny_with_risk

from sora_ros.bag.reading import BagReader

pytest.importorskip("rclpy")
pytest.importorskip("pybullet")
DEMO_S = 12


def test_demo_runs_the_graph_and_writes_its_report(tmp_path) -> None:
    model = export_tiny_with_risk(tmp_path / "model")
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "demo", "--duration", str(DEMO_S),
                             "--model", str(model), "--out", str(out), "--launch-arg", "planner_candidates:=12"],
                            capture_output=True, text=True, timeout=DEMO_S + 120)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for node in ("/sim", "/world_model", "/planner"):
        assert f"started {node}" in result.stdout
    assert "[/planner]" in result.stdout and "best of 12" in result.stdout, "the MPC planner never decided"  # --launch-arg
    summary = json.loads((out / "summary.json").read_text())
    assert summary["launch_args"] == {"planner_candidates": "12"}
    assert summary["futures_received"] > 0 and summary["camera_frames_received"] > 0
    assert summary["planner"]["decisions"] > 0 and "planner: " in result.stdout, "no ~/plan arrived"
    assert summary["planner"]["settings"]["candidates"] == 12, "what the planner ran with, --launch-arg included"
    assert "planner: 12 candidates x 8 steps at 1 Hz, risk weight " in result.stdout
    assert summary["node_counts"]["published/futures"] > 0
    assert summary["latency_ms"]["camera_to_futures_dds"]["n"] == summary["futures_received"]
    assert "h1" in summary["psnr_per_horizon"]
    assert (out / "futures.png").stat().st_size > 0 and (out / "latency.png").stat().st_size > 0
    assert "camera -> ~/futures through DDS: p50" in result.stdout
    # The world model's outputs as an MCAP bag for Foxglove, decoded from its own schemas.
    reader = BagReader(out / "outputs")
    for name in ("futures", "latents", "predicted/image", "comparison/image"):
        assert reader.topics[f"/world_model/{name}"].count > 0, name
    futures = next(iter(reader.messages(["/world_model/futures"]))).msg
    assert len(futures.frames) == futures.horizon > 0 and futures.latents


def test_demo_plays_a_video_at_its_own_rate_and_says_so(tmp_path) -> None:
    import cv2
    import numpy as np

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for k in range(60):
        writer.write(np.full((48, 64, 3), 4 * k, np.uint8))
    writer.release()
    model = export_tiny(tmp_path / "model")
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "demo", "--video", str(video), "--duration", "6",
                             "--model", str(model), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "at its own frame times (30 fps on average)" in result.stdout  # the video_camera node's own line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["camera_timing"] == "the video's own frame times (30 fps on average)"
    assert summary["camera_rate_hz"] is None
    assert "at the video's own frame times (30 fps on average)" in result.stdout  # the printed summary


@pytest.mark.parametrize("arg, message", [
    ("planner_speed:=3", "planner_speed not declared"),
    ("model:=/elsewhere", "--launch-arg model: set by the demo's own options"),
    ("plan_rate", "expected NAME:=VALUE"),
    ("plan_rate:=", "expected NAME:=VALUE with both parts"),
])
def test_demo_refuses_a_launch_argument_it_cannot_pass_before_any_node_starts(tmp_path, arg, message) -> None:
    result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "demo", "--duration", "1", "--model",
                             str(export_tiny(tmp_path / "model")), "--out", str(tmp_path / "demo"), "--launch-arg", arg],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "started /" not in result.stdout


def test_demo_refuses_a_launch_argument_given_twice(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "demo", "--duration", "1", "--model",
                             str(export_tiny(tmp_path / "model")), "--out", str(tmp_path / "demo"),
                             "--launch-arg", "planner_candidates:=4", "--launch-arg", "planner_candidates:=8"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "planner_candidates given more than once" in result.stderr, result.stderr[-2000:]


def test_the_summary_names_the_settings_the_running_planner_has() -> None:
    """Asked of the node at its first decision (launch file values, its defaults for the rest), not
    assumed; one line with them."""
    import threading
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from sora_ros.cli.demo import _plan_meter, _planner_line
    from sora_ros.core.mpc import MpcConfig
    from sora_ros.msg import FutureFrames
    from sora_ros.nodes.planner import PlannerNode

    rclpy.init(args=["--ros-args", "-p", "candidates:=12", "-p", "plan_rate:=2.5"])
    planner, probe = PlannerNode(), rclpy.create_node("demo_probe")
    executor = SingleThreadedExecutor()
    executor.add_node(planner)
    executor.add_node(probe)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        plans, settings = _plan_meter(probe)
        deadline = time.monotonic() + 60
        while not settings:
            assert time.monotonic() < deadline, "the planner's settings never came"
            if not plans:
                planner._plan_pub.publish(FutureFrames())  # a decision, as the planner publishes it
            time.sleep(0.1)
    finally:
        executor.shutdown()
        planner.destroy_node()
        probe.destroy_node()
        rclpy.try_shutdown()
    defaults = MpcConfig()
    assert settings == {"candidates": 12, "horizon": defaults.horizon, "plan_rate": 2.5,
                        "risk_weight": defaults.risk_weight}
    ran = {"settings": settings, "decisions": 3, "decisions_per_s": 2.4, "rollout_ms_p50": 80.5}
    assert _planner_line(ran) == (f"  planner: 12 candidates x {defaults.horizon} steps at 2.5 Hz, risk weight "
                                  f"{defaults.risk_weight:g}; 3 decisions (2.4 per s while deciding), its ~/rollout "
                                  "calls p50 80.5 ms")  # fmt: skip
    idle = {"settings": None, "decisions": 0, "decisions_per_s": 0.0, "rollout_ms_p50": None}
    assert _planner_line(idle) == "  planner: settings not read; no decision"
