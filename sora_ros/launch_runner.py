"""`sora-ros launch FILE name:=value ...`: run a ROS 2 YAML launch file without `ros2 launch`.

One process per node, each in its own process group, its output prefixed with
its name. Ctrl-C (or SIGTERM, or --duration running out) stops every process:
SIGINT first, as `ros2 launch` does, then SIGTERM, then SIGKILL. A process
that exits by itself stops the rest; the runner exits non-zero and names it
when it died with an error.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from sora_ros.launch_file import LaunchFileError, ProcessSpec, parse_launch_arguments, read_launch_file

# Seconds a process gets to exit after SIGINT, then after SIGTERM.
SIGINT_GRACE_S = 5.0
SIGTERM_GRACE_S = 3.0
_POLL_S = 0.1


@dataclass
class Outcome:
    """How a launch ended: the exit code for the runner and a sentence saying why."""

    exit_code: int
    reason: str


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class LaunchRunner:
    """Starts the processes of a launch file and supervises them until one ends or we are told to stop."""

    def __init__(self, specs: list[ProcessSpec]):
        self.specs = specs
        self.processes: list[tuple[ProcessSpec, subprocess.Popen]] = []
        self._stop = threading.Event()
        self._stop_reason = ""
        self._print_lock = threading.Lock()

    def request_stop(self, reason: str) -> None:
        """Ask the supervision loop to shut everything down (safe from signal handlers)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def _forward_output(self, name: str, stream) -> None:
        for line in iter(stream.readline, b""):
            with self._print_lock:
                sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
                sys.stdout.flush()
        stream.close()

    def start(self) -> None:
        for spec in self.specs:
            env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
            process = subprocess.Popen(
                spec.cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # our Ctrl-C reaches it once, from us, in order
            )
            self.processes.append((spec, process))
            threading.Thread(target=self._forward_output, args=(spec.name, process.stdout), daemon=True).start()
            print(f"[launch] started {spec.name} (pid {process.pid})", flush=True)

    def supervise(self, duration_s: float | None = None) -> Outcome:
        """Wait until a process exits, the duration runs out, or a stop is requested; then stop all."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        outcome = None
        while outcome is None:
            for spec, process in self.processes:
                code = process.poll()
                if code is not None:
                    died = code != 0
                    outcome = Outcome(1 if died else 0, f"{spec.name} {_describe_exit(code)}")
                    break
            else:
                if self._stop.wait(_POLL_S):
                    outcome = Outcome(0, self._stop_reason)
                elif deadline is not None and time.monotonic() >= deadline:
                    outcome = Outcome(0, f"duration of {duration_s:g} s reached")
        self.shutdown()
        return outcome

    def shutdown(self) -> None:
        """SIGINT every running process, then SIGTERM, then SIGKILL, each after a grace period."""
        for sig, grace in ((signal.SIGINT, SIGINT_GRACE_S), (signal.SIGTERM, SIGTERM_GRACE_S), (signal.SIGKILL, 0)):
            running = [(spec, p) for spec, p in self.processes if p.poll() is None]
            if not running:
                return
            for _, process in running:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + grace
            while time.monotonic() < end and any(p.poll() is None for _, p in running):
                time.sleep(_POLL_S)
        for _, process in self.processes:
            process.wait()


def main(args: argparse.Namespace) -> int:
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
    parser.add_argument("--duration", type=float, metavar="S", help="stop everything after S seconds")
    parser.add_argument("--print", action="store_true", help="print the commands it would run, then exit")
    parser.set_defaults(func=main)
