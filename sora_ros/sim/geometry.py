"""2D geometry of the room's floor plan: clearance and range queries. Pure numpy.

Every solid thing has a footprint on the floor: a disc (x, y, radius) for what is round
(cylinders, spheres, balls, the meshes, the other robot) or an oriented rectangle (x, y, yaw,
half_x, half_y) for a box, its own shape. Walls bound the square [-half, half]^2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Footprints(NamedTuple):
    """What is solid on the floor, m and rad.

    Attributes:
        circles: float (N, 3) rows of (x, y, radius).
        boxes: float (M, 5) rows of (x, y, yaw, half_x, half_y): a rectangle of those half sizes
            along its own axes, turned by yaw about its centre.
    """

    circles: np.ndarray
    boxes: np.ndarray


def _box_frame(x: np.ndarray | float, y: np.ndarray | float, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y) in each box's own frame: float (..., M) each."""
    cos, sin = np.cos(boxes[:, 2]), np.sin(boxes[:, 2])
    dx, dy = np.asarray(x)[..., None] - boxes[:, 0], np.asarray(y)[..., None] - boxes[:, 1]
    return cos * dx + sin * dy, -sin * dx + cos * dy


def clearance(x: float, y: float, radius: float, half: float, footprints: Footprints) -> float:
    """Smallest gap between a disc of `radius` at (x, y) and the walls or any footprint, m
    (negative: overlap)."""
    gap = half - radius - max(abs(x), abs(y))
    circles, boxes = footprints
    if len(circles):
        gap = min(gap, float((np.hypot(circles[:, 0] - x, circles[:, 1] - y) - circles[:, 2] - radius).min()))
    if len(boxes):
        # Signed distance to a rectangle: Euclidean outside it, minus the depth to its nearest side inside.
        lx, ly = _box_frame(x, y, boxes)  # (M,)
        qx, qy = np.abs(lx) - boxes[:, 3], np.abs(ly) - boxes[:, 4]
        signed = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        gap = min(gap, float((signed - radius).min()))
    return gap


def ray_ranges(x: float, y: float, angles: np.ndarray, half: float, footprints: Footprints,
               max_range: float) -> np.ndarray:
    """Distance along each ray from (x, y) to the first wall or footprint (0 from inside one).

    Args:
        angles: float (K,) world-frame ray directions, rad.
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
    circles, boxes = footprints
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
    if len(boxes):
        # Slab test in each box's frame: the ray is inside the box between the latest entry into
        # and the earliest exit from its two slabs |local x| <= half_x, |local y| <= half_y.
        ox, oy = _box_frame(x, y, boxes)  # (M,)
        cos, sin = np.cos(boxes[:, 2]), np.sin(boxes[:, 2])
        ux = cos * dx[:, None] + sin * dy[:, None]  # (K, M) the ray's direction in the box frame
        uy = -sin * dx[:, None] + cos * dy[:, None]
        entry, exit_ = np.full(ux.shape, -np.inf), np.full(ux.shape, np.inf)
        for origin, direction, size in ((ox, ux, boxes[:, 3]), (oy, uy, boxes[:, 4])):
            # A ray parallel to a slab is in it for every t, or never.
            parallel = np.abs(direction) < 1e-12
            safe = np.where(parallel, 1.0, direction)
            t1, t2 = (-size - origin) / safe, (size - origin) / safe  # (K, M)
            inside = np.abs(origin) <= size  # (M,)
            entry = np.maximum(entry, np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2)))
            exit_ = np.minimum(exit_, np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2)))
        hit = np.where((entry <= exit_) & (exit_ >= 0), np.maximum(entry, 0.0), np.inf)
        ranges = np.minimum(ranges, hit.min(axis=1))
    return np.maximum(ranges, 0.0)
