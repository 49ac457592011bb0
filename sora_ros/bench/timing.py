"""Wall-clock timing for the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def median_ms(func: Callable[[], object], repeats: int) -> float:
    """Median wall time of `func` in milliseconds, after one warm-up call."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))
