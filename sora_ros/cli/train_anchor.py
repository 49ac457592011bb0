"""`sora-ros train-anchor`: train the anchored decoder of an exported model and add it to the model directory.

    sora-ros train-anchor --model models/default --data data/sim/train data/real/train \\
        --val-data data/sim/val --image-topic /camera/image_raw --action-topic /cmd_vel --out out/anchor

The model's encoder, decoder and dynamics graphs stay as they are (their latents come from ONNX
Runtime); the stage writes OUT/anchor.pt (resumable with --resume) and OUT/anchor_summary.json,
then adds anchor.onnx (hash, parity check, model.json "anchor" section) to --model. See
sora_ros/model/anchor_trainer.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sora_ros.cli.arguments import fraction, non_negative_float, out_dir, positive_float, positive_int, random_seed
from sora_ros.cli.stage import run_stage

# Weight of the motion loss, in log10 MSE units per target pixel beyond a pixel: the distance between
# the warp's motion and the optical flow from the true frame k back to the last frame, where that flow
# passes a forward-backward check and the commands are known. Trained on the photometric loss alone,
# 0.4.3's anchored decoder left the motion at k x flow (what a command does to it went unlearned); at
# 0.3 the action gap on fresh sim episodes rose from +0.7..+1.4 to +2.2..+3.5 dB, but real footage
# without commands lost up to 1.6 dB (README, "Motion labels"): off until a retrain keeps both.
MOTION_WEIGHT = 0.0


def main(args: argparse.Namespace) -> int:
    from sora_ros.runtime.anchor import ANCHOR_FILE

    return run_stage(args, "train-anchor", "sora_ros.model.anchor_trainer:train_anchor", "anchor.pt", ANCHOR_FILE)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.core.paths import default_model_dir

    parser = subparsers.add_parser(
        "train-anchor",
        help="train the anchored decoder (predictions warped from the last real frame) of an exported model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="exported model directory to train for and add to")
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH", help="bags, folders of them, video files")
    parser.add_argument("--val-data", nargs="+", metavar="PATH", help="held-out bags/videos for validation PSNR")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="camera topic (default %(default)s)")
    parser.add_argument("--action-topic", help="Twist/TwistStamped topic the model is conditioned on (e.g. /cmd_vel)")
    parser.add_argument("--sequence-frames", type=positive_int, default=16, help="frames per in-memory sequence (default 16)")
    parser.add_argument("--width", type=positive_int, default=32, help="conv channels of the anchored decoder (default 32)")
    parser.add_argument("--init", type=Path, metavar="MODEL_DIR",
                        help="fine-tune the anchored decoder of this model directory (its weights.safetensors), e.g. "
                             "the parent after sora-ros train --init --train-parts vae dit; fewer --steps do")  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=800, help="optimiser steps (default 800)")
    parser.add_argument("--batch", type=positive_int, default=32, help="samples per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default 1e-3)")
    parser.add_argument("--teacher-fraction", type=fraction, default=0.1,
                        help="share of the steps on encoder latents of the real futures only; after it, every "
                             "sample but the still frames uses DiT-predicted latents (default 0.1)")
    parser.add_argument("--plan", action=argparse.BooleanOptionalAction, default=True,
                        help="feed the rollout's commands up to each step (the graph's `plan` input; models "
                             "with actions; default on). --no-plan: a graph without it, as before 0.4.0")
    parser.add_argument("--motion-weight", type=non_negative_float, default=MOTION_WEIGHT,
                        help="weight of the motion labels (DIS flow from the true future frame back to the last one, "
                             "where commands are known) in the loss, per target pixel of distance beyond 1; 0: the "
                             "photometric loss alone (default %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="bf16: bfloat16 autocast")
    parser.add_argument("--seed", type=random_seed, default=0, help="initial weights and batches")
    parser.add_argument("--out", type=out_dir, required=True, help="run directory: anchor.pt, anchor_summary.json")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/anchor.pt")
    parser.add_argument("--val-every", type=positive_int, default=250, help="validate every N steps (default 250)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=250, help="write the checkpoint every N steps")
    parser.add_argument("--no-export", action="store_true", help="only train; do not add anchor.onnx to --model")
    parser.add_argument("--force", action="store_true", help="replace the anchor.onnx --model already has (refused "
                        "before any work without it)")
    parser.set_defaults(func=main)
