"""The one way the harness starts and stops a node process.

Each process gets its own process group, so a Ctrl-C in the terminal reaches it once,
from us, in order. Stopping escalates as `ros2 launch` does: SIGINT (the node shuts down
cleanly), then SIGTERM, then SIGKILL, each after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

# Seconds a process gets to exit after SIGINT, then after SIGTERM.
SIGINT_GRACE_S = 5.0
SIGTERM_GRACE_S = 3.0
POLL_S = 0.1


def node_command(module: str, ros_args: Iterable[str] = ()) -> list[str]:
    """The command that runs the node module `module` (e.g. sora_ros.nodes.world_model)
    with this interpreter and `ros_args` after --ros-args."""
    return [sys.executable, "-m", module, "--ros-args", *ros_args]


def start(cmd: list[str], *, env: dict[str, str] | None = None, stdout=None, text: bool = False) -> subprocess.Popen:
    """Start `cmd` in a new process group, stdin closed, stderr merged into `stdout`.

    Args:
        env: the whole environment (None: this process's).
        stdout: a file, subprocess.PIPE, or None to inherit.
        text: a PIPE gives str rather than bytes.

    Raises:
        OSError: the executable cannot be started.
    """
    return subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=text)


def _signal(process: subprocess.Popen, sig: signal.Signals) -> None:
    """`sig` to the process's group when it leads one (started by `start`), else to the process."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except ProcessLookupError:
        pass  # exited meanwhile


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGINT every running process's group, then SIGTERM, then SIGKILL, each after its grace
    period; returns once all have exited."""
    for sig, grace in ((signal.SIGINT, SIGINT_GRACE_S), (signal.SIGTERM, SIGTERM_GRACE_S), (signal.SIGKILL, 0)):
        running = [p for p in processes if p.poll() is None]
        if not running:
            break
        for process in running:
            _signal(process, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(p.poll() is None for p in running):
            time.sleep(POLL_S)
    for process in processes:
        process.wait()
