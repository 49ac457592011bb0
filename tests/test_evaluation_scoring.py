"""Scoring and reports with the baselines and hand-made predictors on synthetic clips."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from sora_ros.evaluation.baselines import FlowExtrapolation, copy_last
from sora_ros.evaluation.report import write_report
from sora_ros.evaluation.scoring import COPY_LAST, METRICS, evaluate, summarize_evaluation

K, HORIZONS = 2, [1, 2, 4]
RNG = np.random.default_rng(0)


def clip(i: int, frames: int = K + 4) -> SimpleNamespace:
    """A bright square moving right by 2 px per frame; actions random (A = 2)."""
    video = np.zeros((frames, 32, 32, 3), np.uint8)
    for t in range(frames):
        video[t, 10:18, 2 + 2 * t : 10 + 2 * t] = (200, 150, 50 + 10 * i)
    return SimpleNamespace(frames=video, actions=RNG.normal(size=(frames, 2)).astype(np.float32), source=f"bag{i}",
                           camera_shape=None)


def baselines():
    return {COPY_LAST: lambda c, a: copy_last(c, max(HORIZONS)), "flow": lambda c, a: FlowExtrapolation()(c, max(HORIZONS))}


def test_metrics_json_holds_every_horizon_metric_and_baseline(tmp_path):
    result = evaluate([clip(i) for i in range(3)], baselines(), context_length=K, horizons=HORIZONS, progress=False)
    summary = summarize_evaluation(result)
    write_report(tmp_path, summary, result, {"model": "none"}, "# test")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["clips"] == 3 and metrics["horizons"] == HORIZONS
    for method in (COPY_LAST, "flow"):
        for h in HORIZONS:
            assert set(metrics["methods"][method][str(h)]) == set(METRICS) - {"margin_psnr"}  # square frames
            assert metrics["methods"][method][str(h)]["psnr"]["n"] == 3
    assert metrics["skill"][COPY_LAST] == {str(h): 0.0 for h in HORIZONS}
    for name in ("report.md", "quality_vs_horizon.png", "examples.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_action_sensitivity_is_zero_for_a_model_that_ignores_actions():
    predictors = {COPY_LAST: lambda c, a: copy_last(c, max(HORIZONS))}
    result = evaluate([clip(i) for i in range(4)], predictors, context_length=K, horizons=HORIZONS,
                      shuffle_actions_of=COPY_LAST, progress=False)  # fmt: skip
    gaps = summarize_evaluation(result)["action_sensitivity"][COPY_LAST]
    assert gaps == {h: 0.0 for h in HORIZONS}


def test_action_sensitivity_is_positive_for_a_model_that_uses_actions():
    """An oracle that predicts the true future only under the recorded actions."""
    clips = [clip(i) for i in range(4)]
    futures = {c.actions.tobytes(): c.frames[K:] for c in clips}

    def oracle(context, actions):
        return futures.get(actions.tobytes(), copy_last(context, max(HORIZONS)))

    result = evaluate(clips, {"oracle": oracle}, context_length=K, horizons=HORIZONS,
                      shuffle_actions_of="oracle", progress=False)  # fmt: skip
    gaps = summarize_evaluation(result)["action_sensitivity"]["oracle"]
    assert all(np.isnan(gap) or gap > 5 for gap in gaps.values()) and not np.isnan(gaps[1])


def test_static_scene_reports_infinite_psnr_in_json(tmp_path):
    still = SimpleNamespace(frames=np.full((K + 4, 16, 16, 3), 90, np.uint8), actions=np.zeros((K + 4, 0), np.float32), source="still",
                            camera_shape=None)
    result = evaluate([still], {COPY_LAST: lambda c, a: copy_last(c, 4)}, context_length=K, horizons=HORIZONS, progress=False)
    write_report(tmp_path, summarize_evaluation(result), result, {}, "# still")
    psnr = json.loads((tmp_path / "metrics.json").read_text())["methods"][COPY_LAST]["1"]["psnr"]
    assert psnr["mean"] == "inf" and psnr["n_inf"] == 1
    assert "inf (identical)" in (tmp_path / "report.md").read_text()


def test_short_clip_and_bad_predictor_are_refused():
    with pytest.raises(ValueError, match="shorter than context 2 \\+ largest horizon 4"):
        evaluate([clip(0, frames=4)], baselines(), context_length=K, horizons=HORIZONS, progress=False)
    with pytest.raises(ValueError, match="predictor 'bad' returned"):
        evaluate([clip(0)], {"bad": lambda c, a: c}, context_length=K, horizons=HORIZONS, progress=False)


def test_metrics_json_values_match_hand_computed_scores(tmp_path):
    """Flat grey frames whose level changes from frame to frame: every score has a closed form.

    Copy-last predicts the last context level a, the truth at horizon h is level b:
    MSE = ((b - a) / 255)^2, PSNR = 20 log10(255 / |b - a|), SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    (no variance in a flat frame; a, b in [0, 1]). Every pixel moves by more than 8, so the moving
    metrics equal the full-frame ones (measured from the LAST context frame: in "down" the first
    context frame equals the truth at horizon 1). Flow on flat frames has nothing to track and predicts
    the last frame. A predictor that is off the truth by +4 everywhere has PSNR 20 log10(255 / 4).
    """
    levels = {"up": [100, 110, 120, 130, 140, 150], "down": [38, 50, 38, 26, 14, 2]}
    clips = [SimpleNamespace(frames=np.stack([np.full((16, 16, 3), v, np.uint8) for v in values]),
                             actions=np.zeros((len(values), 2), np.float32), source=name, camera_shape=None)
             for name, values in levels.items()]
    truths = {c.frames[:K].tobytes(): c.frames[K : K + max(HORIZONS)] for c in clips}
    predictors = {**baselines(), "plus4": lambda context, actions: truths[context.tobytes()] + 4}
    result = evaluate(clips, predictors, context_length=K, horizons=HORIZONS, progress=False)
    write_report(tmp_path, summarize_evaluation(result), result, {}, "# hand")
    metrics = json.loads((tmp_path / "metrics.json").read_text())

    c1 = 0.01**2

    def flat_ssim(a, b):
        a, b = a / 255, b / 255
        return (2 * a * b + c1) / (a * a + b * b + c1)

    def mean_ci(values):
        return np.mean(values), 1.959963984540054 * np.std(values, ddof=1) / np.sqrt(len(values))

    for h in HORIZONS:
        last, truth = [v[K - 1] for v in levels.values()], [v[K - 1 + h] for v in levels.values()]
        copy = {
            "mse": [((b - a) / 255) ** 2 for a, b in zip(last, truth)],
            "psnr": [20 * np.log10(255 / abs(b - a)) for a, b in zip(last, truth)],
            "ssim": [flat_ssim(a, b) for a, b in zip(last, truth)],
        }
        plus = {"mse": [(4 / 255) ** 2] * 2, "psnr": [20 * np.log10(255 / 4)] * 2,
                "ssim": [flat_ssim(b + 4, b) for b in truth]}
        for method, expected in ((COPY_LAST, copy), ("flow", copy), ("plus4", plus)):
            for metric, values in expected.items():
                mean, ci = mean_ci(values)
                for prefix in ("", "moving_"):
                    got = metrics["methods"][method][str(h)][prefix + metric]
                    where = f"{method} h={h} {prefix}{metric}"
                    assert got["n"] == 2 and got["n_nan"] == 0, where
                    assert got["mean"] == pytest.approx(mean, rel=1e-4), where
                    if metric != "psnr" or method != "plus4":  # plus4's PSNR is the same in both clips
                        # SSIM of flat frames carries float32 rounding (~1e-5) into its spread.
                        assert got["ci95"] == pytest.approx(ci, rel=1e-3, abs=1e-4 if metric == "ssim" else 1e-9), where
        copy_mse = np.mean(copy["mse"])
        assert metrics["skill"]["plus4"][str(h)] == pytest.approx(1 - (4 / 255) ** 2 / copy_mse, rel=1e-5)
        assert metrics["skill"]["flow"][str(h)] == pytest.approx(0.0, abs=1e-9)


def wide_clips(camera_shape=None) -> list[SimpleNamespace]:
    """Two 3:4 (12 x 16) clips of a flat grey whose level steps by 10 per frame."""
    return [SimpleNamespace(frames=np.stack([np.full((12, 16, 3), 50 + 10 * t + i, np.uint8) for t in range(K + 4)]),
                            actions=np.zeros((K + 4, 0), np.float32), source=f"wide{i}", camera_shape=camera_shape)
            for i in range(2)]


def centre_only(context, actions):
    """The truth (a flat frame 10 brighter per step) in the central square, copy-last in the margins."""
    predicted = copy_last(context, max(HORIZONS)).copy()
    for k in range(max(HORIZONS)):
        predicted[k, :, 2:14] += 10 * (k + 1)
    return predicted


def test_centre_and_margin_psnr_are_scored_and_reported_apart(tmp_path):
    result = evaluate(wide_clips(), {COPY_LAST: lambda c, a: copy_last(c, max(HORIZONS)), "centre": centre_only},
                      context_length=K, horizons=HORIZONS, progress=False)  # fmt: skip
    summary = summarize_evaluation(result)
    write_report(tmp_path, summary, result, {}, "# wide")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["margins_note"] is None and metrics["frame_shapes"] == [{"camera": [12, 16], "scored": [12, 16]}]
    for h in HORIZONS:
        centre, copy = metrics["methods"]["centre"][str(h)], metrics["methods"][COPY_LAST][str(h)]
        off = 20 * np.log10(255 / (10 * h))  # copy-last's error, everywhere
        assert centre["centre_psnr"]["mean"] == "inf" and centre["centre_psnr"]["n_inf"] == 2
        assert centre["margin_psnr"]["mean"] == pytest.approx(off) and centre["margin_psnr"]["n"] == 2
        assert copy["centre_psnr"]["mean"] == pytest.approx(off) == copy["margin_psnr"]["mean"]
    report = (tmp_path / "report.md").read_text()
    centre_table = report.split("### PSNR on the camera's central square")[1].split("###")[0]
    margin_table = report.split("### PSNR on the margins")[1].split("###")[0]
    assert "| centre | inf (identical) | inf (identical) | inf (identical) |" in centre_table
    assert f"| centre | {20 * np.log10(25.5):.2f} ± 0.00 |" in margin_table


def test_frames_scored_on_the_square_crop_have_no_margins_and_say_so(tmp_path):
    square = [SimpleNamespace(**{**vars(c), "frames": c.frames[:, :, 2:14]}) for c in wide_clips((480, 640))]
    result = evaluate(square, baselines(), context_length=K, horizons=HORIZONS, progress=False)
    summary = summarize_evaluation(result)
    write_report(tmp_path, summary, result, {}, "# crop")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all("margin_psnr" not in by_h and "centre_psnr" in by_h for m in metrics["methods"].values()
               for by_h in m.values())  # fmt: skip
    assert "central square of the 640x480 camera" in metrics["margins_note"]
    margins = (tmp_path / "report.md").read_text().split("### PSNR on the margins")[1].split("###")[0]
    assert metrics["margins_note"] in margins and "|" not in margins and "nan" not in margins.lower()
    square_cameras = evaluate([SimpleNamespace(**{**vars(c), "camera_shape": None}) for c in square], baselines(),
                              context_length=K, horizons=HORIZONS, progress=False)  # fmt: skip
    assert "the cameras are square" in summarize_evaluation(square_cameras)["margins_note"]


def test_examples_are_a_seeded_sample_of_all_clips_not_the_first_few():
    clips = [clip(i % 20) for i in range(40)]  # the colour's range repeats; the sources differ
    for i, each in enumerate(clips):
        each.source = f"bag{i}"
    picks = [[e.source for e in evaluate(clips, baselines(), context_length=K, horizons=HORIZONS, seed=seed,
                                         progress=False).examples] for seed in (0, 0, 1)]
    assert picks[0] == picks[1], "the same seed, the same examples"
    assert len(set(picks[0])) == 4 and picks[0] != picks[2]
    indices = [int(source[3:]) for source in picks[0]]
    assert indices == sorted(indices) and max(indices) >= 4, "in clip order, and not only the first four"
    few = evaluate(clips[:3], baselines(), context_length=K, horizons=HORIZONS, progress=False).examples
    assert [e.source for e in few] == ["bag0", "bag1", "bag2"], "fewer clips than examples: all of them"


def test_example_labels_are_wrapped_not_cut():
    """examples.png once showed "model (shuffled action": labels break into lines that fit the band."""
    import cv2

    from sora_ros.evaluation import report

    for text in ("model (shuffled actions)", "a much longer method name (shuffled actions) that needs three lines"):
        lines = report.label_lines(text)
        assert " ".join(lines) == text, "nothing cut"
        widths = [cv2.getTextSize(line, report._LABEL_FONT, report._LABEL_SCALE, 1)[0][0] for line in lines]
        assert max(widths) <= report._LABEL_W - 2 * report._LABEL_MARGIN
    assert len(report.label_lines("a much longer method name (shuffled actions) that needs three lines")) >= 3


def test_action_gap_leaves_out_clips_whose_actions_are_unknown():
    """Clips from a source without the action topic (NaN actions) are scored, but not in the action
    gap: shuffling unknown actions changes nothing, and a 0 dB gap for them would pull the mean to 0."""
    clips = [clip(i) for i in range(4)]
    futures = {c.actions.tobytes(): c.frames[K:] for c in clips}
    unknown = [clip(10 + i) for i in range(4)]
    for c in unknown:
        c.actions[:] = np.nan

    def oracle(context, actions):
        return futures.get(actions.tobytes(), copy_last(context, max(HORIZONS)))

    result = evaluate([clips[0], unknown[0], clips[1], unknown[1], clips[2], unknown[2], clips[3], unknown[3]],
                      {"oracle": oracle}, context_length=K, horizons=HORIZONS, shuffle_actions_of="oracle",
                      progress=False)  # fmt: skip
    summary = summarize_evaluation(result)
    assert result.clips == 8 and summary["action_clips"] == 4
    assert summary["methods"]["oracle"][1]["psnr"]["n"] == 8
    assert summary["methods"]["oracle (shuffled actions)"][1]["psnr"]["n"] == 4
    known_only = summarize_evaluation(evaluate(clips, {"oracle": oracle}, context_length=K, horizons=HORIZONS,
                                               shuffle_actions_of="oracle", progress=False))  # fmt: skip
    assert summary["action_sensitivity"]["oracle"][1] == known_only["action_sensitivity"]["oracle"][1] > 5

    nothing_known = evaluate(unknown, {"oracle": oracle}, context_length=K, horizons=HORIZONS,
                             shuffle_actions_of="oracle", progress=False)  # fmt: skip
    assert summarize_evaluation(nothing_known)["action_sensitivity"] == {}, "no action rows, not a gap of 0 dB"
