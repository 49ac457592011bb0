"""`sora-ros sim`: run the simulated robot as a ROS 2 node, or record episodes to bags.

    sora-ros sim [--ros-args -p seed:=3 -p rate:=10.0]
    sora-ros sim record --episodes 48 --seconds 12 --out data/sim --split 8:1:1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sora_ros.cli.arguments import MAX_EPISODE_S, episode_seconds, float_between, fraction, out_dir, out_dir_problem, \
    parameter_value, positive_float, positive_int, refused, seed_span_problem, usage_check


def run_node(args: argparse.Namespace) -> int:
    from sora_ros.nodes import sim as sim_node

    return sim_node.main(["sora-ros-sim", "--ros-args", *args.ros_args] if args.ros_args is not None else None)


def _record_one(task: tuple) -> tuple:
    """One episode in a worker process: (config, seed, seconds, path, wander) -> (path, seed, frames, collisions)."""
    from sora_ros.sim.recorder import record_episode

    config, seed, seconds, path, wander = task
    result = record_episode(config, seed, seconds, path, wander=wander)
    return result.path, result.seed, result.frames, result.collisions


def record(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sora_ros.core.machine import machine_description
    from sora_ros.sim.recorder import episode_path, parse_split, record_episode
    from sora_ros.sim.wander import WanderConfig
    from sora_ros.sim.world import WorldConfig

    if refused("sim record", "--out", out_dir_problem(args.out)):  # before any episode is recorded
        return 2
    try:
        split = parse_split(args.split) if args.split else None
        wander = WanderConfig(blind_share=args.blind_share)
    except ValueError as error:
        print(f"sora-ros sim record: {error}", file=sys.stderr)
        return 2
    config = WorldConfig(
        width=args.width, height=args.height, rate_hz=args.rate, world_size=args.world_size, num_objects=args.objects,
        **{field: value for field, value in (("camera_height", args.camera_height), ("camera_pitch_deg", args.camera_pitch),
                                             ("vertical_fov_deg", args.fov)) if value is not None},
    )
    seeds = range(args.seed, args.seed + args.episodes)
    tasks, skipped = [], 0
    for seed in seeds:
        path = episode_path(args.out, seed, split)
        if (path / "metadata.yaml").exists():
            skipped += 1  # finished by an earlier run
            continue
        if path.exists():
            print(f"sora-ros sim record: {path} exists but is incomplete (no metadata.yaml); remove it and rerun", file=sys.stderr)
            return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tasks.append((config, seed, args.seconds, path, wander))
    frames_per_episode = max(1, round(args.seconds * args.rate))
    total = frames_per_episode * len(tasks)
    workers = max(1, min(args.workers, len(tasks)))
    start = time.perf_counter()
    collisions = 0
    with tqdm(total=total, unit="frame", desc="recording", disable=True if args.quiet else None) as progress:  # None: terminal only
        if workers == 1:
            for config, seed, seconds, path, wander in tasks:
                collisions += record_episode(config, seed, seconds, path, lambda: progress.update(1), wander).collisions
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _, _, frames, hits in pool.map(_record_one, tasks):
                    collisions += hits
                    progress.update(frames)
    elapsed = time.perf_counter() - start
    counts = {}
    for _, seed, _, path, _ in tasks:
        key = path.parent.name if split else "all"
        counts[key] = counts.get(key, 0) + 1
    print(
        f"recorded {len(tasks)} episodes ({skipped} already there), {total} frames at {args.width}x{args.height} "
        f"in {elapsed:.1f} s = {total / max(elapsed, 1e-9):.1f} frames/s with {workers} worker(s); "
        f"{collisions} refused moves; per split: {counts}"
    )
    print(f"machine: {machine_description()}")
    return 0


def _seeds_problem(args: argparse.Namespace) -> str | None:
    """Seeds past the sim's largest (sora_ros.cli.arguments.usage_check): --seed is the first of --episodes."""
    from sora_ros.sim.parameters import SIM_SPECS

    return seed_span_problem(args.seed, args.episodes, SIM_SPECS["seed"].high, "--seed", "--episodes")


NODE_HELP = """Without a subcommand, run the sim node; 'sim record' writes episodes to rosbag2 MCAP
files without DDS.

The node publishes camera/image_raw (rgb8, sensor-data QoS), camera/camera_info, odom,
/clock (with publish_clock) and ~/cmd_vel_out: the command it executes each step (Twist),
whether it follows cmd_vel or wanders by itself. A world model beside it sees the robot's
actions with cmd_vel:=/sim/cmd_vel_out; on /cmd_vel it sees only commands from others.

    sora-ros sim --ros-args -p seed:=3 -p rate:=15.0

Node parameters (--ros-args -p NAME:=VALUE):
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.core.parameters import parameters_help
    from sora_ros.sim.parameters import SIM_PARAMETERS, SIM_SPECS

    parser = subparsers.add_parser(
        "sim",
        help="the simulated camera robot: run its ROS 2 node, or record episodes to bags",
        description=NODE_HELP + parameters_help(SIM_PARAMETERS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, dest="ros_args", help="ROS arguments for the node")
    parser.set_defaults(func=run_node)
    actions = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    rec = actions.add_parser("record", help="record episodes to rosbag2 MCAP bags, one per seed")
    rec.add_argument("--episodes", type=positive_int, required=True, help="number of episodes (consecutive seeds)")
    rec.add_argument("--seconds", type=episode_seconds, required=True,
                     help=f"simulated seconds per episode, above 0 and {MAX_EPISODE_S:g} or less (a day)")
    rec.add_argument("--out", type=out_dir, required=True, help="output folder (OUT/SPLIT/seed_NNNNNN/)")
    rec.add_argument("--split", help="train:val:test weights, e.g. 8:1:1; a seed's split depends on the seed alone")
    # The sim node's parameters, with their ranges: a recorded episode is one the node could run.
    for flag, name, what in (("--seed", "seed", "first seed (the episodes take consecutive seeds, all in the range)"),
                             ("--rate", "rate", "frames per simulated second"),
                             ("--width", "width", "image width in pixels"), ("--height", "height", "image height in pixels"),
                             ("--world-size", "world_size", "side of the square room in metres"),
                             ("--objects", "num_objects", "static objects in the room")):
        spec = SIM_SPECS[name]
        rec.add_argument(flag, type=parameter_value(spec), default=spec.default,
                         help=f"{what}, {spec.low} to {spec.high} (default {spec.default})")
    # Camera mounting (default: the robot the shipped model was trained on, sora_ros/sim/world.py WorldConfig);
    # other values make "another robot" for fine-tuning (sora-ros bench fine-tune).
    rec.add_argument("--camera-height", type=positive_float, help="camera height above the floor in metres (default 0.3)")
    rec.add_argument("--camera-pitch", type=float_between(-90.0, 90.0),
                     help="camera pitch in degrees, -90 to 90, negative looks down (default -10)")
    rec.add_argument("--fov", type=float_between(0.0, 180.0, above=True, below=True),
                     help="vertical field of view in degrees, above 0 and below 180 (default 70)")
    rec.add_argument("--blind-share", type=fraction, default=0.0,
                     help="share of the wander policy's goals driven without looking (0..1): episodes with "
                          "collisions for `train-risk` to learn 'blocked' from (default 0: steer clear)")
    rec.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="episodes recorded in parallel")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=record, check_usage=usage_check(rec, _seeds_problem))
