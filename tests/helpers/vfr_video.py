"""A variable-frame-rate MP4 for tests: OpenCV writes a constant-rate MPEG-4 file (it has no
per-frame timestamps to give), then its sample-timing table (ISO BMFF `stts`) is rewritten to the
frame durations wanted. OpenCV puts the `moov` box after the media data, so growing it moves no
sample: only the sizes of the boxes around `stts` and the track's durations change."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts")


def _boxes(data: bytearray, start: int, end: int, path: tuple[bytes, ...] = ()):
    """Yield (path of box types, offset, size) for every box, depth first."""
    offset = start
    while offset < end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        yield (*path, kind), offset, size
        if kind in _CONTAINERS:
            yield from _boxes(data, offset + 8, offset + size, (*path, kind))
        offset += size


def write_vfr_mp4(path: Path, durations_s: list[float], size: tuple[int, int] = (48, 64)) -> list[float]:
    """Write len(durations_s) frames, frame k (grey level 8 k) shown for durations_s[k] seconds.

    Returns:
        Each frame's presentation time in seconds (0 for the first).
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (size[1], size[0]))
    for k in range(len(durations_s)):
        writer.write(np.full((*size, 3), 8 * k % 256, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    found = {kinds: (offset, box_size) for kinds, offset, box_size in _boxes(data, 0, len(data))}
    (moov_offset, _), = [v for k, v in found.items() if k == (b"moov",)]
    assert moov_offset > next(v[0] for k, v in found.items() if k == (b"mdat",)), "moov before mdat"
    trak = (b"moov", b"trak", b"mdia")
    media_scale = struct.unpack_from(">I", data, found[(*trak, b"mdhd")][0] + 20)[0]
    movie_scale = struct.unpack_from(">I", data, found[(b"moov", b"mvhd")][0] + 20)[0]
    ticks = [round(d * media_scale) for d in durations_s]
    runs: list[list[int]] = []  # [count, delta] of equal durations in a row
    for tick in ticks:
        if runs and runs[-1][1] == tick:
            runs[-1][0] += 1
        else:
            runs.append([1, tick])
    stts = struct.pack(">I4sII", 16 + 8 * len(runs), b"stts", 0, len(runs)) + b"".join(struct.pack(">II", *r) for r in runs)
    stts_offset, stts_size = found[(*trak, b"minf", b"stbl", b"stts")]
    growth = len(stts) - stts_size
    total_media, total_movie = sum(ticks), round(sum(durations_s) * movie_scale)
    # Durations (version 0 boxes): mvhd and tkhd in movie ticks, mdhd in media ticks, the edit list in movie ticks.
    struct.pack_into(">I", data, found[(b"moov", b"mvhd")][0] + 24, total_movie)
    struct.pack_into(">I", data, found[(b"moov", b"trak", b"tkhd")][0] + 28, total_movie)
    struct.pack_into(">I", data, found[(*trak, b"mdhd")][0] + 24, total_media)
    if (b"moov", b"trak", b"edts", b"elst") in found:
        struct.pack_into(">I", data, found[(b"moov", b"trak", b"edts", b"elst")][0] + 16, total_movie)
    for kinds in [(b"moov",), (b"moov", b"trak"), trak, (*trak, b"minf"), (*trak, b"minf", b"stbl")]:
        offset, box_size = found[kinds]
        struct.pack_into(">I", data, offset, box_size + growth)
    data[stts_offset : stts_offset + stts_size] = stts
    path.write_bytes(bytes(data))
    return [float(t) for t in np.concatenate([[0.0], np.cumsum(durations_s)[:-1]])]
