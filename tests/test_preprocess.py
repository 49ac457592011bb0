import numpy as np

from sora_ros.core.preprocess import fit_frame


def test_fit_crops_the_centre_to_the_target_aspect():
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, 20:60] = 255  # the centre square is white, the sides black
    fitted = fit_frame(frame, (8, 8))
    assert fitted.shape == (8, 8, 3) and (fitted == 255).all()


def test_fit_keeps_wide_targets_wide():
    frame = np.zeros((60, 60, 3), np.uint8)
    frame[:15] = frame[45:] = 255  # white bands that a 2:1 crop of the centre cuts off
    fitted = fit_frame(frame, (10, 20))
    assert fitted.shape == (10, 20, 3) and (fitted == 0).all()


def test_fit_returns_same_size_frames_untouched():
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert fit_frame(frame, (8, 8)) is frame
