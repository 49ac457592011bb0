"""Where the anchored prediction's PSNR comes from, per horizon, on held-out bags.

Scores (mean PSNR in dB, as `sora-ros eval` averages it) the model as shipped, the model with the
anchored decoder's learned motion correction removed (its motion = k x flow, the runtime's base
motion alone), with its synthesis removed (the warp alone), copy-last, eval's flow baseline (the last
frame warped k times by the constant-velocity flow) and the same flow warped once along composed
trajectories (the model's own base motion), and that one warp blurred by a Gaussian of sigma
BLUR_PER_STEP x sqrt(k) pixels (about what k bilinear resamplings do to a frame).

    python scripts/warp_ablation.py --model models/default data/real/test --stride 1
    python scripts/warp_ablation.py --model models/default data/sim/test --action-topic /cmd_vel --stride 8
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

import cv2
import numpy as np

from sora_ros.bag.clip_sources import model_clips
from sora_ros.bag.reading import BagError
from sora_ros.cli.arguments import positive_int
from sora_ros.evaluation.metrics import summarize
from sora_ros.evaluation.predictors import ModelPredictor, baseline_predictors
from sora_ros.evaluation.scoring import evaluate
from sora_ros.runtime import anchor
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import ModelDirError
from sora_ros.runtime.pipeline import WorldModelPipeline

HORIZONS = (1, 2, 4, 8)
# Blur (pixels) per sqrt(step) that the one-warp flow gets in its blurred row.
BLUR_PER_STEP = 0.35
ABLATIONS = ("model", "no correction", "no synthesis")


@contextmanager
def ablated(name: str):
    """The anchored decoder's fields with the correction ("no correction") or the mask ("no synthesis") zeroed."""
    fields = anchor.AnchoredDecoder.fields

    def patched(self, previous, last, flow, latents, context_latent, steps, reconstruction, actions=None):
        motion, mask = fields(self, previous, last, flow, latents, context_latent, steps, reconstruction, actions)
        if name == "no correction":
            motion = np.asarray(steps, np.float32)[:, None, None, None] * flow[None]  # (B, 2, H, W)
        if name == "no synthesis":
            mask = np.zeros_like(mask)
        return motion, mask

    anchor.AnchoredDecoder.fields = patched
    try:
        yield
    finally:
        anchor.AnchoredDecoder.fields = fields


def one_warp(context: np.ndarray, horizon: int, blur: float = 0.0) -> np.ndarray:
    """uint8 (L, H, W, 3): the last frame warped once per step along the composed constant-velocity trajectories."""
    last = context[-1]
    trajectories = anchor.trajectory_motion(anchor.camera_flow(context[-2], last, max_side=max(last.shape)), horizon)
    grid = anchor.pixel_grid(*last.shape[:2])
    frames = [cv2.remap(last, trajectories[k] + grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
              for k in range(horizon)]
    if blur:
        frames = [cv2.GaussianBlur(frame, (0, 0), blur * np.sqrt(k + 1)) for k, frame in enumerate(frames)]
    return np.stack(frames)


def main(args: argparse.Namespace) -> int:
    try:
        engine = WorldModelEngine(args.model, precision="float32")
    except ModelDirError as error:
        print(f"warp_ablation: {error}", file=sys.stderr)
        return 1
    info = engine.info
    lookahead = max(HORIZONS)
    rows = {}
    for name in ABLATIONS:
        clips = model_clips(args.bags, args.image_topic, args.action_topic, dt=info.dt, length=info.context_frames + lookahead,
                            size=None, action_names=info.action_names, stride=args.stride, notes=[])  # fmt: skip
        predictors = {name: ModelPredictor(WorldModelPipeline(engine), lookahead)}
        if name == "model":
            predictors.update(baseline_predictors(lookahead))
            predictors["flow, one warp"] = lambda context, actions: one_warp(context, lookahead)
            predictors[f"flow, one warp, blur {BLUR_PER_STEP} sqrt(k)"] = \
                lambda context, actions: one_warp(context, lookahead, BLUR_PER_STEP)
        try:
            with ablated(name):
                result = evaluate(clips, predictors, context_length=info.context_frames, horizons=list(HORIZONS),
                                  progress=False)  # fmt: skip
        except (FileNotFoundError, BagError, ValueError) as error:
            print(f"warp_ablation: {error}", file=sys.stderr)
            return 1
        for method, scores in result.scores.items():
            rows[method] = [summarize([frame.psnr for frame in scores[h]])["mean"] for h in HORIZONS]
    print(f"{result.clips} clips from {' '.join(map(str, args.bags))}; PSNR dB at h = {' / '.join(map(str, HORIZONS))}")
    for method, values in rows.items():
        print(f"  {method:40s} " + " / ".join(f"{value:.2f}" for value in values))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bags", nargs="+", help="held-out bags or folders of them")
    parser.add_argument("--model", default="models/default", help="model directory (default %(default)s)")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--action-topic", help="the commands (e.g. /cmd_vel); none: actions unknown")
    parser.add_argument("--stride", type=positive_int, default=1, help="frames between clip starts (default 1)")
    raise SystemExit(main(parser.parse_args()))
