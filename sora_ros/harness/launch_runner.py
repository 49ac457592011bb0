"""Run the processes of a launch file and supervise them (`sora-ros launch`, `sora-ros demo`).

One process per node, each in its own process group, its output prefixed with its name.
A stop request (Ctrl-C, SIGTERM, a duration running out) stops every process the one way
sora_ros.harness.processes stops a node. A process that exits by itself stops the rest;
the outcome names it and is non-zero when it died with an error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from sora_ros.harness.launch_file import ProcessSpec
from sora_ros.harness.processes import POLL_S, start, stop



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
            process = start(spec.cmd, env=env, stdout=subprocess.PIPE)
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
                if self._stop.wait(POLL_S):
                    outcome = Outcome(0, self._stop_reason)
                elif deadline is not None and time.monotonic() >= deadline:
                    outcome = Outcome(0, f"duration of {duration_s:g} s reached")
        self.shutdown()
        return outcome

    def shutdown(self) -> None:
        """Stop every process still running (see sora_ros.harness.processes.stop)."""
        stop([process for _, process in self.processes])
