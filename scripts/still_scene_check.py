"""A frame that does not move: with the model's anchored decoder, is every predicted frame the last
frame (mean absolute error under 1/255 at every horizon)? Prints the MAE per horizon for still
frames taken from the given clips at their own resolution, and a 640x480 resize of each.

    python scripts/still_scene_check.py --model models/default data/real/test data/sim/test
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from sora_ros.bag.clip_sources import model_clips
from sora_ros.core.requests import RolloutRequest
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.pipeline import WorldModelPipeline


def main(args: argparse.Namespace) -> int:
    engine = WorldModelEngine(args.model)
    pipeline = WorldModelPipeline(engine)
    info = engine.info
    horizon = info.default_horizon
    worst = 0.0
    for path in args.paths:
        clip = next(iter(model_clips([path], "/camera/image_raw", None, dt=info.dt, length=1, size=None,
                                     action_names=info.action_names)))
        for frame in (clip.frames[0], cv2.resize(clip.frames[0], (640, 480), interpolation=cv2.INTER_AREA)):
            pipeline.reset()
            for t in range(info.context_frames):
                _, latent = pipeline.encode(frame)
                pipeline.observe(t * pipeline.dt_ns, "", latent, image=frame)
            actions = np.zeros((1, horizon, info.action_dim), np.float32) if info.action_dim else None
            outcome = pipeline.what_if(RolloutRequest(actions, 1, horizon, 1, 0, return_images=True))
            mae = [float(np.abs(p.astype(np.float32) - frame).mean()) for p in outcome.forecasts[0].frames]
            worst = max(worst, *mae)
            print(f"{path} {frame.shape[1]}x{frame.shape[0]}: MAE (of 255) per horizon "
                  + " ".join(f"{m:.3f}" for m in mae))
    print(f"worst {worst:.3f} / 255 ({'under' if worst < 1 else 'NOT under'} 1/255)")
    return 0 if worst < 1 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("paths", nargs="+", help="bags or videos; the first frame of each is held still")
    raise SystemExit(main(parser.parse_args()))
