"""What the nodes report on /diagnostics, gathered without rclpy: latency windows,
counters by reason, an input rate, and a watchdog for a camera that went quiet.

`node_entries` turns them into plain (level, message, values) entries that the node
wraps in diagnostic_msgs/DiagnosticStatus.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

# Latest samples kept per latency window: ~1 minute at 15 Hz, bounded memory.
WINDOW = 1000
# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR, STALE = 0, 1, 2, 3
# Counters about the input, reported beside the watchdog rather than beside the latencies.
INPUT_COUNTERS = ("drop/", "reset/")


class LatencyWindow:
    """The latest `WINDOW` durations of one stage, in milliseconds. Thread-safe."""

    def __init__(self) -> None:
        self._values: deque[float] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def percentiles(self) -> dict[str, float] | None:
        """{"p50", "p99", "max", "n"} over the window, or None while empty."""
        with self._lock:
            values = np.array(self._values)
        if values.size == 0:
            return None
        return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
                "max": float(values.max()), "n": int(values.size)}


class RateMeter:
    """Events per second over the last `window_s` seconds. Thread-safe."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._times: deque[float] = deque()
        self._window_s = window_s
        self._lock = threading.Lock()
        self.last_s: float | None = None  # monotonic time of the latest event

    def tick(self, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._times.append(now_s)
            self.last_s = now_s
            self._trim(now_s)

    def rate_hz(self, now_s: float | None = None) -> float:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._trim(now_s)
            return len(self._times) / self._window_s

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] < now_s - self._window_s:
            self._times.popleft()


class Counters:
    """Event counts by name (published, dropped by reason, ...). Thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass
class StatusEntry:
    """One diagnostic_msgs/DiagnosticStatus, without the ROS type."""

    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


def watchdog_entry(name: str, meter: RateMeter, timeout_s: float, counters: dict[str, int],
                   now_s: float | None = None) -> StatusEntry:
    """The camera input's status: its rate, drops by reason, and the watchdog.

    Args:
        name: status name (e.g. "world_model: camera").
        meter: frames received.
        timeout_s: silence longer than this is an error.
        counters: drop counts by reason ("drop/<reason>") and others.

    Returns:
        ERROR "no camera frame for X s" when the camera went quiet (STALE before the first
        frame); WARN when frames were dropped in this report's counts; else OK.
    """
    now_s = time.monotonic() if now_s is None else now_s
    values = {"input_rate_hz": f"{meter.rate_hz(now_s):.2f}"}
    values.update({key: str(count) for key, count in sorted(counters.items())})
    if meter.last_s is None:
        return StatusEntry(name, STALE, "no camera frame received yet", values)
    silence = now_s - meter.last_s
    values["seconds_since_last_frame"] = f"{silence:.2f}"
    if silence > timeout_s:
        return StatusEntry(name, ERROR, f"no camera frame for {silence:.1f} s (watchdog {timeout_s:g} s)", values)
    drops = sum(count for key, count in counters.items() if key.startswith("drop/"))
    if drops:
        return StatusEntry(name, WARN, f"receiving; {drops} frames dropped so far (see drop/*)", values)
    return StatusEntry(name, OK, "receiving", values)


def node_entries(name: str, state: str, meter: RateMeter, watchdog_s: float, counters: dict[str, int],
                 latency: dict[str, LatencyWindow], values: dict[str, str]) -> list[StatusEntry]:
    """A world-model node's two statuses: "<name>: input" (the watchdog, with the input
    counters "drop/*" and "reset/*") and "<name>: inference" (OK when the lifecycle state is
    active, latencies, every other counter and `values`)."""
    inputs = {key: count for key, count in counters.items() if key.startswith(INPUT_COUNTERS)}
    inference = latency_values(latency)
    inference.update({key: str(count) for key, count in sorted(counters.items()) if key not in inputs})
    inference.update(values, lifecycle_state=state)
    level, message = (OK, "active") if state == "active" else (WARN, f"lifecycle state {state}")
    return [watchdog_entry(f"{name}: input", meter, watchdog_s, inputs),
            StatusEntry(f"{name}: inference", level, message, inference)]


def latency_values(windows: dict[str, LatencyWindow]) -> dict[str, str]:
    """"<stage>_ms_p50/_p99/_max" key-values for every window with samples."""
    values = {}
    for stage, window in windows.items():
        summary = window.percentiles()
        if summary is not None:
            for key in ("p50", "p99", "max"):
                values[f"{stage}_ms_{key}"] = f"{summary[key]:.2f}"
    return values


class Throttle:
    """Lets a message through once per `period_s` per key (a drop reason, a note). Thread-safe."""

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, key: str, now_s: float | None = None) -> bool:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            if now_s - self._last.get(key, -float("inf")) < self._period_s:
                return False
            self._last[key] = now_s
            return True
