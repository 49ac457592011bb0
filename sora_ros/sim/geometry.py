"""2D range queries (ray casting) in a square room of circular footprints.

Every solid thing in the world has a circular footprint (x, y, radius) on the
floor; walls bound the square [-half, half]^2. Pure numpy.
"""

from __future__ import annotations

import numpy as np


def ray_ranges(
    x: float, y: float, angles: np.ndarray, half: float, circles: np.ndarray, max_range: float
) -> np.ndarray:
    """Distance along each ray from (x, y) to the first wall or footprint.

    Args:
        angles: float (K,) world-frame ray directions, rad.
        circles: float (N, 3) rows of (x, y, radius).
        max_range: cap on every distance, m.

    Returns:
        float (K,) distances in m.
    """
    dx, dy = np.cos(angles), np.sin(angles)  # (K,)
    # Walls: the ray leaves the square where it first meets x = +-half or y = +-half.
    with np.errstate(divide="ignore"):
        tx = np.where(dx > 0, (half - x) / dx, np.where(dx < 0, (-half - x) / dx, np.inf))
        ty = np.where(dy > 0, (half - y) / dy, np.where(dy < 0, (-half - y) / dy, np.inf))
    ranges = np.minimum(np.minimum(tx, ty), max_range)
    if len(circles):
        # Ray o + t d meets circle |p - c| = r where t^2 - 2 t (d.(c - o)) + |c - o|^2 - r^2 = 0.
        ox, oy = circles[:, 0] - x, circles[:, 1] - y  # (N,)
        along = dx[:, None] * ox[None, :] + dy[:, None] * oy[None, :]  # (K, N)
        disc = along**2 - (ox**2 + oy**2 - circles[:, 2] ** 2)[None, :]
        root = np.sqrt(np.maximum(disc, 0))
        near, far = along - root, along + root  # (K, N) entry and exit distances
        hit = np.where(near >= 0, near, np.where(far >= 0, 0.0, np.inf))  # started inside: 0
        hit = np.where(disc >= 0, hit, np.inf)
        ranges = np.minimum(ranges, hit.min(axis=1))
    return np.maximum(ranges, 0.0)
