"""Fit camera frames to the model's input size, the same way everywhere (training, evaluation, nodes)."""

from __future__ import annotations

import cv2
import numpy as np

from sora_ros.core.regions import centred_window


def fit_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect ratio of `size`, then resize (area filter).

    Cropping rather than squashing keeps shapes undistorted. `size` comes from the model's patch
    grid (sora_ros.core.patch_grid), so only the sliver between the camera's aspect ratio and its
    token grid's is cropped.

    Args:
        rgb: uint8 (H0, W0, 3) RGB.
        size: (H, W) of the model input.

    Returns:
        uint8 (H, W, 3) RGB; `rgb` itself when it already has that size.
    """
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    top, left, crop_h, crop_w = centred_window(*rgb.shape[:2], size)
    window = rgb[top : top + crop_h, left : left + crop_w]
    return cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA)

