"""train_curves.png: the training and validation curves of a `sora-ros train` run, from its
train_log.jsonl (sora_ros/model/trainer.py writes it; this module reads only the JSON lines)."""

from __future__ import annotations

import json
from pathlib import Path

CURVES_NAME = "train_curves.png"


def read_log(path: Path) -> list[dict]:
    """The entries of a train_log.jsonl: {"stage", "step", metrics...} or {"stage", "step", "val": {...}}."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _series(entries: list[dict], stage: str, key: str, validation: bool = False) -> tuple[list[int], list[float]]:
    points = [(e["step"], (e["val"] if validation else e).get(key)) for e in entries
              if e["stage"] == stage and ("val" in e) == validation]  # fmt: skip
    points = [(step, value) for step, value in points if value is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(log_path: Path, png_path: Path) -> Path:
    """Plot a run's curves: the VAE's reconstruction PSNR (training batches and validation), the
    DiT's training loss, and its validation PSNR per horizon beside copy-last's (dashed) with the
    action gap. Returns `png_path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = read_log(log_path)
    figure, (vae, loss, dit) = plt.subplots(1, 3, figsize=(14, 4))
    vae.plot(*_series(entries, "vae", "psnr"), label="training batches", color="tab:gray")
    vae.plot(*_series(entries, "vae", "recon_psnr", validation=True), "o-", label="validation")
    vae.set(title="VAE reconstruction", xlabel="VAE step", ylabel="PSNR dB")
    loss.plot(*_series(entries, "dit", "loss"), color="tab:gray")
    loss.set(title="DiT training loss (velocity MSE)", xlabel="DiT step", yscale="log")
    validated = {key for e in entries if e["stage"] == "dit" and "val" in e for key in e["val"]}
    horizons = sorted({int(k[1:].split("_")[0]) for k in validated if k.endswith("_copy_last_psnr")})
    for i, h in enumerate(horizons):
        color = f"C{i}"
        dit.plot(*_series(entries, "dit", f"h{h}_psnr", validation=True), "o-", color=color, label=f"model h={h}")
        dit.plot(*_series(entries, "dit", f"h{h}_copy_last_psnr", validation=True), "--", color=color,
                 label=f"copy-last h={h}")  # fmt: skip
        steps, gaps = _series(entries, "dit", f"h{h}_action_gap", validation=True)
        if steps:
            dit.plot(steps, gaps, ":", marker="x", color=color, label=f"action gap h={h} (dB)")
    dit.set(title="DiT validation", xlabel="DiT step", ylabel="PSNR dB")
    for axes in (vae, dit):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    for axes in (vae, loss, dit):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return Path(png_path)
