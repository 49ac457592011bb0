"""The `sora-ros` command: one entry point, one module per subcommand.

Each subcommand module has `add_parser(subparsers)`, which registers its
arguments and sets `func` to a `main(args) -> int`. Modules import their heavy
dependencies (rclpy, torch) inside `main`, so `sora-ros --help` is instant and
works without them.
"""

from __future__ import annotations

import argparse
import sys

from sora_ros import __version__, bench, demo, doctor, export, launch_runner, train
from sora_ros.bag import command as bag_command
from sora_ros.evaluation import command as eval_command
from sora_ros.nodes import video_camera_command
from sora_ros.sim import command as sim_command

SUBCOMMANDS = (doctor, demo, sim_command, bag_command, video_camera_command, train, export, eval_command, launch_runner, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sora-ros",
        description="Learned world models as a ROS 2 sense: predicted camera futures and what-if rollouts.",
        epilog="Run 'sora-ros COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sora-ros ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
