"""Metrics and baselines: values computed by hand, infinite PSNR, and the flow warp direction."""

import math

import cv2
import numpy as np
import pytest

from sora_ros.evaluation.baselines import FlowExtrapolation, copy_last
from sora_ros.evaluation.metrics import PSNR_CAP_DB, FrameScores, moving_mask, mse, psnr_from_mse, skill_score, ssim, ssim_map, summarize

RNG = np.random.default_rng(0)


def test_psnr_of_a_constant_offset_matches_hand_value():
    target = np.full((8, 8, 3), 100, np.uint8)
    predicted = target + 10
    assert mse(predicted, target) == pytest.approx((10 / 255) ** 2)
    assert psnr_from_mse(mse(predicted, target)) == pytest.approx(20 * math.log10(25.5))


def test_identical_frames_give_infinite_psnr_and_unit_ssim():
    frame = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    scores = FrameScores.of(frame, frame, frame)
    assert scores.psnr == math.inf and scores.ssim == pytest.approx(1.0, abs=1e-5)
    # Nothing moved: the moving-pixel metrics have no pixel to score.
    assert math.isnan(scores.moving_mse) and math.isnan(scores.moving_psnr)


def test_copy_last_on_a_static_scene_reports_infinity_not_nan():
    frame = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    context = np.stack([frame, frame])
    psnrs = [FrameScores.of(p, frame, frame).psnr for p in copy_last(context, 3)]
    summary = summarize(psnrs)
    assert summary["mean"] == math.inf and summary["n_inf"] == 3 and summary["n_nan"] == 0


def test_summarize_caps_inf_leaves_out_nan_and_counts_both():
    summary = summarize([10.0, 12.0, math.inf, math.nan])
    assert summary["mean"] == pytest.approx((10.0 + 12.0 + PSNR_CAP_DB) / 3)
    assert (summary["n"], summary["n_inf"], summary["n_nan"]) == (3, 1, 1)
    assert summary["ci95"] == pytest.approx(1.959964 * np.std([10, 12, PSNR_CAP_DB], ddof=1) / math.sqrt(3), rel=1e-5)


def test_every_method_is_averaged_over_the_same_frames():
    """Copy-last is perfect on a still frame: that frame must count for it, not vanish."""
    copy_last_psnr = summarize([math.inf, 20.0])["mean"]
    model_psnr = summarize([40.0, 21.0])["mean"]
    assert copy_last_psnr > model_psnr


def test_ssim_drops_with_noise():
    frame = cv2.GaussianBlur(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8), (5, 5), 2)
    noisy = np.clip(frame + RNG.normal(0, 25, frame.shape), 0, 255).astype(np.uint8)
    assert ssim(noisy, frame) < 0.9 < ssim(frame, frame)


def test_moving_mask_marks_changed_pixels_only():
    last = np.zeros((4, 4, 3), np.uint8)
    future = last.copy()
    future[1, 2, 0] = 50
    future[3, 3, 1] = 5  # below MOVING_THRESHOLD: noise, not motion
    mask = moving_mask(last, future)
    assert mask.sum() == 1 and mask[1, 2]
    assert mse(future, last, mask) == pytest.approx((50 / 255) ** 2 / 3)


def test_skill_score():
    assert skill_score(0.5, 1.0) == pytest.approx(0.5)
    assert skill_score(2.0, 1.0) == pytest.approx(-1.0)
    assert skill_score(0.0, 0.0) == 0.0


def translating_texture(frames: int, shift=(2, 1), size=48) -> np.ndarray:
    """uint8 (T, size, size, 3): a smooth texture moving by `shift` (dx, dy) pixels per frame."""
    canvas = cv2.GaussianBlur(RNG.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8), (9, 9), 3)
    canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX)
    dx, dy = shift
    return np.stack([canvas[20 - t * dy : 20 - t * dy + size, 20 - t * dx : 20 - t * dx + size] for t in range(frames)])


def test_flow_extrapolation_beats_copy_last_on_translation():
    clip = translating_texture(6)
    context, future = clip[:2], clip[2:]
    flow = FlowExtrapolation()(context, len(future))
    still = copy_last(context, len(future))
    inner = (slice(None), slice(12, -12), slice(12, -12))  # away from the border that enters the view
    for k in range(len(future)):
        flow_error = mse(flow[inner][k], future[inner][k])
        copy_error = mse(still[inner][k], future[inner][k])
        assert flow_error < 0.3 * copy_error, f"horizon {k + 1}: flow {flow_error:.5f} vs copy {copy_error:.5f}"


def test_flow_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 context frames"):
        FlowExtrapolation()(np.zeros((1, 8, 8, 3), np.uint8), 2)


def _reference_ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM per pixel from Wang et al. (2004), in plain numpy: 11x11 Gaussian window of sigma 1.5
    normalised to sum 1, K1 = 0.01, K2 = 0.03, L = 1, each channel separately, then averaged over
    channels. Borders mirror the edge pixel ('symmetric' padding), as metrics.py documents."""
    offsets = np.arange(11) - 5
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    x, y = x.astype(np.float64) / 255.0, y.astype(np.float64) / 255.0

    def local_mean(image: np.ndarray) -> np.ndarray:  # (H, W)
        padded = np.pad(image, 5, mode="symmetric")
        patches = np.lib.stride_tricks.sliding_window_view(padded, (11, 11))  # (H, W, 11, 11)
        return np.einsum("ijkl,kl->ij", patches, window)

    maps = []
    for c in range(x.shape[2]):
        a, b = x[..., c], y[..., c]
        mu_a, mu_b = local_mean(a), local_mean(b)
        var_a = local_mean(a * a) - mu_a**2
        var_b = local_mean(b * b) - mu_b**2
        cov = local_mean(a * b) - mu_a * mu_b
        maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return np.mean(maps, axis=0)


def test_ssim_matches_the_papers_definition_computed_independently():
    """Pins the window (11x11, sigma 1.5), the constants and the channel average: a 3x3 window
    or other constants give other values."""
    rng = np.random.default_rng(5)
    target = cv2.GaussianBlur(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8), (5, 5), 1.5)
    predicted = np.clip(target.astype(np.int16) + rng.integers(-40, 41, target.shape), 0, 255).astype(np.uint8)
    reference = _reference_ssim_map(predicted, target)
    assert ssim(predicted, target) == pytest.approx(reference.mean(), abs=1e-5)
    mask = moving_mask(target, predicted)
    assert 0 < mask.sum() < mask.size
    assert ssim(predicted, target, mask) == pytest.approx(reference[mask].mean(), abs=1e-5)
    # Away from the border (no padding convention involved) every local value agrees.
    np.testing.assert_allclose(ssim_map(predicted, target)[5:-5, 5:-5], reference[5:-5, 5:-5], atol=1e-4)


def test_ssim_of_two_flat_frames_is_the_luminance_term_by_hand():
    """Flat frames: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with a, b in [0, 1]."""
    a, b = 200 / 255, 120 / 255
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16, 3), 200, np.uint8), np.full((16, 16, 3), 120, np.uint8)) == pytest.approx(expected, rel=1e-4)
