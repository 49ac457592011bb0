"""rclpy's MultiThreadedExecutor without its busy loop (rclpy issue 1452).

rclpy up to 10.0.3 (Kilted's wheels are 9.1.x) re-yields a callback that was handed to the
thread pool but has not started yet, and returns from the wait at once while one exists. So
from each hand-off until a worker starts the callback, the spinning thread loops in Python and
holds the GIL that the worker needs to start: measured with `sora-ros bench nodes
--camera-size 640x480`, the world_model node's spin thread took a whole core (about 1,300 loops a
second for about 15 callbacks) and the rollout thread ran at half speed. Here each hand-off
waits until a worker has started the callback, so the spin thread waits for new work instead.
Two cases still re-hand a task, bounded: every worker busy (once per HANDOFF_WAIT_S) and a
coroutine callback that awaits (once per resumption by a worker). rclpy 10.0.4 fixes the loop
itself (rclpy pull request 1547).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from rclpy.executors import MultiThreadedExecutor

# Longest wait for a worker to start a handed-off callback: every worker may be busy (long
# ~/rollout calls); the spin thread then goes on after this, and may loop until one is free.
HANDOFF_WAIT_S = 0.05


class _HandOffPool(ThreadPoolExecutor):
    """A thread pool whose `submit` returns once a worker has started the call (or after HANDOFF_WAIT_S)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        started = threading.Event()

        def run():
            started.set()
            return fn(*args, **kwargs)

        future = super().submit(run)
        started.wait(HANDOFF_WAIT_S)
        return future


class HandOffExecutor(MultiThreadedExecutor):
    """MultiThreadedExecutor whose spin thread waits for each hand-off (see the module docstring).

    Args:
        num_threads: worker threads (at least 2).
        context: the rclpy context (None: the default one).
    """

    def __init__(self, num_threads: int, *, context=None) -> None:
        super().__init__(num_threads=num_threads, context=context)
        self._executor.shutdown(wait=False)  # rclpy's pool, never used: replaced by one that waits
        self._executor = _HandOffPool(num_threads)
