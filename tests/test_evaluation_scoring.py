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
    return SimpleNamespace(frames=video, actions=RNG.normal(size=(frames, 2)).astype(np.float32), source=f"bag{i}")


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
            assert set(metrics["methods"][method][str(h)]) == set(METRICS)
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
    still = SimpleNamespace(frames=np.full((K + 4, 16, 16, 3), 90, np.uint8), actions=np.zeros((K + 4, 0), np.float32), source="still")
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
