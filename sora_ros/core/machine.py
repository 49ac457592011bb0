"""The machine a figure was measured on, printed beside every benchmark and training record."""

from __future__ import annotations

import os
import platform


def machine_description() -> str:
    """CPU model, core count and OS, for printing beside every figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
