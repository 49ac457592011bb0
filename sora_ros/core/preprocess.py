"""Fit camera frames to the model's input size, the same way everywhere (training, evaluation, nodes)."""

from __future__ import annotations

import cv2
import numpy as np


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
    top, left, crop_h, crop_w = crop_window(rgb.shape[:2], size)
    window = rgb[top : top + crop_h, left : left + crop_w]
    return cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA)


def crop_window(source_hw: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) in source pixels of the largest centred window of `size`'s aspect ratio."""
    source_h, source_w = source_hw
    height, width = size
    crop_h = min(source_h, round(source_w * height / width))
    crop_w = min(source_w, round(source_h * width / height))
    return (source_h - crop_h) // 2, (source_w - crop_w) // 2, crop_h, crop_w
