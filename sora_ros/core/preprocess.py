"""Fit camera frames to the model's input size, the same way everywhere (training, evaluation, nodes)."""

from __future__ import annotations

import cv2
import numpy as np


def fit_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect ratio of `size`, then resize (area filter).

    Cropping rather than squashing keeps shapes undistorted, so a model sees a
    640x480 camera and its 176x144 footage alike.

    Args:
        rgb: uint8 (H0, W0, 3) RGB.
        size: (H, W) of the model input.

    Returns:
        uint8 (H, W, 3) RGB; `rgb` itself when it already has that size.
    """
    height, width = size
    source_h, source_w = rgb.shape[:2]
    if (source_h, source_w) == (height, width):
        return rgb
    # Largest window of the target aspect ratio that fits, centred.
    crop_h = min(source_h, round(source_w * height / width))
    crop_w = min(source_w, round(source_h * width / height))
    top, left = (source_h - crop_h) // 2, (source_w - crop_w) // 2
    window = rgb[top : top + crop_h, left : left + crop_w]
    return cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA)
