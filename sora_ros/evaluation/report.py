"""Write an evaluation: metrics.json, report.md, PSNR/SSIM-vs-horizon plots and an example strip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sora_ros.core.risk import next_steps
from sora_ros.evaluation.scoring import COPY_LAST, Evaluation
from sora_ros.evaluation.spread import cap_note

# Strip picture: pixels per frame tile (frames are upscaled to this height) and label band.
# What write_report writes into --out (sora-ros eval checks them before scoring).
REPORT_FILES = ("metrics.json", "report.md", "quality_vs_horizon.png", "examples.png")
_TILE = 160
_LABEL_W = 170
_LABEL_MARGIN = 6
_LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_SCALE = 0.45
_LABEL_LINE = 16  # pixels between the baselines of a label's lines


def json_safe(value: Any) -> Any:
    """Replace +-inf by "inf"/"-inf" and NaN by None (JSON has neither); int keys become strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _fmt(summary: dict) -> str:
    mean = summary["mean"]
    if math.isinf(mean):
        return "inf (identical)"
    if math.isnan(mean):
        return "n/a"
    ci = summary["ci95"]
    return f"{mean:.2f} ± {ci:.2f}" if math.isfinite(ci) else f"{mean:.2f}"


def write_markdown(path: Path, summary: dict, result: Evaluation, header: str) -> None:
    """report.md: one table per metric, methods as rows and horizons as columns."""
    horizons = result.horizons
    columns = " | ".join(f"h={h}" for h in horizons)
    lines = [header, "", f"{result.clips} clips, context {result.context_length} frames.", ""]
    capped = cap_note(summary.get("clip_cap"))
    if capped:  # a sample of the sources, not all of them: said where the numbers are read
        lines += [f"**{capped}**", ""]
    if "vae_reconstruction_psnr" in summary:
        lines += [f"VAE reconstruction of the context frames (the ceiling for any prediction): "
                  f"{_fmt(summary['vae_reconstruction_psnr'])} dB PSNR.", ""]  # fmt: skip
    for metric, title in [
        ("psnr", "PSNR (dB), mean ± 95% CI"),
        ("ssim", "SSIM"),
        ("moving_psnr", "PSNR on moving pixels only (dB)"),
        ("moving_ssim", "SSIM on moving pixels only"),
        ("centre_psnr", "PSNR on the camera's central square, what a square centre crop keeps (dB)"),
        ("margin_psnr", "PSNR on the margins, the rest of the camera frame (dB)"),
    ]:
        lines += [f"### {title}", ""]
        if metric == "margin_psnr" and summary["margins_note"]:
            lines += [summary["margins_note"], ""]
            continue
        lines += [f"| method | {columns} |", "|---" * (len(horizons) + 1) + "|"]
        for name, by_horizon in summary["methods"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(by_horizon[h][metric]) for h in horizons) + " |")
        lines.append("")
    if summary["skill"]:
        lines += [f"### Skill score 1 - MSE / MSE({COPY_LAST})", "", f"| method | {columns} |",
                  "|---" * (len(horizons) + 1) + "|"]  # fmt: skip
        for name, by_horizon in summary["skill"].items():
            lines.append(f"| {name} | " + " | ".join(f"{by_horizon[h]:+.3f}" for h in horizons) + " |")
        lines.append("")
    shares = summary.get("synthesised_share") or {}
    if any(v is not None for v in shares.values()):
        lines += ["### Anchored decoding: share of pixels synthesised (the rest warped from the last real frame)", "",
                  f"| {columns} |", "|---" * len(horizons) + "|",
                  "| " + " | ".join("n/a" if shares.get(h) is None else f"{100 * shares[h]:.1f}%" for h in horizons)
                  + " |", ""]  # fmt: skip
    for name, gaps in summary["action_sensitivity"].items():
        lines += ["### Action sensitivity", "",
                  f"PSNR of {name} under the recorded actions minus under other clips' actions "
                  "(positive: the model uses its actions; about zero: it ignores them)"
                  + (f", on the {summary['action_clips']} of {result.clips} clips with recorded actions."
                     if summary.get("action_clips", result.clips) != result.clips else "."), "",
                  f"| {columns} |", "|---" * len(horizons) + "|",
                  "| " + " | ".join(f"{gaps[h]:+.2f} dB" for h in horizons) + " |", ""]  # fmt: skip
    lines += _risk_lines(summary.get("risk"), summary.get("risk_not_scored"))
    lines += ["![PSNR and SSIM vs horizon](quality_vs_horizon.png)", "", "![examples](examples.png)", ""]
    path.write_text("\n".join(lines))


