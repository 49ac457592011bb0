"""`sora-ros bench`: speed benchmarks that print absolute figures, the machine
they ran on, and ratios against a baseline measured in the same process."""

from __future__ import annotations

import argparse
import importlib

# Each target is a module with run(args) -> int, imported only when chosen.
BENCHMARKS = {"image": "sora_ros.bench.image", "model": "sora_ros.bench.model", "nodes": "sora_ros.harness.bench_nodes",
              "fine-tune": "sora_ros.bench.fine_tune"}
# Timed repetitions per row when --repeats is not given.
DEFAULT_REPEATS = {"image": 200, "model": 20, "nodes": 1, "fine-tune": 1}
# CPU-minutes of training the fine-tune benchmark compares (issue 17).
FINE_TUNE_MINUTES = [2.0, 5.0, 10.0]


def main(args: argparse.Namespace) -> int:
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS[args.target]
    return importlib.import_module(BENCHMARKS[args.target]).run(args)


def _camera_size(text: str) -> tuple[int, int]:
    from sora_ros.harness.bench_nodes import parse_size

    return parse_size(text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="speed benchmarks (absolute figures, machine, ratios to a baseline), and the fine-tuning benchmark",
        description="Run a speed benchmark and print absolute figures, the machine, and ratios "
        "against a baseline measured in the same process.",
    )
    parser.add_argument("target", choices=sorted(BENCHMARKS), help="image: Image message <-> numpy conversion; "
                        "model: world-model encode/decode/dynamics/rollout, ONNX Runtime vs torch eager; "
                        "nodes: the world_model node through DDS (latency, ~/rollout, RSS); "
                        "fine-tune: --model (default models/default) on a simulated robot it never saw, un-tuned vs "
                        "fine-tuned vs trained from scratch for --minutes CPU-minutes (sora_ros/bench/fine_tune.py)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed repetitions per row, median reported (default {DEFAULT_REPEATS})")
    parser.add_argument("--model", help="model: model directory to time (ONNX Runtime only unless --checkpoint); "
                        "fine-tune: the parent model directory, with weights.safetensors (default: the installed default)")
    parser.add_argument("--minutes", type=float, nargs="+", default=FINE_TUNE_MINUTES,
                        help="fine-tune: training budgets in CPU-minutes")
    parser.add_argument("--out", default="out/bench_fine_tune",
                        help="fine-tune: data, runs, models, evaluations, RESULTS.md, results.json, fine_tune.png; "
                             "a rerun skips what is there")
    parser.add_argument("--checkpoint", help="model: the checkpoint --model was exported from (torch-eager column)")
    parser.add_argument("--preset", help="model: export random weights of this size preset to a temporary "
                        "directory and time both (default cpu64 when --model is not given)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="nodes: seconds the 15 Hz camera runs (the RSS growth check; 600 for the 10-minute target)")
    parser.add_argument("--camera-rate", type=float, default=15.0, help="nodes: camera frames per second")
    parser.add_argument("--camera-size", type=_camera_size, metavar="WxH",
                        help="nodes: camera image size, e.g. 640x480 (default 128x128)")
    parser.set_defaults(func=main)
