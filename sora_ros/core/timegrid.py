"""The one rule that puts a stamped frame stream on the model's time grid.

Bags, video files and the live camera all run at their own rate; the model steps
at dt. Every place that picks frames for the model (training and evaluation clips
from bags and videos, the live rollout context, the demo's scoring) applies this
rule, so a source gives the same frames whichever way it is read.

The rule. Grid times are anchor + k * dt. Stamps and dt are integer nanoseconds
(video frame k at f frames per second is stamped round(k * NS_PER_S / f)).

1. A frame belongs to the grid time nearest its stamp: grid time g owns the
   stamps s with g - dt/2 < s <= g + dt/2. A stamp exactly halfway between two
   grid times belongs to the earlier one. So no frame serves two grid times, and
   none lies more than dt/2 from the grid time it represents.
2. A grid time is represented by the nearest frame it owns; of two frames
   equally near (one before, one after), the earlier.
3. A grid time that owns no frame is a gap: no clip or context spans it.

Anchors: offline (bags, videos) the first frame of a run is grid time 0 and a
gap ends the run, the next frame anchoring a new grid; live, the newest frame
anchors the grid times newest - j * dt of the rollout context. The grid never
follows the frames: a camera slower than 1 / dt gives gaps, not clips whose
frames are further apart than dt.

Examples at dt = 100 ms: a 30 Hz stream keeps every third frame; a 15 Hz stream
(0, 66.7, 133.3, 200 ms, ...) keeps 0, 66.7 (the tie at 100 ms goes to the
earlier frame), 200, 266.7, 400 ms, ...; a 5 Hz stream has a gap at every other
grid time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

Item = TypeVar("Item")

# Index `pick` returns for a grid time that owns no frame.
NO_FRAME = -1


def max_offset_ns(dt_ns: int) -> int:
    """The farthest a frame may lie from the grid time it represents: dt // 2 nanoseconds."""
    return dt_ns // 2


def _owns(grid_ns: np.ndarray | int, stamp_ns: np.ndarray | int, dt_ns: int) -> np.ndarray | bool:
    """Whether grid time g owns stamp s: g - dt/2 < s <= g + dt/2, in integers (no halving)."""
    twice_offset = 2 * (np.asarray(stamp_ns, np.int64) - grid_ns)
    return (-dt_ns < twice_offset) & (twice_offset <= dt_ns)


def _cell(stamp_ns: int, anchor_ns: int, dt_ns: int) -> int:
    """k of the grid time anchor + k * dt that owns `stamp_ns` (halfway: the earlier k)."""
    # k = ceil((2 (s - a) - dt) / (2 dt)), in integers.
    return -((dt_ns - 2 * (stamp_ns - anchor_ns)) // (2 * dt_ns))


def pick(stamps_ns: np.ndarray, grid_ns: np.ndarray, dt_ns: int) -> np.ndarray:
    """The frame that represents each grid time, by the rule in the module docstring.

    Args:
        stamps_ns: int64 (N,) frame stamps, strictly increasing.
        grid_ns: int64 (G,) grid times, any order.
        dt_ns: the grid step, > 0.

    Returns:
        int64 (G,): the index into `stamps_ns` of each grid time's frame, NO_FRAME where it is a gap.

    Raises:
        ValueError: dt_ns <= 0.
    """
    if dt_ns <= 0:
        raise ValueError(f"dt_ns must be positive, got {dt_ns}")
    stamps = np.asarray(stamps_ns, np.int64)
    grid = np.asarray(grid_ns, np.int64)
    if stamps.size == 0:
        return np.full(grid.shape, NO_FRAME, np.int64)
    after = np.searchsorted(stamps, grid, side="left")  # (G,) first stamp >= g
    before = after - 1  # (G,) last stamp < g
    after_ok = after < stamps.size
    before_ok = before >= 0
    after_stamp = stamps[np.minimum(after, stamps.size - 1)]
    before_stamp = stamps[np.maximum(before, 0)]
    after_ok &= _owns(grid, after_stamp, dt_ns)
    before_ok &= _owns(grid, before_stamp, dt_ns)
    # The earlier frame wins a tie; only the two stamps around g can be the nearest.
    take_before = before_ok & (~after_ok | (grid - before_stamp <= after_stamp - grid))
    return np.where(take_before, before, np.where(after_ok, after, NO_FRAME))


@dataclass(frozen=True)
class Gap:
    """A grid time that owns no frame: the run before it ends there."""

    grid_ns: int  # the grid time left without a frame
    next_ns: int  # the frame after it, which anchors the next run


class GridResampler(Generic[Item]):
    """The rule for a stream read once, in stamp order (bags, videos), one frame at a time.

    Each run is anchored at its first frame. `push` hands back what became final:
    represented frames as (stamp_ns, item) and `Gap`s, in stream order. At most one
    frame is held (the best so far for the current grid time).

    Args:
        dt_ns: the grid step, > 0.

    Raises:
        ValueError: dt_ns <= 0.
    """

    def __init__(self, dt_ns: int) -> None:
        if dt_ns <= 0:
            raise ValueError(f"dt_ns must be positive, got {dt_ns}")
        self.dt_ns = int(dt_ns)
        self._anchor_ns = 0
        self._cell = 0  # k of the grid time `_best` stands for
        self._best: tuple[int, Item] | None = None  # None: no run started

    def push(self, stamp_ns: int, item: Item) -> list[tuple[int, Item] | Gap]:
        """Offer the next frame; its stamp must be after the previous one's.

        Raises:
            ValueError: a stamp not after the previous one (the caller drops or restarts).
        """
        frame = (int(stamp_ns), item)
        if self._best is None:
            self._anchor_ns, self._cell, self._best = frame[0], 0, frame
            return []
        best = self._best
        if frame[0] <= best[0]:
            raise ValueError(f"stamps must increase: {frame[0]} ns after {best[0]} ns")
        cell = _cell(frame[0], self._anchor_ns, self.dt_ns)
        target = self._anchor_ns + cell * self.dt_ns
        if cell == self._cell:
            if abs(frame[0] - target) < abs(best[0] - target):  # a tie keeps the earlier
                self._best = frame
            return []
        if cell == self._cell + 1:
            self._cell, self._best = cell, frame
            return [best]
        missing = self._anchor_ns + (self._cell + 1) * self.dt_ns
        self._anchor_ns, self._cell, self._best = frame[0], 0, frame
        return [best, Gap(missing, frame[0])]

    def finish(self) -> list[tuple[int, Item]]:
        """End the run: hand back its last frame; the next `push` anchors a new run."""
        best, self._best = self._best, None
        return [] if best is None else [best]


def resample(frames: Iterable[tuple[int, Item]], dt_ns: int) -> Iterator[tuple[int, Item] | Gap]:
    """`GridResampler` over a whole stream with increasing stamps (a video file's frames)."""
    grid: GridResampler[Item] = GridResampler(dt_ns)
    for stamp_ns, item in frames:
        yield from grid.push(stamp_ns, item)
    yield from grid.finish()
