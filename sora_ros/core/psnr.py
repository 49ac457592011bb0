"""PSNR: the one definition that evaluation, the demo and training share.

PSNR = 10 log10(1 / MSE) dB, for an MSE measured on pixel values in [0, 1] (peak 1):
uint8 frames divided by 255, or model images in [-1, 1] with their MSE divided by 4.
Each caller measures the MSE its own way (numpy, torch) and converts it here.
"""

from __future__ import annotations

import numpy as np

# Identical frames (MSE 0) have infinite PSNR. Where PSNRs are averaged or written as
# JSON numbers (evaluation summaries, training logs), identical frames count as this
# instead: the PSNR of an MSE of 1e-10, far above any real prediction, and finite.
PSNR_CAP_DB = 100.0


def psnr_from_mse(mse: float | np.ndarray, *, capped: bool = False) -> float | np.ndarray:
    """PSNR in dB of mean squared errors measured on values in [0, 1].

    MSE 0 (identical frames) gives +inf: there is no error to measure, and a method that
    is exactly right (copy-last on a still scene) must be able to say so rather than
    score a made-up finite number; `capped` turns it into PSNR_CAP_DB for averages and logs.

    Args:
        mse: one MSE or an array of them, each >= 0; NaN (nothing to score) stays NaN.
        capped: return at most PSNR_CAP_DB (also for MSEs above 0 but below 1e-10).

    Returns:
        A float for a scalar `mse`, else a float64 array of its shape.
    """
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(1.0 / np.asarray(mse, np.float64))
    if capped:
        db = np.minimum(db, PSNR_CAP_DB)
    return float(db) if db.ndim == 0 else db
