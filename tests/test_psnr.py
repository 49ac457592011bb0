"""The one PSNR (sora_ros/core/psnr.py), with values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sora_ros.core.psnr import PSNR_CAP_DB, psnr_from_mse


def test_psnr_of_hand_values_and_of_arrays():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert psnr_from_mse(1.0) == 0.0
    np.testing.assert_allclose(psnr_from_mse(np.array([0.1, 0.001])), [10.0, 30.0])


def test_identical_frames_are_infinite_unless_capped_and_nan_stays_nan():
    assert psnr_from_mse(0.0) == math.inf
    assert psnr_from_mse(0.0, capped=True) == PSNR_CAP_DB
    assert psnr_from_mse(1e-12, capped=True) == PSNR_CAP_DB  # below MSE 1e-10: capped too
    assert math.isnan(psnr_from_mse(math.nan)) and math.isnan(psnr_from_mse(math.nan, capped=True))
    np.testing.assert_array_equal(psnr_from_mse(np.array([0.0, 0.01]), capped=True), [PSNR_CAP_DB, 20.0])
