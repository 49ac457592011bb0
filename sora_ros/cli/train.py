"""`sora-ros train`: train the world model on bags and videos, VAE first, then the DiT, or
fine-tune an exported model on your own robot's bags (--init):

    sora-ros train --init models/default --data my_bags/train --val-data my_bags/val \\
        --image-topic /camera/image_raw --action-topic /cmd_vel --out out/mine --minutes 10
    sora-ros export --checkpoint out/mine/checkpoint.pt --out models/mine

A fine-tune starts from the model directory's weights.safetensors (VAE, DiT and anchored
decoder), trains the DiT with the VAE frozen unless --train-parts says otherwise, at a third of
the from-scratch learning rate, constant after a short warm-up, and validates before its first
step, so the log shows the parent's numbers on your data first. The export records the parent.

Single process on the CPU, or several under torchrun with DistributedDataParallel
(gloo on CPU, nccl on GPU):

    sora-ros train --data runs/train --val-data runs/val --image-topic /camera/image_raw \\
        --action-topic /cmd_vel --out out/train
    torchrun --nproc-per-node 4 -m sora_ros.cli.train --data ... --out ...

Every rank holds the data and draws its own batches (seeded by rank); DDP
averages the gradients, so all ranks keep identical weights. Rank 0 alone
validates, writes checkpoints and the log. `--resume` continues from the
checkpoint in --out, stage and step included; an --out that holds a run is refused without
--resume, or --force (start over: the run's files are replaced).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sora_ros.cli.arguments import action_topic_status, \
    finite_float, non_negative_int, out_dir, out_dir_problem, positive_float, \
    positive_int, positive_int_up_to, random_seed, refused

# Batch caps per process: the largest that the default cpu64 preset trains in under 20 GB (measured
# peaks: VAE 1024 frames 12.7 GB, DiT 512 windows 18.4 GB); a larger batch is more processes (torchrun).
MAX_VAE_BATCH, MAX_DIT_BATCH = 1024, 512


def main(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("sora-ros train needs the training extra: pip install -e '.[train]'", file=sys.stderr)
        return 2
    if refused("train", "--out", out_dir_problem(args.out) or _occupied_problem(args)):  # before the data is read
        return 2
    if not hasattr(args, "command"):  # recorded in the checkpoint and model.json
        args.command = " ".join(["sora-ros train", *sys.argv[2:]])
    from sora_ros.bag.reading import BagError
    from sora_ros.model.trainer import CHECKPOINT_NAME, LOG_NAME, Trainer, init_distributed, verdict
    from sora_ros.runtime.model_dir import ModelDirError

    # A topic no training bag has (a typo) would train an action-conditioned model on no action.
    status = action_topic_status("train", args.data, args.action_topic,
                                 "; name the topic your bags recorded, or leave --action-topic out (a model without "
                                 "actions; with --init, the parent's actions kept)")
    if status is not None:
        return status

    dist_info = init_distributed()
    try:
        trainer = Trainer(args, dist_info)
        summary = trainer.run()
    except (ValueError, FileNotFoundError, FloatingPointError, BagError, ModelDirError) as error:
        print(f"sora-ros train: {error}", file=sys.stderr)
        return 1
    finally:
        if dist_info.world_size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if not dist_info.is_main:
        return 0
    out = Path(args.out)
    trainer.log(f"done: {out / CHECKPOINT_NAME} (last)")
    best = summary.get("best_checkpoint")
    if best:
        trainer.log(f"best by validation: {best['path']} (DiT step {best['step']}, mean PSNR {best['mean_psnr']:.2f} dB "
                    f"over the validated horizons); export it with sora-ros export --checkpoint {best['path']}")  # fmt: skip
    trainer.log(_plot_curves(out / LOG_NAME))
    vae = summary["state"]["val"].get("vae", {})
    if "recon_psnr" in vae:
        trainer.log(f"VAE reconstruction on validation frames: {vae['recon_psnr']:.2f} dB")
    for line in verdict(summary["state"]["val"]):
        trainer.log(line)
    if "parent" in summary:
        trainer.log(_gain_over_parent(out / LOG_NAME, summary["parent"]["id"]))
    return 0


def _occupied_problem(args: argparse.Namespace) -> str | None:
    """Why --out needs --resume or --force (it holds a run's files), or None: a new run there would
    overwrite its checkpoints and mix its log into the new one's."""
    from sora_ros.model.trainer import CHECKPOINT_NAME, run_files

    if args.resume or getattr(args, "force", False):
        return None
    if (Path(args.out) / CHECKPOINT_NAME).is_file():
        return (f"{args.out} holds a training run ({CHECKPOINT_NAME}): pass --resume to continue it, or --force to "
                "start over (its files are replaced)")  # fmt: skip
    found = [path.name for path in run_files(Path(args.out))]
    if found:  # e.g. a run stopped before its first checkpoint: nothing to resume
        return (f"{args.out} holds files of a training run ({', '.join(found)}) but no {CHECKPOINT_NAME} to resume: "
                "pass --force to start over (they are replaced), or choose another --out")  # fmt: skip
    return None


def _gain_over_parent(log_path: Path, parent: str) -> str:
    """One line: the DiT's validation before the first fine-tuning step (the parent's) and at the end."""
    import json

    validations = [e["val"] for e in map(json.loads, log_path.read_text().splitlines())
                   if e.get("stage") == "dit" and "val" in e]  # fmt: skip
    first, last = validations[0], validations[-1]
    horizons = sorted({k.split("_")[0] for k in first if k.endswith("_psnr") and "copy" not in k})
    return f"on your validation data, parent {parent} -> fine-tuned: " + ", ".join(
        f"{h[0]}={h[1:]} {first[f'{h}_psnr']:.2f} -> {last[f'{h}_psnr']:.2f} dB" for h in horizons)


def _plot_curves(log_path: Path) -> str:
    """Write the curves PNG beside the log; the line that says where (or why not)."""
    from sora_ros.evaluation.training_curves import CURVES_NAME, plot_training_curves

    if not log_path.is_file():  # e.g. --vae-steps 0 --dit-steps 0 from scratch: nothing was logged
        (log_path.parent / CURVES_NAME).unlink(missing_ok=True)  # an earlier run's, after --force
        return "no training curves: the run took no step and validated nothing"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "no training curves: matplotlib is in the eval extra (pip install -e '.[eval]')"
    return f"training curves: {plot_training_curves(log_path, log_path.parent / CURVES_NAME)}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sora_ros.model.config import CONTEXT_ATTENTION, PRESETS

    data = parser.add_argument_group("data")
    data.add_argument("--data", nargs="+", required=True, metavar="PATH",
                      help="rosbag2 bags (MCAP/sqlite3), folders of them, and video files")  # fmt: skip
    data.add_argument("--val-data", nargs="+", metavar="PATH",
                      help="held-out bags/videos (recommended). Without it every tenth bag or video (at least one) "
                           "is held out, or, from a single source, every tenth sequence")  # fmt: skip
    data.add_argument("--image-topic", help="camera topic in the bags (Image or CompressedImage)")
    data.add_argument("--action-topic", help="Twist/TwistStamped topic (e.g. /cmd_vel); omit for an unconditioned model")
    data.add_argument("--sequence-frames", type=positive_int, default=40, help="frames per in-memory sequence")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=sorted(PRESETS),
                       help="model size preset (default cpu64); with --init, the architecture the parent must have")
    model.add_argument("--name", default="default", help="model name written to model.json")
    model.add_argument("--action-names", nargs="+", metavar="FIELD",
                       help="Twist fields the model is conditioned on (default: the preset's or the parent's, "
                            "linear_x angular_z); with --init, names the parent lacks start at zero")  # fmt: skip
    model.add_argument("--action-scale", nargs="+", type=positive_float, metavar="S",
                       help="per action, above 0: the network sees (action - offset) / scale; give your robot's top speeds "
                            "where the parent had 0.5 m/s and 1.0 rad/s (default: the parent's or preset's)")  # fmt: skip
    model.add_argument("--action-offset", nargs="+", type=finite_float, metavar="O", help="per action (default 0)")
    model.add_argument("--context-attention", choices=CONTEXT_ATTENTION,
                       help="what a context frame's tokens attend to: 'frame' (their own frame; its keys/values are "
                            "computed once and kept as the window slides: faster rollouts) or 'window' (all context "
                            "frames; models up to 0.4) (default: the preset's or the parent's; with --init, another "
                            "value converts the parent)")  # fmt: skip
    tune = parser.add_argument_group("fine-tuning")
    tune.add_argument("--init", type=Path, metavar="MODEL_DIR",
                      help="fine-tune this exported model directory (its weights.safetensors) instead of training "
                           "from scratch; e.g. models/default")  # fmt: skip
    tune.add_argument("--train-parts", nargs="+", choices=("vae", "dit"),
                      help="parts a fine-tune trains; the others stay frozen, bit for bit (default: dit)")
    tune.add_argument("--minutes", type=positive_float,
                      help="stop after this many CPU-minutes of training steps (all threads together; validation and "
                           "checkpoints not counted): 10 is 5 wall minutes of an idle 2-core machine; from "
                           "scratch the VAE gets 60%% of it")  # fmt: skip
    tune.add_argument("--snapshot-minutes", nargs="+", type=positive_float, metavar="M",
                      help="also write RUN/checkpoint_<M>min.pt when the training's CPU-minutes pass each M; with "
                           "--schedule constant that is what a run with --minutes M gives")  # fmt: skip
    steps = parser.add_argument_group("optimisation (AdamW, linear warm-up then cosine decay)")
    steps.add_argument("--vae-steps", type=non_negative_int, default=3000,
                       help="optimiser steps of the VAE stage (0: none)")
    steps.add_argument("--vae-batch", type=positive_int_up_to(MAX_VAE_BATCH), default=64,
                       help=f"frames per VAE step (per process), 1 to {MAX_VAE_BATCH}")
    steps.add_argument("--vae-lr", type=positive_float, help="peak learning rate of the VAE (default 1e-3; fine-tuning 3e-4)")
    steps.add_argument("--dit-steps", type=non_negative_int, default=3000,
                       help="optimiser steps of the DiT stage (0: none)")
    steps.add_argument("--dit-batch", type=positive_int_up_to(MAX_DIT_BATCH), default=32,
                       help=f"windows per DiT step (per process), 1 to {MAX_DIT_BATCH}")
    steps.add_argument("--dit-lr", type=positive_float, help="peak learning rate of the DiT (default 3e-4; fine-tuning 1e-4)")
    steps.add_argument("--schedule", choices=("cosine", "constant"),
                       help="after the warm-up: cosine decay to 10%% of the peak (default), or constant (fine-tuning)")
    steps.add_argument("--warmup-steps", type=non_negative_int, help="linear warm-up steps per stage (default 100; fine-tuning 20)")
    steps.add_argument("--dit-targets", type=positive_int, default=4, help="predicted frames per training window")
    steps.add_argument("--seed", type=random_seed, default=0, help="initial weights, batches and noise")
    steps.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                       help="bf16: bfloat16 autocast for the forward pass (weights and optimiser stay float32); "
                            "on a CPU it pays off only with AVX512-BF16 or AMX (lscpu flags)")  # fmt: skip
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=out_dir, required=True,
                     help="run directory: checkpoint.pt (last), checkpoint_best.pt (best DiT validation), "
                          "train_log.jsonl, train_curves.png, train_summary.json")  # fmt: skip
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    again.add_argument("--force", action="store_true",
                       help="start a new run in an --out that holds one: its checkpoints, log, summary and curves "
                            "are replaced (without it, or --resume, such an --out is refused)")  # fmt: skip
    run.add_argument("--val-every", type=positive_int, default=500, help="validate every N steps")
    run.add_argument("--checkpoint-every", type=positive_int, default=500, help="write the checkpoint every N steps")
    run.add_argument("--log-every", type=positive_int, default=50, help="append metrics to the log every N steps")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the world model on bags and videos (VAE, then DiT)",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=main)


if __name__ == "__main__":  # torchrun -m sora_ros.cli.train ...
    cli = argparse.ArgumentParser(prog="python -m sora_ros.cli.train", description=__doc__, formatter_class=HelpFormatter)
    add_arguments(cli)
    namespace = cli.parse_args()
    namespace.command = " ".join(["python -m sora_ros.cli.train", *sys.argv[1:]])
    sys.exit(main(namespace))
