"""Baselines a world model must beat: copy the last frame, and extrapolate optical flow.

Frames are uint8 (H, W, 3) RGB; each baseline maps the observed context to
predictions for horizons 1..H, returned as uint8 (H, H_img, W_img, 3).
"""

from __future__ import annotations

import cv2
import numpy as np


def copy_last(context: np.ndarray, horizon: int) -> np.ndarray:
    """Predict that nothing changes: the last observed frame, `horizon` times.

    Args:
        context: uint8 (K, H, W, 3) observed frames, oldest first.
        horizon: number of future steps.

    Returns:
        uint8 (horizon, H, W, 3).
    """
    return np.repeat(context[-1:], horizon, axis=0)


class FlowExtrapolation:
    """Assume every pixel keeps the motion it had between the last two frames.

    DIS optical flow from the last frame back to the one before gives, for each
    pixel, where it came from; the future frame at step k is the last frame
    warped backwards along that displacement k times (constant velocity).
    """

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self._flow = cv2.DISOpticalFlow_create(preset)

    def __call__(self, context: np.ndarray, horizon: int) -> np.ndarray:
        """Predict `horizon` frames from uint8 (K, H, W, 3) context (K >= 2).

        Returns:
            uint8 (horizon, H, W, 3).
        """
        if context.shape[0] < 2:
            raise ValueError(f"flow extrapolation needs at least 2 context frames, got {context.shape[0]}")
        previous, last = context[-2], context[-1]
        gray_last = cv2.cvtColor(last, cv2.COLOR_RGB2GRAY)
        gray_previous = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
        # back[y, x] = (dx, dy): the pixel at (x, y) of `last` was at (x + dx, y + dy) in
        # `previous`, so it moves by -back per step and the next frame samples
        # `last` at (x + dx, y + dy).
        back = self._flow.calc(gray_last, gray_previous, None)  # float32 (H, W, 2)
        height, width = gray_last.shape
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        map_x, map_y = grid_x + back[..., 0], grid_y + back[..., 1]
        predictions = np.empty((horizon, *last.shape), np.uint8)
        frame = last
        for k in range(horizon):
            frame = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            predictions[k] = frame
        return predictions
