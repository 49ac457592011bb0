"""`sora-ros bench`: speed benchmarks that print absolute figures, the machine
they ran on, and ratios against a baseline measured in the same process."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np


def machine_description() -> str:
    """CPU model, core count and OS, for printing beside every figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def median_ms(func: Callable[[], object], repeats: int) -> float:
    """Median wall time of `func` in milliseconds, after one warm-up call."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def bench_image(args: argparse.Namespace) -> int:
    """Image message <-> numpy for a 640x480 rgb8 frame, against a plain copy of the same bytes."""
    from sora_ros.image_conversion import image_to_numpy, image_to_rgb, numpy_to_image

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    msg = numpy_to_image(frame, "rgb8")
    bgr_msg = numpy_to_image(frame[..., ::-1].copy(), "bgr8")
    rows = [
        ("memcpy of the 921,600 bytes (baseline)", lambda: frame.copy()),
        ("Image -> numpy (rgb8, zero-copy view)", lambda: image_to_numpy(msg)),
        ("Image -> numpy, owned copy", lambda: image_to_numpy(msg).copy()),
        ("Image -> RGB (bgr8, colour conversion)", lambda: image_to_rgb(bgr_msg)),
        ("numpy -> Image (rgb8)", lambda: numpy_to_image(frame, "rgb8")),
    ]
    print(f"machine: {machine_description()}")
    print(f"{'640x480 rgb8':44s} {'ms':>8s} {'x baseline':>11s}")
    baseline = None
    for name, func in rows:
        ms = median_ms(func, args.repeats)
        baseline = baseline or ms
        print(f"{name:44s} {ms:8.3f} {ms / baseline:11.2f}")
    return 0


def bench_model(args: argparse.Namespace) -> int:
    """World-model speed through ONNX Runtime, against torch eager on the same graphs."""
    from sora_ros.bench_model import run

    return run(args)


def bench_nodes(args: argparse.Namespace) -> int:
    """The world-model node through real DDS: camera-to-futures latency, ~/rollout, memory."""
    from sora_ros.bench_nodes import run

    return run(args)


BENCHMARKS = {"image": bench_image, "model": bench_model, "nodes": bench_nodes}
# Timed repetitions per row when --repeats is not given.
DEFAULT_REPEATS = {"image": 200, "model": 20, "nodes": 1}


def main(args: argparse.Namespace) -> int:
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS[args.target]
    return BENCHMARKS[args.target](args)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="speed benchmarks (absolute figures, machine, ratios to a baseline)",
        description="Run a speed benchmark and print absolute figures, the machine, and ratios "
        "against a baseline measured in the same process.",
    )
    parser.add_argument("target", choices=sorted(BENCHMARKS), help="image: Image message <-> numpy conversion; "
                        "model: world-model encode/decode/dynamics/rollout, ONNX Runtime vs torch eager; "
                        "nodes: the world_model node through DDS (latency, ~/rollout, RSS)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed repetitions per row, median reported (default {DEFAULT_REPEATS})")
    parser.add_argument("--model", help="model: model directory to time (ONNX Runtime only unless --checkpoint)")
    parser.add_argument("--checkpoint", help="model: the checkpoint --model was exported from (torch-eager column)")
    parser.add_argument("--preset", help="model: export random weights of this size preset to a temporary "
                        "directory and time both (default cpu64 when --model is not given)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="nodes: seconds the 15 Hz camera runs (the RSS growth check; 600 for the 10-minute target)")
    parser.add_argument("--camera-rate", type=float, default=15.0, help="nodes: camera frames per second")
    parser.set_defaults(func=main)
