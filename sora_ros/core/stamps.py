"""Whether a stream's header stamps can be believed, or its receive times must stand in.

Aligning frames and commands by header stamp is right when the stamps say when things
happened. Some publishers do not fill them: `ros2 topic pub` and several teleop tools send
TwistStamped with stamp 0, drivers stamp every image with the same time, a machine without
its clock set stamps in 1970. Such a stream, aligned by stamp, gives every frame the wrong
command without any error. Every bag reader applies this one check to each stamped stream
and, when it fails, aligns that stream by the bag's receive times and says so.

The check, over a stream's (header stamp, receive time) pairs in integer nanoseconds:
  - any stamp is zero while its receive time is not near zero: an unset stamp (a bag written
    in its own time from 0, as simulations and converted videos are, has both at 0);
  - two or more stamps, all equal: a constant stamp;
  - the median |stamp - receive time| exceeds RECEIVE_TOLERANCE_NS: stamps from another clock
    (sim time recorded against the wall clock, an unset clock), not comparable with the
    receive times of the bag's other topics.

Believable stamps can still be out of order: `stamp_order_problem` counts the steps back,
duplicates and gaps that the clip readers drop frames or restart clips at (sora_ros.bag.clips),
for `sora-ros bag info` to warn of.
"""

from __future__ import annotations

import numpy as np

from sora_ros.core.units import NS_PER_MS, NS_PER_S

# A stamp further than this from its receive time (median over the stream) is on another
# clock. Transport and recording delays are milliseconds; 1 s is far beyond them and
# well under the offsets of a wrong clock (seconds to decades).
RECEIVE_TOLERANCE_NS = NS_PER_S
# An interval longer than this many median intervals of its stream is a gap: at least one message
# is missing (one frame missing from a steady stream doubles its interval); on a grid of step dt,
# frames 1.5 dt apart leave a grid time with no frame within dt/2 (sora_ros.core.timegrid).
GAP_INTERVALS = 1.5


def stamp_problem(header_ns: np.ndarray, receive_ns: np.ndarray) -> str | None:
    """Why a stream's header stamps cannot be believed, or None when they can.

    Args:
        header_ns: int64 (N,) header stamps, in receive order.
        receive_ns: int64 (N,) the bag's receive (log) times of the same messages.

    Returns:
        A phrase naming the problem with its count, e.g. "40 of 40 header stamps are zero", or None.

    Raises:
        ValueError: the two arrays differ in shape.
    """
    header = np.asarray(header_ns, np.int64)
    receive = np.asarray(receive_ns, np.int64)
    if header.shape != receive.shape:
        raise ValueError(f"header stamps {header.shape} and receive times {receive.shape} differ in shape")
    count = header.size
    if count == 0:
        return None
    zero = int(np.count_nonzero((header == 0) & (np.abs(receive) > RECEIVE_TOLERANCE_NS)))
    if zero:
        return f"{zero} of {count} header stamps are zero"
    if count >= 2 and np.all(header == header[0]):
        return f"all {count} header stamps are the same ({int(header[0])} ns)"
    offset_ns = float(np.median(np.abs(header - receive)))
    if offset_ns > RECEIVE_TOLERANCE_NS:
        return (f"header stamps lie a median {offset_ns / NS_PER_S:.3f} s from their receive times "
                f"(over {RECEIVE_TOLERANCE_NS / NS_PER_S:g} s: another clock)")
    return None


def stamp_order_problem(header_ns: np.ndarray, count_gaps: bool = True) -> str | None:
    """How often a stream's header stamps, in receive order, step back, repeat or leave a gap.

    Counted as the clip readers meet them (sora_ros.bag.clips): each stamp is compared with the
    last one that moved forward, so one frame out of order is one step back, not also a gap; a
    step back by more than the median interval (a clock reset, a bag loop) starts over from there.

    Args:
        header_ns: int64 (N,) header stamps, in receive order.
        count_gaps: False for a stream whose messages need not come at a steady rate (commands,
            odometry: the latest one holds), where a long interval is no missing message.

    Returns:
        A phrase with the counts, e.g. "of 40 header stamps, 1 step back, 2 duplicates, 1 gap
        (over 1.5x the median interval, 100.0 ms)", or None when there are none.
    """
    header = np.asarray(header_ns, np.int64)
    intervals = np.diff(header)  # (N - 1,)
    forward = intervals[intervals > 0]
    median_ns = float(np.median(forward)) if forward.size else 0.0
    back = duplicates = gaps = 0
    last = None
    for stamp in header.tolist():
        if last is not None and stamp <= last:
            back += stamp < last
            duplicates += stamp == last
            if last - stamp < median_ns:  # out of order or repeated: dropped, `last` stays
                continue
        elif last is not None and count_gaps:
            gaps += stamp - last > GAP_INTERVALS * median_ns
        last = stamp
    counts = [(back, "step back", "steps back"), (duplicates, "duplicate", "duplicates"), (gaps, "gap", "gaps")]
    found = [f"{count} {plural if count > 1 else one}" for count, one, plural in counts if count]
    if not found:
        return None
    over = f" (over {GAP_INTERVALS:g}x the median interval, {median_ns / NS_PER_MS:.1f} ms)" if gaps else ""
    return f"of {header.size} header stamps, {', '.join(found)}{over}"
