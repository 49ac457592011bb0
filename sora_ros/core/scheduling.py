"""Hand-offs between the executor and the inference threads, bounded by construction.

`Workers` runs a node's inference loops on their own threads until stopped.
`InFlight` counts service calls in progress, so a lifecycle cleanup answers them before it
unloads the model and destroys their service.
`Turns` lets one user at a time run the dynamics, an urgent one (a live rollout) before
the others waiting (what-ifs, which take their turn frame by frame).
`LatestSlot` holds the newest camera frame for the encoder thread: a frame that
arrives before the previous one was taken replaces it (and is counted), so the
queue never grows. `RolloutGate` lets the rollout thread start when there is a
context it has not rolled out yet and at most `rate` times a second, so a new
frame is rolled out as soon as the rate allows rather than on a fixed tick; or,
on arrival, starting on the next frame rather than on one that came during the last rollout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Workers:
    """Loops on daemon threads; each loop runs while `running` is true and must wake often
    enough to notice a stop (e.g. wait on a LatestSlot or RolloutGate with a timeout)."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self._running.is_set()

    def start(self, loops: list[Callable[[], None]]) -> None:
        self._running.set()
        self._threads = [threading.Thread(target=loop, name=loop.__name__, daemon=True) for loop in loops]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask every loop to end and wait until they have (the caller wakes blocked waits)."""
        self._running.clear()
        for thread in self._threads:
            thread.join()
        self._threads.clear()


class InFlight:
    """Calls in progress (a service callback runs inside `call()`); `wait_idle` blocks until none is."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._count = 0

    @contextmanager
    def call(self) -> Iterator[None]:
        with self._condition:
            self._count += 1
        try:
            yield
        finally:
            with self._condition:
                self._count -= 1
                self._condition.notify_all()

    def wait_idle(self) -> None:
        """Until no call is in progress (each one is bounded: the request caps bound its work)."""
        with self._condition:
            self._condition.wait_for(lambda: self._count == 0)


class LatestSlot(Generic[Item]):
    """A one-item mailbox: `put` never blocks and overwrites; `take` waits for an item."""

    def __init__(self) -> None:
        self._item: Item | None = None
        self._condition = threading.Condition()
        self._closed = False
        self.superseded = 0  # items overwritten before anyone took them

    def put(self, item: Item) -> None:
        with self._condition:
            if self._item is not None:
                self.superseded += 1
            self._item = item
            self._condition.notify()

    def take(self, timeout_s: float) -> Item | None:
        """The newest item, removing it; None after `timeout_s` without one or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiter; later `take`s return at once."""
        with self._condition:
            self._closed = True
            self._item = None
            self._condition.notify_all()


# On arrival, a context that came during a rollout is rolled out after all when no newer one
# arrives within this many camera periods of the rollout's end (the camera paused or stopped).
ARRIVAL_GRACE_PERIODS = 1.5
# Weight of the newest interval in the running mean of the camera period.
PERIOD_SMOOTHING = 0.2


class RolloutGate:
    """Decides when the rollout thread starts the next rollout.

    Args:
        rate_hz: the most rollouts per second.
        on_arrival: hold back a context announced while a rollout runs, and start the next
            rollout on the next context to arrive instead, when one arrives within
            ARRIVAL_GRACE_PERIODS camera periods (a running mean of the intervals between
            announcements) of that rollout's end; else roll the held one out after all, so
            the last frame of a camera that stopped is still rolled out. When rollouts take
            longer than the camera period, this trades futures per second for
            camera-to-futures latency: no future is computed from a frame that waited for a
            whole rollout (README, "When a rollout starts"). The rate holds a context announced
            too early until it allows (skipping it instead would halve the rate whenever a
            frame arrives just before the rate allows).
    """

    def __init__(self, rate_hz: float, on_arrival: bool = False) -> None:
        self._condition = threading.Condition()
        self._rate_hz = rate_hz
        self._on_arrival = on_arrival
        self._version = 0  # newest context version announced
        self._served = 0  # version the last rollout used
        self._held = 0  # newest version announced while a rollout ran
        self._last_start = -float("inf")
        self._ended = -float("inf")  # when the last rollout ended
        self._running = False  # a rollout `wait` started has not come back to `wait` yet
        self._last_announced: float | None = None
        self._period_s: float | None = None  # running mean of the intervals between announcements
        self._closed = False

    def configure(self, rate_hz: float, on_arrival: bool) -> None:
        with self._condition:
            self._rate_hz, self._on_arrival = rate_hz, on_arrival
            self._condition.notify_all()

    def announce(self, version: int) -> None:
        """A new context (with this version) is available."""
        now = time.monotonic()
        with self._condition:
            if self._last_announced is not None:
                interval = now - self._last_announced
                self._period_s = interval if self._period_s is None else (
                    (1.0 - PERIOD_SMOOTHING) * self._period_s + PERIOD_SMOOTHING * interval)
            self._last_announced = now
            self._version = max(self._version, version)
            if self._running:
                self._held = self._version
            self._condition.notify_all()

    def wait(self, timeout_s: float) -> bool:
        """Block until a rollout should start (an unserved context, the rate allows and, on
        arrival, the context is not held back), then mark it started; the caller's previous
        rollout has ended. Returns False on timeout or once closed."""
        end = time.monotonic() + timeout_s
        with self._condition:
            if self._running:
                self._running, self._ended = False, time.monotonic()
            while not self._closed:
                now = time.monotonic()
                wake = end
                if self._version > self._served:
                    start_at = self._last_start + 1.0 / self._rate_hz
                    if self._on_arrival and self._version == self._held and self._period_s is not None:
                        start_at = max(start_at, self._ended + ARRIVAL_GRACE_PERIODS * self._period_s)
                    if now >= start_at:
                        self._served = self._version
                        self._last_start, self._running = now, True
                        return True
                    wake = min(end, start_at)
                if now >= end:
                    return False
                self._condition.wait(max(wake - now, 0.0))
            return False

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class Turns:
    """Mutual exclusion where an urgent holder goes first: `hold(urgent=True)` waits only for the
    current holder, `hold(urgent=False)` also lets every waiting urgent one go before it. A long
    job that takes one turn per step (a what-if's frames) thus delays an urgent one (a live
    rollout) by at most one step, not by the whole job."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._held = False
        self._urgent_waiting = 0

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        with self._condition:
            self._urgent_waiting += urgent
            try:
                self._condition.wait_for(lambda: not self._held and (urgent or not self._urgent_waiting))
            finally:
                self._urgent_waiting -= urgent
            self._held = True
        try:
            yield
        finally:
            with self._condition:
                self._held = False
                self._condition.notify_all()
