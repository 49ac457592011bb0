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
"""

from __future__ import annotations

import numpy as np

from sora_ros.core.units import NS_PER_S

# A stamp further than this from its receive time (median over the stream) is on another
# clock. Transport and recording delays are milliseconds; 1 s is far beyond them and
# well under the offsets of a wrong clock (seconds to decades).
RECEIVE_TOLERANCE_NS = NS_PER_S


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
