"""`sora-ros launch FILE name:=value ...`: run a ROS 2 YAML launch file without `ros2 launch`.

One process per node, each in its own process group, its output prefixed with
its name. Ctrl-C (or SIGTERM, or --duration running out) stops every process:
SIGINT first, as `ros2 launch` does, then SIGTERM, then SIGKILL. A process
that exits by itself stops the rest; the runner exits non-zero and names it
when it died with an error.
"""

from __future__ import annotations

import argparse
import signal
import sys

from sora_ros.cli.arguments import positive_float



def main(args: argparse.Namespace) -> int:
    from sora_ros.harness.launch_file import LaunchFileError, parse_launch_arguments, read_launch_file
    try:
        specs = read_launch_file(args.file, parse_launch_arguments(args.arguments))
    except LaunchFileError as error:
        print(f"sora-ros launch: {error}", file=sys.stderr)
        return 2
    if args.print:
        for spec in specs:
            print(f"{spec.name}: {' '.join(spec.cmd)}")
        return 0
    if not specs:
        print(f"sora-ros launch: {args.file} starts no process", file=sys.stderr)
        return 2
    from sora_ros.harness.launch_runner import LaunchRunner

    runner = LaunchRunner(specs)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: runner.request_stop(f"{signal.Signals(number).name} received"))
    try:
        runner.start()
    except OSError as error:
        runner.shutdown()
        print(f"sora-ros launch: could not start a process: {error}", file=sys.stderr)
        return 1
    outcome = runner.supervise(args.duration)
    stream = sys.stderr if outcome.exit_code else sys.stdout
    print(f"[launch] {'failed' if outcome.exit_code else 'stopped'}: {outcome.reason}", file=stream, flush=True)
    return outcome.exit_code


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "launch",
        help="run a ROS 2 YAML launch file (no ros2 launch needed)",
        description="Run a ROS 2 YAML launch file: one process per node, with its args, params, remaps and "
        "namespaces. Ctrl-C stops everything; a node that dies stops the rest and makes the exit code non-zero.",
    )
    parser.add_argument("file", help="launch file, e.g. launch/world_model.launch.yaml")
    parser.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments")
    parser.add_argument("--duration", type=positive_float, metavar="S",
                        help="stop everything after S seconds, above 0 (default: at Ctrl-C)")
    parser.add_argument("--print", action="store_true", help="print the commands it would run, then exit")
    parser.set_defaults(func=main)
