"""`sora-ros train-risk`: train the risk head of an exported model and add it to the model directory.

    sora-ros train-risk --model models/default --data data/sim/train --val-data data/sim/val \\
        --image-topic /camera/image_raw --action-topic /cmd_vel --odom-topic /odom --out out/risk

The head predicts, from the latents of the last --frames frames and the command that led into the
last one, the probability that the robot is blocked within the next --horizon-steps steps. Labels come from the bags themselves:
a step is blocked when cmd_vel commands forward motion (linear.x > --min-command) while the
odometry pose advances less than --progress-fraction of the commanded distance. Bags without the
odometry or command topic are skipped with a note; if none has them the stage stops and says so.
The model's graphs stay as they are (latents come from ONNX Runtime); the stage writes OUT/risk.pt
(resumable with --resume) and OUT/risk_summary.json, then adds risk.onnx (hash, parity check,
model.json "risk" section with the held-out AUC) to --model. See sora_ros/model/risk_trainer.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sora_ros.cli.arguments import float_between, fraction, non_negative_float, non_negative_int, out_dir, positive_float, \
    positive_int, random_seed, usage_check
from sora_ros.cli.stage import run_stage
from sora_ros.core.patch_grid import ASPECT_POLICIES

# The label's default horizon: blocked at the next step. The MPC averages the head's per-step
# readings over a candidate's own commands; an 8-step head read the recording's commands after each
# frame, and its planner collided 4x more (README, "The planner": "A head for one step").
PLANNER_HORIZON_STEPS = 1

def _frames_problem(args: argparse.Namespace) -> str | None:
    """--frames beyond the model's context length (sora_ros.cli.arguments.usage_check): refused before
    the stage loads the model and reads the bags. model.json is read only when --frames is given."""
    if not args.frames:
        return None
    from sora_ros.model.risk_trainer import window_frames
    from sora_ros.runtime.model_dir import ModelDirError, read_model_info

    try:
        window_frames(args.frames, args.model, read_model_info(args.model).context_frames)
    except ModelDirError:
        return None  # the stage says what is wrong with the model, as it does without --frames
    except ValueError as error:
        return str(error)
    return None


def main(args: argparse.Namespace) -> int:
    from sora_ros.runtime.risk import RISK_FILE

    return run_stage(args, "train-risk", "sora_ros.model.risk_trainer:train_risk", "risk.pt", RISK_FILE)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.core.paths import default_model_dir
    from sora_ros.core.risk import BlockedRule

    rule = BlockedRule()
    parser = subparsers.add_parser(
        "train-risk",
        help="train the risk head (P(blocked within k steps) from latents and actions) of an exported model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="exported model directory to train for and add to")
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH", help="bags or folders of them")
    parser.add_argument("--val-data", nargs="+", metavar="PATH", help="held-out bags for validation AUC (the best state is exported)")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="camera topic (default %(default)s)")
    parser.add_argument("--action-topic", default="/cmd_vel", help="Twist/TwistStamped command topic (default %(default)s)")
    parser.add_argument("--odom-topic", default="/odom", help="nav_msgs/Odometry topic (default %(default)s)")
    parser.add_argument("--horizon-steps", type=positive_int, default=PLANNER_HORIZON_STEPS,
                        help="label: blocked within this many model steps (default %(default)s: at the next step, "
                        "which the planner's MPC sums over a candidate's own commands; README, \"The planner\")")
    parser.add_argument("--min-command", type=non_negative_float, default=rule.min_command,
                        help="m/s; a forward command above it is a command to move (default %(default)s)")
    # Between 0 and 1, both excluded (BlockedRule): at 0 no step is blocked, at 1 every step is.
    parser.add_argument("--progress-fraction", type=float_between(0.0, 1.0, above=True, below=True),
                        default=rule.progress_fraction,
                        help="a step advancing less than this share (above 0, below 1) of the commanded distance "
                             "made no progress (default %(default)s)")
    parser.add_argument("--command-timeout", type=positive_float, default=rule.command_timeout_s,
                        help="s; an older command counts as a stop (default %(default)s)")
    parser.add_argument("--frames", type=non_negative_int, default=0,
                        help="latents per window the head sees, up to frame k: at most the model's context length "
                             "(model.json context_frames; default 0: all of it)")
    parser.add_argument("--width", type=positive_int, default=16,
                        help="conv channels of the head (default %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="MLP width of the head (default %(default)s)")
    parser.add_argument("--dropout", type=float_between(0.0, 1.0, below=True), default=0.5,
                        help="dropout before the head's last layer, 0 or more and below 1 (default %(default)s)")
    parser.add_argument("--mirror", action="store_true",
                        help="also train on every clip mirrored left-right (image flipped, turn commands negated): "
                             "for a robot symmetric about its forward axis with the camera on it")
    parser.add_argument("--aspect-policy", choices=ASPECT_POLICIES, default="refuse",
                        help="a camera whose aspect ratio lies outside the model's range: skip its clips (default), "
                             "or crop: train on its centred window in the range, as the node's aspect_policy:=crop")
    parser.add_argument("--steps", type=positive_int, default=3000, help="optimiser steps (default %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=128, help="samples per step (default %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default %(default)s)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=1e-2,
                        help="AdamW weight decay (default %(default)s)")
    parser.add_argument("--teacher-fraction", type=fraction, default=0.25,
                        help="share of the steps on encoder latents only; after it, half of each batch uses "
                             "DiT-predicted latents (default %(default)s)")
    parser.add_argument("--seed", type=random_seed, default=0, help="initial weights and batches")
    parser.add_argument("--out", type=out_dir, required=True, help="run directory: risk.pt, risk_summary.json")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/risk.pt")
    parser.add_argument("--val-every", type=positive_int, default=250, help="validate every N steps (default %(default)s)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=500, help="write the checkpoint every N steps")
    parser.add_argument("--no-export", action="store_true", help="only train; do not add risk.onnx to --model")
    parser.add_argument("--force", action="store_true", help="replace the risk.onnx --model already has (refused "
                        "before any work without it)")
    parser.set_defaults(func=main, check_usage=usage_check(parser, _frames_problem))
