"""The `sora-ros` command: one entry point, one module per subcommand in this folder.

Rule: the top layer. May import every other folder; rclpy, torch, foxglove and the layers that
need them (model/, nodes/, harness/) only inside functions, so `sora-ros --help` is
instant and works without them.

Each subcommand module has `add_parser(subparsers)`, which registers its arguments and
sets `func` to a `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import os
import sys

from sora_ros import __version__
from sora_ros.cli import bag, bench, demo, doctor, evaluate, export, launch, quantize, sim, train, train_anchor, \
    train_risk, video_camera, view
from sora_ros.core.paths import apply_fastdds_profile

SUBCOMMANDS = (doctor, demo, sim, bag, video_camera, train, train_anchor, train_risk, export, quantize, evaluate, launch,
               view, bench)

TRACEBACK_VARIABLE = "SORA_ROS_TRACEBACK"


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
    if hasattr(args, "check_usage"):  # checks across arguments (sora_ros.cli.arguments.usage_check): exit 2
        args.check_usage(args)
    # Before any DDS participant exists, here or in the nodes the command starts: camera-sized
    # messages need the shipped profile's shared-memory segment (unless the user chose a profile).
    apply_fastdds_profile()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sora-ros ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 141
    except Exception as error:  # a failure no subcommand foresaw: one line, not a traceback
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        print(f"sora-ros: unexpected {type(error).__name__}: {error} (a bug: please report it with the command; "
              f"{TRACEBACK_VARIABLE}=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
