"""The rollout context: the last K frame latents on the model's time grid, chosen by stamp.

Cameras rarely run at the model's rate (a 15 Hz camera, a 10 Hz model), so the
buffer keeps a short history of every encoded frame and builds the context by
picking, for each grid time newest - j * dt (j = K-1 ... 0), a frame by the rule
of `sora_ros.core.timegrid` (the nearest within dt/2). A context is only offered
when every grid time has a frame: after a pause of the camera, old and new
frames are never mixed. A frame lost on the way leaves a grid time without a
frame in every context that spans it (for up to (K-1) dt); meanwhile `newest_complete`
still offers the last complete one, up to K dt + dt/2 older than the newest frame.

Stamps are integer nanoseconds, 0 to MAX_STAMP_NS (others are dropped, changing nothing). A
stamp that is not newer than the newest one is dropped (duplicate or out of order); a stamp far
behind the newest one (a bag that loops, a clock reset) empties the buffer and starts afresh.

Legend: K context frames, C latent channels, h/w latent grid.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from sora_ros.core.timegrid import NO_FRAME, max_offset_ns, pick
from sora_ros.core.units import MAX_STAMP_NS, NS_PER_S

# Frames kept beyond the K * dt the context spans, for cameras faster than 1 / dt.
HISTORY_SLACK_FRAMES = 64


class Verdict(Enum):
    """What `ContextBuffer.add` did with a frame."""

    ACCEPTED = "accepted"
    DUPLICATE_STAMP = "duplicate_stamp"
    OUT_OF_ORDER_STAMP = "out_of_order_stamp"
    STAMP_OUT_OF_RANGE = "stamp_out_of_range"  # below 0 or past MAX_STAMP_NS
    RESET = "clock_jump_reset"  # accepted, after emptying the buffer


@dataclass(frozen=True)
class Context:
    """A context ready for a rollout.

    Attributes:
        latents: float32 (K, C, h, w), oldest first.
        stamps_ns: the stamps of the K frames used.
        newest_stamp_ns: the last observed frame, where predicted time starts.
        frame_id: of the newest frame.
        version: increases with every accepted frame (a rollout scheduler tells new from seen).
        receipt_s: monotonic time the newest frame was received (for latency).
    """

    latents: np.ndarray
    stamps_ns: tuple[int, ...]
    newest_stamp_ns: int
    frame_id: str
    version: int
    receipt_s: float


def stamp_in_range(stamp_ns: int) -> bool:
    """Whether a stamp lies from 0 to MAX_STAMP_NS (what a builtin_interfaces/Time can say)."""
    return 0 <= stamp_ns <= MAX_STAMP_NS


class StampRangeError(ValueError):
    """Predicted frames whose times would pass MAX_STAMP_NS: no builtin_interfaces/Time holds them."""


def future_stamps(origin_ns: int, horizon: int, dt_ns: int) -> tuple[int, ...]:
    """The times predicted frames 1..H stand for: origin + k * dt (integer nanoseconds).

    Raises:
        StampRangeError: the last one passes MAX_STAMP_NS. Refused, not clamped: a clamped stamp
            would say the wrong time, and one past it cannot be published (int32 seconds).
    """
    last_ns = origin_ns + horizon * dt_ns
    if last_ns > MAX_STAMP_NS:
        raise StampRangeError(f"predicted frame {horizon} would stand for {last_ns / NS_PER_S:.9f} s, past "
                              f"{MAX_STAMP_NS // NS_PER_S} s, the last time builtin_interfaces/Time holds (int32 "
                              f"seconds): the newest camera stamp is {(MAX_STAMP_NS - origin_ns) / NS_PER_S:.3f} s "
                              f"before it, less than horizon {horizon} x dt {dt_ns / NS_PER_S:g} s; no prediction")
    return tuple(origin_ns + k * dt_ns for k in range(1, horizon + 1))


@dataclass(frozen=True)
class _Frame:
    stamp_ns: int
    latent: np.ndarray  # (C, h, w)
    frame_id: str
    receipt_s: float


class ContextBuffer:
    """Encoded frames by stamp, and the latest context on the model's grid. Not thread-safe.

    Args:
        context_frames: K.
        dt_s: the model's step in seconds.
        jump_back_s: a stamp this far behind the newest one is a clock jump (reset), not a
            late frame (drop).
    """

    def __init__(self, context_frames: int, dt_s: float, jump_back_s: float) -> None:
        if context_frames < 1 or dt_s <= 0 or jump_back_s <= 0:
            raise ValueError(f"need context_frames >= 1, dt_s > 0, jump_back_s > 0; got "
                             f"{context_frames}, {dt_s}, {jump_back_s}")
        self.context_frames = context_frames
        self.dt_ns = round(dt_s * NS_PER_S)
        self.jump_back_ns = round(jump_back_s * NS_PER_S)
        # Stamps the oldest grid time can still pick, behind the newest.
        self._span_ns = (context_frames - 1) * self.dt_ns + max_offset_ns(self.dt_ns)
        self._fallback_lag_ns = self._span_ns + self.dt_ns  # how far behind `newest_complete` may end
        self._run_start_ns = 0
        self._after_gap = False  # the newest frame came more than the context's span after the one before
        self._frames: deque[_Frame] = deque(maxlen=context_frames + HISTORY_SLACK_FRAMES)
        self.version = 0
        self.resets = 0
        self._complete: Context | None = None  # the newest complete context since the last reset

    def reset(self) -> None:
        """Forget every frame (clock jumped, node deactivated)."""
        self._frames.clear()
        self._complete = None
        self.resets += 1

    def newest_stamp_ns(self) -> int | None:
        """The newest frame's stamp, or None when empty."""
        return self._frames[-1].stamp_ns if self._frames else None

    def newest_frame_id(self) -> str | None:
        """The newest frame's frame_id, or None when empty."""
        return self._frames[-1].frame_id if self._frames else None

    def newest_latent(self) -> np.ndarray | None:
        """The newest frame's latent (C, h, w), or None when empty."""
        return self._frames[-1].latent if self._frames else None

    def add(self, stamp_ns: int, latent: np.ndarray, frame_id: str = "", receipt_s: float = 0.0) -> Verdict:
        """Offer one encoded frame.

        Args:
            stamp_ns: the image's header stamp.
            latent: float32 (C, h, w).
            frame_id: the image's header frame_id.
            receipt_s: monotonic time the image was received.

        Returns:
            ACCEPTED or RESET when the frame was kept; otherwise why it was dropped (nothing changed).
        """
        if not stamp_in_range(stamp_ns):
            return Verdict.STAMP_OUT_OF_RANGE
        verdict = Verdict.ACCEPTED
        if self._frames:
            newest = self._frames[-1].stamp_ns
            if stamp_ns == newest:
                return Verdict.DUPLICATE_STAMP
            if stamp_ns < newest - self.jump_back_ns:
                self.reset()
                verdict = Verdict.RESET
            elif stamp_ns < newest:
                return Verdict.OUT_OF_ORDER_STAMP
        if not self._frames:
            self._run_start_ns, self._after_gap = stamp_ns, False  # the first frame since start or the last reset
        else:
            # A gap no grid time can bridge, after frames closer together: the camera paused and a new run
            # starts (a camera slower than that has such a gap before every frame: it is off the grid).
            gap = stamp_ns - self._frames[-1].stamp_ns > self._span_ns
            if gap and not self._after_gap:
                self._run_start_ns = stamp_ns
            self._after_gap = gap
        self._frames.append(_Frame(stamp_ns, latent, frame_id, receipt_s))
        while self._frames[0].stamp_ns < stamp_ns - self._span_ns:
            self._frames.popleft()  # older than any grid time can use
        self.version += 1
        self._complete = self._context() or self._complete
        return verdict

    def off_grid(self) -> bool:
        """Whether the stream has run (K - 1) dt since start, the last reset or the end of a pause (a
        gap longer than the context's span after frames closer together) and still makes no context:
        some grid time has no frame within dt/2 (a camera slower than 1/dt, or irregular stamps). False
        while the stream has simply not run that long yet."""
        if not self._frames:
            return False
        spans = self._frames[-1].stamp_ns - self._run_start_ns >= (self.context_frames - 1) * self.dt_ns
        return spans and self.latest() is None

    def latest(self) -> Context | None:
        """The context ending at the newest frame, or None while the grid is not covered
        (fewer than K frames since start, a reset, or a gap in the camera stream)."""
        complete = self._complete
        return complete if complete is not None and complete.version == self.version else None

    def newest_complete(self) -> Context | None:
        """`latest()`, or while the newest frame's grid has a gap left by a frame lost on the
        way, the context an earlier frame completed: older, its stamps say by how much. None
        before the first since start or the last reset, and when that one ends more than
        K dt + dt/2 before the newest frame (the longest one lost frame at the model's rate or
        faster stalls the grid): then the camera has stalled or runs off the grid, not lost a frame."""
        complete = self._complete
        if complete is None or self._frames[-1].stamp_ns - complete.newest_stamp_ns > self._fallback_lag_ns:
            return None
        return complete

    def _context(self) -> Context | None:
        """The context ending at the newest frame, or None where a grid time has no frame."""
        newest = self._frames[-1]
        stamps = np.array([f.stamp_ns for f in self._frames], np.int64)  # (N,) increasing
        grid = newest.stamp_ns - np.arange(self.context_frames - 1, -1, -1) * self.dt_ns  # (K,) oldest first
        picks = pick(stamps, grid, self.dt_ns)  # (K,)
        if np.any(picks == NO_FRAME):
            return None
        latents = np.stack([self._frames[i].latent for i in picks])  # (K, C, h, w)
        return Context(latents, tuple(int(stamps[i]) for i in picks), newest.stamp_ns, newest.frame_id,
                       self.version, newest.receipt_s)
