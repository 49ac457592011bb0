"""The harness's one way to stop a node process: SIGINT, then SIGTERM, then SIGKILL."""

from __future__ import annotations

import subprocess
import sys

from sora_ros.harness import processes

IGNORES_SIGINT = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def test_stop_escalates_past_a_process_that_ignores_sigint(monkeypatch) -> None:
    monkeypatch.setattr(processes, "SIGINT_GRACE_S", 0.5)
    process = processes.start([sys.executable, "-c", IGNORES_SIGINT], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    processes.stop([process])
    assert process.returncode == -15, "SIGTERM should have ended it after SIGINT was ignored"


# Python's own SIGINT handler, set explicitly: a shell runs background jobs with SIGINT ignored, and
# a child inherits that (then Python installs no handler and only SIGTERM would end it).
HANDLES_SIGINT = ("import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
                  "print('ready', flush=True); time.sleep(60)")


def test_stop_reaches_a_process_that_leads_no_group() -> None:
    process = subprocess.Popen([sys.executable, "-c", HANDLES_SIGINT], stdout=subprocess.PIPE, text=True)  # our group
    assert process.stdout.readline().strip() == "ready"
    processes.stop([process])
    assert process.returncode == -2
