"""`sora-ros bench`: speed benchmarks that print absolute figures, the machine
they ran on, and ratios against a baseline measured in the same process."""

from __future__ import annotations

import argparse
import importlib

from sora_ros.bench.closed_loop import FIRST_SEED, POLICIES
from sora_ros.bag.video import MAX_FPS, MIN_FPS
from sora_ros.cli.arguments import MAX_EPISODE_S, MAX_SEED, episode_seconds, float_between, int_between, \
    non_negative_int, occupied_dir_problem, out_dir, out_dir_problem, positive_float, positive_int, random_seed, \
    refused, seed_span_problem, usage_check
from sora_ros.core.mpc import MAX_WEIGHT, MpcConfig
from sora_ros.core.requests import MAX_CANDIDATES, MAX_HORIZON
from sora_ros.runtime.model_dir import PRECISIONS, THREAD_POOLS

# Each target is a module with run(args) -> int, imported only when chosen.
BENCHMARKS = {"image": "sora_ros.bench.image", "model": "sora_ros.bench.model", "nodes": "sora_ros.harness.bench_nodes",
              "fine-tune": "sora_ros.bench.fine_tune", "closed-loop": "sora_ros.bench.closed_loop"}
# Timed repetitions per row when --repeats is not given.
DEFAULT_REPEATS = {"image": 200, "model": 20}
# CPU-minutes of training the fine-tune benchmark compares (issue 17).
FINE_TUNE_MINUTES = [2.0, 5.0, 10.0]
# Output folder when --out is not given (the targets that write one).
DEFAULT_OUT = {"fine-tune": "out/bench_fine_tune", "closed-loop": "out/closed_loop"}
CLOSED_LOOP = ("closed-loop",)
NODES = ("nodes",)
# The targets that read each option (by its dest); the others refuse it, so that an option that
# would change nothing is not taken silently. Argparse defaults are None, so "given" is "not None".
READ_BY = {
    "repeats": tuple(DEFAULT_REPEATS), "model": ("model", "nodes", "fine-tune", "closed-loop"),
    "minutes": ("fine-tune",), "out": tuple(DEFAULT_OUT), "checkpoint": ("model",), "preset": ("model",),
    "duration": NODES, "camera_rate": NODES, "camera_size": NODES, "output_size": NODES, "param": NODES,
    "episodes": CLOSED_LOOP, "seconds": CLOSED_LOOP, "first_seed": CLOSED_LOOP, "policies": CLOSED_LOOP,
    "candidates": CLOSED_LOOP, "horizon": CLOSED_LOOP, "iterations": CLOSED_LOOP, "decision_every": CLOSED_LOOP,
    "dynamics_precision": CLOSED_LOOP, "escape_steps": CLOSED_LOOP, "risk_weight": CLOSED_LOOP, "goals": CLOSED_LOOP,
    "thread_pool": ("model", "closed-loop"), "force": CLOSED_LOOP,
}
# Values of the options not given (those whose absence the targets do not handle themselves).
DEFAULTS = {"minutes": FINE_TUNE_MINUTES, "duration": 60.0, "camera_rate": 15.0, "episodes": 20, "seconds": 60.0,
            "first_seed": FIRST_SEED, "policies": ",".join(POLICIES), "candidates": 32, "horizon": 8,
            "iterations": 1, "decision_every": 2, "dynamics_precision": "float32",
            "escape_steps": MpcConfig().escape_steps, "risk_weight": MpcConfig().risk_weight,
            "thread_pool": THREAD_POOLS[0], "goals": False, "force": False}


def usage_problem(args: argparse.Namespace) -> str | None:
    """An option the target does not read (`unread_option_problem`), or closed-loop seeds past MAX_SEED; or None."""
    problem = unread_option_problem(args)
    if problem or args.target not in CLOSED_LOOP:
        return problem
    first, count = (DEFAULTS[dest] if getattr(args, dest) is None else getattr(args, dest)
                    for dest in ("first_seed", "episodes"))
    return seed_span_problem(first, count, MAX_SEED, "--first-seed", "--episodes")


