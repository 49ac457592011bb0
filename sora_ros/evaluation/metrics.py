"""Per-frame image-quality metrics and their aggregation.

Frames are uint8 (H, W, 3) RGB in [0, 255]; metrics are computed on [0, 1]
floats. Each metric also has a "moving" variant restricted to the pixels that
change between the last observed frame and the true future frame: on a static
background, copy-last-frame is nearly perfect and would flatter any method.
PSNR is also measured on the camera's central square (what a square model saw)
and on the margins around it (what it cropped away), see sora_ros.core.regions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sora_ros.core.psnr import PSNR_CAP_DB, psnr_from_mse
from sora_ros.core.regions import centre_square

# A pixel "moves" when some channel changes by more than this between the last
# observed and the true future frame (8/255: above JPEG and render noise).
MOVING_THRESHOLD = 8
# SSIM as in Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, K1, K2.
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 1.0) ** 2
_SSIM_C2 = (0.03 * 1.0) ** 2
# Two-sided 95% normal quantile for confidence intervals of the mean.
_Z95 = 1.959963984540054


def _to_unit(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f"expected uint8 (H, W, C) frames, got {frame.dtype} {frame.shape}")
    return frame.astype(np.float32) / 255.0


def moving_mask(last_observed: np.ndarray, future: np.ndarray) -> np.ndarray:
    """bool (H, W): pixels whose value changes by more than MOVING_THRESHOLD in any channel."""
    change = np.abs(future.astype(np.int16) - last_observed.astype(np.int16)).max(axis=2)
    return change > MOVING_THRESHOLD


def mse(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error on [0, 1] values, over all pixels or the True pixels of `mask`.

    Returns NaN when the mask selects no pixel (nothing moved: no score).
    """
    error = ((_to_unit(predicted) - _to_unit(target)) ** 2).mean(axis=2)  # (H, W)
    if mask is None:
        return float(error.mean())
    return float(error[mask].mean()) if mask.any() else math.nan


def ssim_map(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """float32 (H, W): local SSIM, averaged over channels."""
    x, y = _to_unit(predicted), _to_unit(target)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return (numerator / denominator).mean(axis=2)


def ssim(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over all pixels or the True pixels of `mask` (NaN if it selects none)."""
    local = ssim_map(predicted, target)
    if mask is None:
        return float(local.mean())
    return float(local[mask].mean()) if mask.any() else math.nan


def region_psnr(predicted: np.ndarray, target: np.ndarray, centre: tuple[slice, slice]) -> tuple[float, float | None]:
    """PSNR in dB over the central square and over the margins around it.

    Args:
        predicted, target: uint8 (H, W, 3) frames.
        centre: (rows, cols) of the central square in them (`sora_ros.core.regions.centre_square`).

    Returns:
        (centre PSNR, margin PSNR), each from the MSE over its region's pixels, +inf where that
        region is predicted exactly; the margin PSNR is None when the square spans the frame.
    """
    margins = np.ones(target.shape[:2], bool)
    margins[centre] = False
    centre_psnr = psnr_from_mse(mse(predicted[centre], target[centre]))
    return centre_psnr, psnr_from_mse(mse(predicted, target, margins)) if margins.any() else None


@dataclass(frozen=True)
class FrameScores:
    """Every metric of one predicted frame against the true frame (margin_psnr None: no margins)."""

    mse: float
    psnr: float
    ssim: float
    moving_mse: float
    moving_psnr: float
    moving_ssim: float
    centre_psnr: float
    margin_psnr: float | None

    @classmethod
    def of(cls, predicted: np.ndarray, target: np.ndarray, last_observed: np.ndarray,
           centre: tuple[slice, slice] | None = None) -> FrameScores:  # fmt: skip
        """Score `predicted` against `target`; `last_observed` defines the moving pixels, `centre`
        the (rows, cols) of the camera's central square in these frames (None: the frames are the
        camera's own, their central square is the camera's)."""
        mask = moving_mask(last_observed, target)
        full_mse, moving = mse(predicted, target), mse(predicted, target, mask)
        centre = centre_square(target.shape[:2]) if centre is None else centre
        centre_psnr, margin_psnr = region_psnr(predicted, target, centre)
        return cls(
            mse=full_mse,
            psnr=psnr_from_mse(full_mse),
            ssim=ssim(predicted, target),
            moving_mse=moving,
            moving_psnr=psnr_from_mse(moving),
            moving_ssim=ssim(predicted, target, mask),
            centre_psnr=centre_psnr,
            margin_psnr=margin_psnr,
        )


def summarize(values: list[float] | np.ndarray) -> dict[str, float | int]:
    """Mean and 95% confidence interval of per-frame values.

    NaN values (no moving pixel) are left out and counted. +inf values
    (identical frames) are counted and averaged as PSNR_CAP_DB, so that every
    method is averaged over the same frames (dropping them would drop exactly
    the frames where copy-last is perfect); the mean is +inf only when every
    scored frame was identical.

    Returns:
        {"mean", "ci95" (half-width), "n" (values averaged), "n_inf", "n_nan"}.
    """
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    inf = np.isposinf(values)
    scored = values[~nan]
    n_inf, n_nan = int(inf.sum()), int(nan.sum())
    if scored.size == 0 or n_inf == scored.size:
        mean = math.inf if n_inf else math.nan
        return {"mean": mean, "ci95": math.nan, "n": int(scored.size), "n_inf": n_inf, "n_nan": n_nan}
    scored = np.minimum(scored, PSNR_CAP_DB)
    spread = scored.std(ddof=1) if scored.size > 1 else math.nan
    return {
        "mean": float(scored.mean()),
        "ci95": float(_Z95 * spread / math.sqrt(scored.size)),
        "n": int(scored.size),
        "n_inf": n_inf,
        "n_nan": n_nan,
    }


def skill_score(model_mse: float, baseline_mse: float) -> float:
    """1 - MSE(model) / MSE(baseline): > 0 when the model beats the baseline, 1 is perfect."""
    if baseline_mse == 0.0:
        return 0.0 if model_mse == 0.0 else -math.inf
    return 1.0 - model_mse / baseline_mse
