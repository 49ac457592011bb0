"""What `sora-ros demo` writes to out/demo/, from what it recorded live (no rclpy here).

Inputs are the real camera frames by stamp and the ~/futures the world model published.
Each predicted frame is matched to the real frame that arrived for its stamp (within half
a model step), scored by PSNR beside the copy-last-frame baseline, and a few rollouts
are drawn as real vs predicted strips with the evaluation report's picture code.

Frames are uint8 (H, W, 3) RGB at the model's input size; stamps integer nanoseconds.
"""

from __future__ import annotations


import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from sora_ros.core.psnr import psnr_from_mse
from sora_ros.core.timegrid import NO_FRAME, pick
from sora_ros.core.units import NS_PER_S
from sora_ros.evaluation.metrics import mse
from sora_ros.evaluation.report import strip_picture
from sora_ros.evaluation.scoring import Evaluation, Example

HORIZONS = (1, 2, 4, 8)
EXAMPLE_ROLLOUTS = 3


@dataclass
class RecordedFuture:
    """One ~/futures message: origin stamp, frames (H, Hi, Wi, 3) or None, and latencies."""

    origin_ns: int
    frames: np.ndarray | None
    node_latency_ms: float  # as the node measured it: frame received -> futures published
    dds_latency_ms: float  # camera stamp -> the recorder received the futures (both wall clock)
    sampler_steps: int


@dataclass
class Recording:
    """Everything the demo recorded."""

    dt_ns: int
    real: dict[int, np.ndarray] = field(default_factory=dict)  # stamp -> frame at the model's size
    futures: list[RecordedFuture] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)  # the world model's latest counters and latencies
    camera_frames: int = 0


def _reals_at(recording: Recording, stamps: np.ndarray, grid_ns: np.ndarray) -> list[np.ndarray | None]:
    """The real frame of each grid time (sora_ros.core.timegrid), None where none arrived.

    Args:
        stamps: int64 (N,) the recorded stamps, increasing.
        grid_ns: int64 (G,) the times wanted.
    """
    return [None if i == NO_FRAME else recording.real[int(stamps[i])] for i in pick(stamps, grid_ns, recording.dt_ns)]


def score(recording: Recording) -> tuple[dict, list[Example]]:
    """PSNR per horizon (model and copy-last) and a few example rollouts.

    Returns:
        ({"h<k>": {"model_psnr_db", "copy_last_psnr_db", "frames"}}, examples).
    """
    stamps = np.array(sorted(recording.real), np.int64)
    errors: dict[int, dict[str, list[float]]] = {h: {"model": [], "copy_last": []} for h in HORIZONS}
    complete: list[tuple[RecordedFuture, np.ndarray, np.ndarray]] = []  # future, reals (H, ...), last observed
    for future in recording.futures:
        if future.frames is None:
            continue
        grid = future.origin_ns + np.arange(len(future.frames) + 1) * recording.dt_ns  # (H + 1,)
        last, *reals = _reals_at(recording, stamps, grid)  # the last observed frame, then k = 1..H
        if last is None:
            continue
        if future.frames.shape[1:3] != last.shape[:2]:  # a non-anchored future (e.g. before two camera frames)
            future = replace(future, frames=np.stack([
                cv2.resize(frame, last.shape[1::-1], interpolation=cv2.INTER_LINEAR) for frame in future.frames]))
        for h in HORIZONS:
            if h <= len(reals) and reals[h - 1] is not None:
                errors[h]["model"].append(mse(future.frames[h - 1], reals[h - 1]))
                errors[h]["copy_last"].append(mse(last, reals[h - 1]))
        if all(r is not None for r in reals):
            complete.append((future, np.stack(reals), last))
    table = {}
    for h, by_method in errors.items():
        if by_method["model"]:
            table[f"h{h}"] = {f"{m}_psnr_db": round(psnr_from_mse(float(np.mean(v))), 2) for m, v in by_method.items()}
            table[f"h{h}"]["frames"] = len(by_method["model"])
    picks = [complete[round(i)] for i in np.linspace(0, len(complete) - 1, min(EXAMPLE_ROLLOUTS, len(complete)))]
    first_ns = int(stamps[0]) if stamps.size else 0
    examples = [Example(index=i, source=f"at {(future.origin_ns - first_ns) / NS_PER_S:.1f} s", context=last[None],
                        future=reals, predictions={"world model": future.frames,
                                                   "copy-last": np.repeat(last[None], len(reals), 0)})
                for i, (future, reals, last) in enumerate(picks)]
    return table, examples


