"""Camera geometry shared by the simulated robot's topics and bags."""

from __future__ import annotations

import math

import numpy as np


def pinhole_matrices(width: int, height: int, vertical_fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """CameraInfo K (3x3) and P (3x4), row-major flat float64, of an ideal pinhole
    camera: square pixels, principal point at the image centre, no distortion."""
    focal = 0.5 * height / math.tan(math.radians(vertical_fov_deg) / 2)
    cx, cy = 0.5 * width, 0.5 * height
    k = np.array([focal, 0, cx, 0, focal, cy, 0, 0, 1], np.float64)
    p = np.array([focal, 0, cx, 0, 0, focal, cy, 0, 0, 0, 1, 0], np.float64)
    return k, p