def _risk_lines(risk: dict | None, not_scored: str | None = None) -> list[str]:
    """report.md's risk-head section: sora_ros.evaluation.risk's metrics, or why the head was not
    scored; nothing where neither applies (video files)."""
    if not_scored:
        title = f"blocked within {next_steps(risk['horizon_steps'])}" if risk else "not scored"
        return [f"### Risk head: {title}", "", f"Not scored: {not_scored}.", ""]
    if not risk:
        return []
    lines = [f"### Risk head: blocked within {next_steps(risk['horizon_steps'])}", ""]
    def auc(value: float) -> str:  # NaN where a subset lacks a class
        return "n/a" if math.isnan(value) else f"{value:.3f}"

    per_step = risk.get("auc_predicted_per_step") or []
    return lines + [f"ROC AUC on {risk['samples']} labelled frames, {100 * risk['positive_share']:.1f}% positive "
                    "(forecast: the larger of the head on the predicted and on the held window, as published).", "",
                    "| encoded latents | predicted latents | forecast |", "|---|---|---|",
                    f"| {auc(risk['auc_encoded'])} | {auc(risk['auc_predicted'])} | {auc(risk['auc_forecast'])} |",
                    ""] + ([f"Predicted latents per step k = 1..{len(per_step)}: "
                            + ", ".join(map(auc, per_step)) + ".", ""] if per_step else []) + _calibration_lines(risk)


def _calibration_lines(risk: dict) -> list[str]:
    """Mean probability against the share blocked, and the Brier score (report.md); none for metrics
    from before calibration was measured."""
    if risk.get("mean_encoded") is None:
        return []

    def row(name: str, *keys: str) -> str:  # None where a subset had no sample
        return f"| {name} | " + " | ".join("n/a" if risk[key] is None else f"{risk[key]:.4f}" for key in keys) + " |"

    return ["| calibration | mean probability | share blocked | Brier score |", "|---|---|---|---|",
            row("encoded latents", "mean_encoded", "positive_share", "brier_encoded"),
            row("forecast", "mean_forecast", "positive_share_predicted", "brier_forecast"), ""]


def plot_quality(path: Path, summary: dict, horizons: list[int]) -> None:
    """PSNR and SSIM against horizon, one line per method, 95% CI as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric, label in [(axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")]:
        for name, by_horizon in summary["methods"].items():
            means = [by_horizon[h][metric]["mean"] for h in horizons]
            errors = [by_horizon[h][metric]["ci95"] for h in horizons]
            finite = [m if math.isfinite(m) else np.nan for m in means]
            errors = [e if math.isfinite(e) else 0.0 for e in errors]
            axis.errorbar(horizons, finite, yerr=errors, marker="o", capsize=3, label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(horizons, [str(h) for h in horizons])
        axis.set_xlabel("horizon (steps)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _tile(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if height > _TILE:  # camera-resolution frames: downscaled smoothly, never cropped
        return cv2.resize(frame, (round(width * _TILE / height), _TILE), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, (round(width * _TILE / height), _TILE), interpolation=cv2.INTER_NEAREST)


def label_lines(text: str, width: int = _LABEL_W - 2 * _LABEL_MARGIN) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` pixels in the label font (a word
    wider than that gets a line of its own); nothing is cut."""
    lines: list[str] = []
    for word in text.split(" "):
        wider = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(wider, _LABEL_FONT, _LABEL_SCALE, 1)[0][0] <= width:
            lines[-1] = wider
        else:
            lines.append(word)
    return lines


def _label(text: str, height: int) -> np.ndarray:
    band = np.full((height, _LABEL_W, 3), 255, np.uint8)
    lines = label_lines(text)
    top = height // 2 + 5 - (len(lines) - 1) * _LABEL_LINE // 2
    for i, line in enumerate(lines):
        cv2.putText(band, line, (_LABEL_MARGIN, top + i * _LABEL_LINE), _LABEL_FONT, _LABEL_SCALE, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
    return band


def strip_picture(path: Path, result: Evaluation) -> None:
    """examples.png: per example clip, rows real | each method, columns the scored horizons."""
    blocks = []
    for example in result.examples:
        rows = [("real", example.future)] + list(example.predictions.items())
        horizons = ",".join(map(str, result.horizons))
        header = _label(f"{Path(example.source).name[:14]} #{example.index} h={horizons}", 24)
        width = None
        block = []
        for name, frames in rows:
            tiles = np.concatenate([_tile(frames[h - 1]) for h in result.horizons], axis=1)
            row = np.concatenate([_label(name, _TILE), tiles], axis=1)
            width = row.shape[1]
            block.append(row)
        header = np.concatenate([header, np.full((24, width - _LABEL_W, 3), 255, np.uint8)], axis=1)
        blocks.append(np.concatenate([header, *block], axis=0))
    if blocks:
        widest = max(block.shape[1] for block in blocks)  # sources of different sizes: pad with white
        blocks = [np.pad(block, ((0, 0), (0, widest - block.shape[1]), (0, 0)), constant_values=255) for block in blocks]
        picture = np.concatenate(blocks, axis=0)
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


def write_report(out: Path, summary: dict, result: Evaluation, info: dict[str, Any], header: str) -> None:
    """Write metrics.json (summary + `info`), report.md, quality_vs_horizon.png and examples.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    metrics_path, markdown_path, plot_path, examples_path = (out / name for name in REPORT_FILES)
    metrics = {**info, "clips": result.clips, "context_length": result.context_length,
               "horizons": result.horizons,
               "frame_shapes": [{"camera": camera, "scored": scored} for camera, scored in sorted(result.shapes)],
               **summary}  # fmt: skip
    metrics_path.write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
    write_markdown(markdown_path, summary, result, header)
    plot_quality(plot_path, summary, result.horizons)
    strip_picture(examples_path, result)
