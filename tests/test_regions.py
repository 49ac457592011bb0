"""The central square and margins of a frame (sora_ros.core.regions), and their PSNR."""

import math

import numpy as np
import pytest

from sora_ros.core.preprocess import fit_frame
from sora_ros.core.regions import centre_square, centred_window
from sora_ros.evaluation.metrics import FrameScores, region_psnr


def test_a_640x480_camera_keeps_columns_80_to_560_in_its_centre():
    assert centred_window(480, 640, (1, 1)) == (0, 80, 480, 480)
    assert centre_square((480, 640)) == (slice(0, 480), slice(80, 560))
    assert centre_square((640, 480)) == (slice(80, 560), slice(0, 480))  # portrait: rows


def test_a_square_frame_is_all_centre():
    assert centre_square((64, 64)) == (slice(0, 64), slice(0, 64))
    # A square model input of a 4:3 camera is already its centre crop: nothing around it was scored.
    assert centre_square((64, 64), (480, 640)) == (slice(0, 64), slice(0, 64))


def test_the_square_follows_the_camera_into_a_fitted_frame():
    """A 4:3 model input shows the whole camera; a 5:3 one (16:9 camera) a centred 1800 of 1920 columns."""
    assert centre_square((48, 64), (480, 640)) == (slice(0, 48), slice(8, 56))
    assert centre_square((48, 80), (1080, 1920)) == (slice(0, 48), slice(16, 64))
    # A 1.6 camera fitted to 5:3 loses rows, not columns: the square keeps its camera width (50 px, not 48).
    assert centre_square((48, 80), (1000, 1600)) == (slice(0, 48), slice(15, 65))


def test_fit_frame_crops_the_window_the_regions_assume():
    camera = np.zeros((480, 640, 3), np.uint8)
    camera[:, 80:560] = 255  # the camera's central square white, its margins black
    fitted = fit_frame(camera, (48, 64))
    rows, cols = centre_square((48, 64), (480, 640))
    assert (fitted[rows, cols] == 255).all()
    outside = np.ones((48, 64), bool)
    outside[rows, cols] = False
    assert (fitted[outside] == 0).all() and outside.any()


def test_error_only_in_the_margins_leaves_the_centre_perfect():
    target = np.full((12, 16, 3), 100, np.uint8)
    predicted = target.copy()
    predicted[:, :2] += 10  # the left margin of a 4:3 frame: columns 0..2 of 16
    predicted[:, 14:] += 10
    centre, margin = region_psnr(predicted, target, centre_square((12, 16)))
    assert centre == math.inf
    assert margin == pytest.approx(20 * math.log10(25.5))
    scores = FrameScores.of(predicted, target, target)
    assert (scores.centre_psnr, scores.margin_psnr) == (centre, margin)
    assert math.isfinite(scores.psnr) and scores.psnr > margin  # the whole frame dilutes the error


def test_error_in_the_centre_shows_in_the_centre_only():
    target = np.full((12, 16, 3), 100, np.uint8)
    predicted = target.copy()
    predicted[:, 2:14] += 10
    centre, margin = region_psnr(predicted, target, centre_square((12, 16)))
    assert centre == pytest.approx(20 * math.log10(25.5)) and margin == math.inf


def test_a_square_frame_has_no_margin_psnr():
    target = np.full((8, 8, 3), 100, np.uint8)
    centre, margin = region_psnr(target + 10, target, centre_square((8, 8)))
    assert margin is None and centre == pytest.approx(20 * math.log10(25.5))