def latency_summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {}
    values = np.array(values_ms)
    return {"p50": round(float(np.percentile(values, 50)), 1), "p99": round(float(np.percentile(values, 99)), 1),
            "max": round(float(values.max()), 1), "n": int(values.size)}


def plot_latency(path: Path, node_ms: list[float], dds_ms: list[float]) -> None:
    """latency.png: histograms of both latencies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    top = max([*node_ms, *dds_ms, 1.0])
    bins = np.linspace(0, top, 50)
    axis.hist(dds_ms, bins=bins, alpha=0.6, label="camera stamp -> ~/futures received (through DDS)")
    axis.hist(node_ms, bins=bins, alpha=0.6, label="in the node: frame received -> ~/futures published")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("rollouts")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(out: Path, recording: Recording, info: dict) -> dict:
    """Write summary.json, futures.png and latency.png into `out`.

    Args:
        out: output directory (created).
        recording: what the demo recorded.
        info: run facts for summary.json (model, duration, source, machine).

    Returns:
        The summary written to summary.json.
    """
    out.mkdir(parents=True, exist_ok=True)
    table, examples = score(recording)
    horizon = max((len(f.frames) for f in recording.futures if f.frames is not None), default=0)
    horizons = [h for h in HORIZONS if h <= horizon]
    if examples and horizons:
        strip_picture(out / "futures.png", Evaluation(horizons=horizons, context_length=1, examples=examples))
    node_ms = [f.node_latency_ms for f in recording.futures]
    dds_ms = [f.dds_latency_ms for f in recording.futures]
    plot_latency(out / "latency.png", node_ms, dds_ms)
    counts = {key: int(value) for key, value in recording.diagnostics.items()
              if key.split("/")[0] in ("published", "drop", "reset", "deadline", "error", "service")}
    summary = {
        **info,
        "camera_frames_received": recording.camera_frames,
        "futures_received": len(recording.futures),
        "node_counts": counts,
        "latency_ms": {"camera_to_futures_dds": latency_summary(dds_ms), "in_node": latency_summary(node_ms)},
        "psnr_per_horizon": table,
        "files": sorted(p.name for p in out.iterdir() if p.suffix == ".png") + ["summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=lambda v: None if math.isnan(v) else v))
    return summary


def text_summary(summary: dict, out: Path, title: str = "demo") -> str:
    """The few lines the demo (or another live run, named by `title`) prints at the end."""
    dds = summary["latency_ms"]["camera_to_futures_dds"]
    counts = summary["node_counts"]
    dropped = {k.removeprefix("drop/"): v for k, v in counts.items() if k.startswith("drop/") and v}
    lines = [
        f"{title}: {summary['duration_s']:g} s, camera {summary['source']}"
        + (f" at {summary['camera_timing']}" if summary.get("camera_timing") else "") + f", model {summary['model']}",
        f"  camera frames received {summary['camera_frames_received']}, futures received {summary['futures_received']}"
        f" (node published {counts.get('published/futures', 0)}, dropped {sum(dropped.values())}"
        + (f": {', '.join(f'{k} {v}' for k, v in dropped.items())}" if dropped else "") + ")",
    ]
    if dds:
        lines.append(f"  camera -> ~/futures through DDS: p50 {dds['p50']} ms, p99 {dds['p99']} ms (n={dds['n']})")
    for key, row in summary["psnr_per_horizon"].items():
        lines.append(f"  {key}: model {row['model_psnr_db']} dB vs copy-last {row['copy_last_psnr_db']} dB "
                     f"({row['frames']} frames)")
    lines.append(f"  wrote {out}/: {', '.join(summary['files'])}")
    return "\n".join(lines)