def unread_option_problem(args: argparse.Namespace) -> str | None:
    """The first option given that the chosen target does not read, as a usage error; or None."""
    for dest, targets in READ_BY.items():
        if getattr(args, dest) is not None and args.target not in targets:
            flag = "--" + dest.replace("_", "-")
            *others, last = sorted(targets)
            readers = f"{', '.join(others)} and {last}" if others else last
            return f"{flag} is read by bench {readers}, not by bench {args.target}; leave it out"
    if args.target == "model" and args.checkpoint is not None and args.model is None:
        return "--checkpoint is read with --model, the directory exported from it; leave it out"
    if args.target == "model" and args.preset is not None and args.model is not None:
        return "--preset times random weights of its own, not --model's; leave it out"
    return None


def apply_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with the options not given set to their defaults (some per target); returns `args`."""
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS.get(args.target)
    if args.out is None:
        args.out = DEFAULT_OUT.get(args.target)
    return args


def main(args: argparse.Namespace) -> int:
    apply_defaults(args)
    problem = out_dir_problem(args.out) if args.target in DEFAULT_OUT else None
    if args.target in CLOSED_LOOP:  # fine-tune's --out is its own earlier run's, which a rerun resumes
        problem = problem or occupied_dir_problem(args.out, args.force, "replace the files of the same names there")
    if refused(f"bench {args.target}", "--out", problem):  # before the benchmark runs, not when it writes its results
        return 2
    if args.thread_pool == "shared":  # before any session: the pool is process-wide
        from sora_ros.runtime.engine import share_thread_pool

        share_thread_pool()
    return importlib.import_module(BENCHMARKS[args.target]).run(args)


def _camera_size(text: str) -> tuple[int, int]:
    from sora_ros.harness.bench_nodes import parse_size

    return parse_size(text)


def _node_parameter(text: str) -> str:
    from sora_ros.harness.bench_nodes import parse_parameter

    return parse_parameter(text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.model.config import PRESETS  # plain dataclasses: no torch

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
                        "fine-tuned vs trained from scratch for --minutes CPU-minutes (sora_ros/bench/fine_tune.py); "
                        "closed-loop: the sampling MPC driving the sim with the model, copy-last predictions, "
                        "shuffled actions and the wander policy (collisions, distance, latency)")
    parser.add_argument("--repeats", type=positive_int,
                        help=f"image, model: timed repetitions per row, median reported (default "
                             f"{', '.join(f'{target} {count}' for target, count in DEFAULT_REPEATS.items())})")
    parser.add_argument("--model", help="model: model directory to time (ONNX Runtime only unless --checkpoint); "
                        "fine-tune: the parent model directory, with weights.safetensors (default: the installed default)")
    parser.add_argument("--thread-pool", choices=THREAD_POOLS,
                        help="model, closed-loop: ONNX Runtime's threads: a non-spinning pool per session (the "
                        "default, as the nodes run) or one shared, spinning pool for the whole process "
                        "(sora_ros.runtime.engine.share_thread_pool: faster for one thread calling graphs back to "
                        "back, such as an in-process planner, on an otherwise idle machine; slower beside other "
                        "busy processes and for the world_model node)")
    parser.add_argument("--minutes", type=positive_float, nargs="+",
                        help="fine-tune: training budgets in CPU-minutes, each above 0 (default "
                             f"{' '.join(f'{m:g}' for m in FINE_TUNE_MINUTES)})")
    parser.add_argument("--out", type=out_dir, help=f"fine-tune: data, runs, models, evaluations, RESULTS.md, results.json, "
                        "fine_tune.png; a rerun skips what is there; closed-loop: metrics.json, plots, episodes.jsonl "
                        f"(default {', '.join(f'{target} {path}' for target, path in DEFAULT_OUT.items())})")
    parser.add_argument("--force", action="store_true", default=None,
                        help="closed-loop: write into an --out that holds files (those of the same names are "
                        "replaced; refused before any episode without it)")
    parser.add_argument("--checkpoint", help="model: the checkpoint --model was exported from (torch-eager column)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="model: export random weights of this size preset "
                        "to a temporary directory and time both (default cpu64 when --model is not given)")
    parser.add_argument("--duration", type=positive_float,
                        help=f"nodes: seconds measured after the start-up and ~/rollout calls, above 0 (default "
                        f"{DEFAULTS['duration']:g}; the RSS growth "
                        "check: 600 for the "
                        "10-minute target)")
    parser.add_argument("--camera-rate", type=float_between(MIN_FPS, MAX_FPS),
                        help=f"nodes: camera frames per second, {MIN_FPS:g} to {MAX_FPS:g} "
                        f"(default {DEFAULTS['camera_rate']:g})")
    parser.add_argument("--camera-size", type=_camera_size, metavar="WxH",
                        help="nodes: camera image size, e.g. 640x480 (default 128x128)")
    parser.add_argument("--output-size", type=_camera_size, metavar="WxH",
                        help="nodes: the node's output_size, the predicted frames' size, e.g. 320x240 (default: the "
                        "camera's)")
    parser.add_argument("--param", type=_node_parameter, action="append", metavar="NAME:=VALUE",
                        help="nodes: a world_model node parameter (README, \"Nodes and the demo\"), as `ros2 run ... -p` takes "
                        "it; repeatable, e.g. --param sampler_steps:=2 --param horizon:=4")
    loop = parser.add_argument_group("closed-loop", "sim episodes in one process, the same seeds for every policy")
    loop.add_argument("--episodes", type=positive_int, help=f"closed-loop: seeded episodes (default {DEFAULTS['episodes']})")
    loop.add_argument("--seconds", type=episode_seconds, help=f"closed-loop: simulated seconds each, above 0 and "
                      f"{MAX_EPISODE_S:g} or less (a day; default {DEFAULTS['seconds']:g})")
    loop.add_argument("--first-seed", type=random_seed,
                      help=f"closed-loop: first world seed; the episodes take consecutive seeds, all 0 to {MAX_SEED} "
                      f"(default {FIRST_SEED:,}: far from the seeds training recorded, 0..99 in "
                      "scripts/train_default.sh)")
    loop.add_argument("--policies",
                      help=f"closed-loop: comma-separated subset of {','.join(POLICIES)} (default all)")
    # The MPC's own ranges (sora_ros/core/mpc.py MpcConfig), refused at parsing with the option named.
    loop.add_argument("--candidates", type=int_between(2, MAX_CANDIDATES),
                      help=f"closed-loop: MPC candidates per decision, 2 (the warm start and one sample) to "
                      f"{MAX_CANDIDATES} (default {DEFAULTS['candidates']})")
    loop.add_argument("--horizon", type=int_between(1, MAX_HORIZON),
                      help=f"closed-loop: MPC steps each candidate looks ahead, 1 to {MAX_HORIZON} (default "
                      f"{DEFAULTS['horizon']})")
    loop.add_argument("--iterations", type=positive_int,
                      help=f"closed-loop: CEM iterations per decision (default {DEFAULTS['iterations']})")
    loop.add_argument("--escape-steps", type=non_negative_int,
                      help="closed-loop: after a step in which odometry showed the robot blocked, no candidate drives "
                      "in that direction (forward or reverse) up to this many steps after it "
                      f"(sora_ros/core/contact.py; 0: the predicted risk alone; default {DEFAULTS['escape_steps']})")
    loop.add_argument("--risk-weight", type=float_between(0.0, MAX_WEIGHT),
                      help=f"closed-loop: the MPC's cost per unit of mean predicted risk, 0 to {MAX_WEIGHT:g}, as the "
                      f"planner node's risk_weight parameter (sora_ros/core/mpc.py; default "
                      f"{DEFAULTS['risk_weight']:g})")
    loop.add_argument("--goals", action="store_const", const=True,
                      help="closed-loop: give the MPC policies goals on free floor, the next once one is reached, and "
                      "report goals reached per minute (default: none, the MPC explores; wander ignores goals)")
    loop.add_argument("--decision-every", type=positive_int,
                      help=f"closed-loop: sim steps (model dt each) between decisions (default {DEFAULTS['decision_every']}: 5 Hz "
                      "at dt 0.1 s)")
    loop.add_argument("--dynamics-precision", choices=PRECISIONS,
                      help=f"closed-loop: the model's dynamics graphs, float32 or int8 (`sora-ros quantize`; default "
                      f"{DEFAULTS['dynamics_precision']})")
    parser.set_defaults(func=main, check_usage=usage_check(parser, usage_problem))
