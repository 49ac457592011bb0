"""What the nodes report on /diagnostics, gathered without rclpy: latency windows,
counters by reason (lifetime, and over the last few seconds), an input rate and header-stamp
age over the same window, and a watchdog for a camera that went quiet; in the spirit of
diagnostic_updater's FrequencyStatus and TimeStampStatus.

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
INPUT_COUNTERS = ("drop/", "reset/", "context/")


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
    """Events over the last `window_s` seconds, each with an optional value (a frame's
    header-stamp age in seconds), and the lifetime count. Thread-safe."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._events: deque[tuple[float, float | None]] = deque()  # (monotonic s, value)
        self.window_s = window_s
        self._lock = threading.Lock()
        self.first_s: float | None = None  # monotonic time of the first event
        self.last_s: float | None = None  # monotonic time of the latest event
        self.total = 0

    def tick(self, now_s: float | None = None, value: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._events.append((now_s, value))
            self.first_s = now_s if self.first_s is None else self.first_s
            self.last_s = now_s
            self.total += 1
            self._trim(now_s)

    def rate_hz(self, now_s: float | None = None) -> float:
        """Events per second over the window."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._trim(now_s)
            return len(self._events) / self.window_s

    def values(self, now_s: float | None = None) -> list[float]:
        """The values given with the events in the window, oldest first."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            self._trim(now_s)
            return [value for _, value in self._events if value is not None]

    def _trim(self, now_s: float) -> None:
        while self._events and self._events[0][0] < now_s - self.window_s:
            self._events.popleft()


class CounterWindow:
    """Counts over the last `window_s` seconds from lifetime snapshots: the increase of each
    counter since the newest snapshot at least `window_s` old (or since creation)."""

    def __init__(self, window_s: float, now_s: float | None = None) -> None:
        self.window_s = window_s
        self._history: deque[tuple[float, dict[str, int]]] = deque([(time.monotonic() if now_s is None else now_s, {})])

    def update(self, counts: dict[str, int], now_s: float | None = None) -> dict[str, int]:
        """Record the lifetime `counts` now; returns the non-zero increases over the window."""
        now_s = time.monotonic() if now_s is None else now_s
        self._history.append((now_s, dict(counts)))
        while len(self._history) > 1 and self._history[1][0] <= now_s - self.window_s:
            self._history.popleft()
        base = self._history[0][1]
        return {key: count - base.get(key, 0) for key, count in counts.items() if count > base.get(key, 0)}


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


@dataclass(frozen=True)
class InputBounds:
    """What the camera input should look like; beyond it /diagnostics warns (or errs).

    Attributes:
        watchdog_s: silence longer than this (s) is an ERROR.
        min_rate_hz, max_rate_hz: expected frame rate over the window (Hz); 0 = no bound.
        max_stamp_age_s: |receipt time (node clock) - header stamp| above this (s) warns:
            clocks of two hosts apart, or a bag replayed without use_sim_time.
    """

    watchdog_s: float
    min_rate_hz: float = 0.0
    max_rate_hz: float = 0.0
    max_stamp_age_s: float = float("inf")


def watchdog_entry(name: str, meter: RateMeter, bounds: InputBounds, counters: dict[str, int],
                   window: dict[str, int] | None = None, active: bool = True,
                   now_s: float | None = None) -> StatusEntry:
    """The camera input's status: rate and stamp age over the meter's window, drops by reason
    (lifetime as "drop/<reason>", over the window as "window/drop/<reason>"), the watchdog.

    Args:
        name: status name (e.g. "world_model: camera").
        meter: frames received, each with its header-stamp age (s) as the value.
        counters: lifetime counts ("drop/<reason>", "reset/<reason>").
        window: the same counts over the last window (None: no drops in it).
        active: False while the node is deliberately not subscribed (lifecycle inactive).

    Returns:
        OK "inactive" when not active; STALE before the first frame; ERROR "no camera frame
        for X s" when the camera went quiet; WARN for drops in the window, a rate outside
        the bounds (once a full window has passed) or stamps too old or too new; else OK.
    """
    now_s = time.monotonic() if now_s is None else now_s
    window = window or {}
    rate = meter.rate_hz(now_s)
    values = {"input_rate_hz": f"{rate:.2f}", "window_s": f"{meter.window_s:g}", "frames_received": str(meter.total)}
    ages = meter.values(now_s)
    if ages:
        values.update(stamp_age_s_min=f"{min(ages):.3f}", stamp_age_s_max=f"{max(ages):.3f}")
    values.update({key: str(count) for key, count in sorted(counters.items())})
    values.update({f"window/{key}": str(count) for key, count in sorted(window.items())})
    if not active:
        return StatusEntry(name, OK, "inactive: not subscribed (lifecycle)", values)
    if meter.last_s is None:
        return StatusEntry(name, STALE, "no camera frame received yet", values)
    silence = now_s - meter.last_s
    values["seconds_since_last_frame"] = f"{silence:.2f}"
    if silence > bounds.watchdog_s:
        return StatusEntry(name, ERROR, f"no camera frame for {silence:.1f} s (watchdog {bounds.watchdog_s:g} s)",
                           values)
    problems = []
    drops = sum(count for key, count in window.items() if key.startswith("drop/"))
    if drops:
        problems.append(f"{drops} frames dropped in the last {meter.window_s:g} s (see window/drop/*)")
    off_grid = window.get("context/off_grid", 0)
    if off_grid:
        problems.append(f"{off_grid} frames in the last {meter.window_s:g} s made no context: some step of the "
                        "model's time grid has no frame within dt/2 (a camera slower than 1/dt, or irregular "
                        "stamps), so nothing is predicted")
    if now_s - meter.first_s >= meter.window_s:  # a full window: the rate means something
        if bounds.min_rate_hz and rate < bounds.min_rate_hz:
            problems.append(f"rate {rate:.1f} Hz below the expected {bounds.min_rate_hz:g} Hz")
        if bounds.max_rate_hz and rate > bounds.max_rate_hz:
            problems.append(f"rate {rate:.1f} Hz above the expected {bounds.max_rate_hz:g} Hz")
    if ages and max(abs(min(ages)), abs(max(ages))) > bounds.max_stamp_age_s:
        problems.append(f"header stamps {max(ages, key=abs):+.2f} s from the node clock (bound "
                        f"{bounds.max_stamp_age_s:g} s: clocks apart, or a bag without use_sim_time?)")
    if problems:
        return StatusEntry(name, WARN, "receiving; " + "; ".join(problems), values)
    return StatusEntry(name, OK, "receiving", values)


def node_entries(name: str, state: str, meter: RateMeter, bounds: InputBounds, counters: dict[str, int],
                 window: dict[str, int], latency: dict[str, LatencyWindow],
                 values: dict[str, str]) -> list[StatusEntry]:  # fmt: skip
    """A world-model node's two statuses: "<name>: input" (the watchdog, with the input
    counters "drop/*", "reset/*" and "context/*", lifetime and over the window) and "<name>: inference"
    (OK when the lifecycle state is active, latencies, every other counter and `values`)."""
    inputs = {key: count for key, count in counters.items() if key.startswith(INPUT_COUNTERS)}
    recent = {key: count for key, count in window.items() if key.startswith(INPUT_COUNTERS)}
    inference = latency_values(latency)
    inference.update({key: str(count) for key, count in sorted(counters.items()) if key not in inputs})
    inference.update(values, lifecycle_state=state)
    level, message = (OK, "active") if state == "active" else (WARN, f"lifecycle state {state}")
    return [watchdog_entry(f"{name}: input", meter, bounds, inputs, recent, active=state == "active"),
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
