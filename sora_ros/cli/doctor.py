"""`sora-ros doctor`: check that this machine can run sora_ros, and say what to fix."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
from collections.abc import Callable


def _rclpy() -> str:
    import rclpy

    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    return f"rclpy from {os.path.dirname(rclpy.__file__)}, middleware {rmw}"


def _interfaces() -> str:
    from sora_ros.msg import FutureFrames, PatchLatents  # noqa: F401
    from sora_ros.srv import Rollout  # noqa: F401

    return "sora_ros.msg (PatchLatents, FutureFrames), sora_ros.srv (Rollout)"


def _onnxruntime() -> str:
    import onnxruntime

    return f"{onnxruntime.__version__}, providers {', '.join(onnxruntime.get_available_providers())}"


def _version_of(distribution: str) -> Callable[[], str]:
    return lambda: importlib.metadata.version(distribution)


# (what, check, required, how to fix). A check returns a description or raises.
CHECKS = (
    ("numpy", _version_of("numpy"), True, "pip install numpy"),
    ("opencv", _version_of("opencv-python-headless"), True, "pip install opencv-python-headless"),
    ("onnxruntime", _onnxruntime, True, "pip install onnxruntime (or onnxruntime-gpu on a GPU robot)"),
    ("rosbags", _version_of("rosbags"), True, "pip install rosbags"),
    ("rclpy", _rclpy, True, "source your ROS 2 setup.bash, or run `make setup` (pip wheels)"),
    ("interfaces", _interfaces, True, "run `make setup` (builds msg/ and srv/), or `colcon build` and source install/setup.bash"),
    ("torch (training)", _version_of("torch"), False, "pip install -e '.[train]'"),
    ("pybullet (sim)", _version_of("pybullet"), False, "pip install -e '.[sim]'"),
    ("matplotlib (eval and bench pictures)", _version_of("matplotlib"), False, "pip install -e '.[eval]'"),
    ("foxglove-sdk (sora-ros view)", _version_of("foxglove-sdk"), False, "pip install -e '.[view]'"),
)


def main(args: argparse.Namespace) -> int:
    failed = 0
    if not args.quiet:
        print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    for name, check, required, fix in CHECKS:
        try:
            detail = check()
        except Exception as error:  # report every failure, whatever its kind
            failed += required
            print(f"{'FAIL' if required else 'skip'}  {name}: {type(error).__name__}: {error}\n      fix: {fix}")
            continue
        if not args.quiet:
            print(f"ok    {name}: {detail}")
    if failed:
        print(f"{failed} required check(s) failed")
    elif args.quiet:
        print("sora-ros doctor: all required checks passed")
    return 1 if failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the installation (ROS 2, interfaces, ONNX Runtime, extras)",
        description="Check that rclpy, the sora_ros interfaces, ONNX Runtime and the optional extras "
        "import, and print how to fix what does not. Exits non-zero if a required part is missing.",
    )
    parser.add_argument("--quiet", action="store_true", help="print only failures and a one-line verdict")
    parser.set_defaults(func=main)
