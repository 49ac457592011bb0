#!/usr/bin/env python3
"""How far can the VAE's reconstruction go? Train VAE variants on the same frames and
report held-out PSNR as training goes on.

A research tool, not part of the package: it answers whether the reconstruction target
is limited by the architecture or by the training compute a 2-core CPU gives, so it runs
on any torch device (a GPU trains the long variants in minutes).

    # here: cut the training, validation and test frames out of the bags into one file
    scripts/vae_sweep.py dump data/sim/train data/real/train --val data/sim/val --test data/sim/test \
        --out frames.npz
    # anywhere with torch: one variant per process, JSON lines to stdout and --log
    scripts/vae_sweep.py train frames.npz --name c32 --steps 30000 --set latent_channels=32

The training loop is sora-ros train's VAE stage (same loss, optimiser, learning-rate
schedule, batch sampling); validation is every frame of --val and --test, PSNR per frame
averaged, as the trainer reports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sora_ros.cli.arguments import positive_float, positive_int, random_seed  # noqa: E402  (the CLI's range checks)


def dump(args: argparse.Namespace) -> None:
    from sora_ros.bag.clip_sources import load_sequences
    from sora_ros.model.config import preset

    config = preset("cpu64")
    size = (config.vae.image_height, config.vae.image_width)
    read = dict(image_topic=args.image_topic, action_topic=None, dt=config.dt, length=16,
                size_for=lambda height, width: size, action_names=config.actions.names)

    def frames(paths: list[str], every: int) -> np.ndarray:
        data = load_sequences(paths, **read).by_size[size].frames  # (N, S, H, W, 3): every camera cropped to one size
        return data[:, ::every].reshape(-1, *data.shape[2:])

    arrays = {"train": frames(args.data, args.train_every), "val": frames(args.val, 1), "test": frames(args.test, 1)}
    np.savez_compressed(args.out, **arrays)
    print({k: v.shape for k, v in arrays.items()}, f"{Path(args.out).stat().st_size / 2**20:.1f} MiB")


def vae_override(text: str) -> tuple[str, object]:
    """FIELD=JSON -> (field, value), for --set: refused at parsing when the field is not one of
    VAEConfig's or the value is not JSON (lists become tuples, as the config stores them)."""
    from sora_ros.model.config import VAEConfig

    key, sep, value = text.partition("=")
    fields = [f.name for f in dataclasses.fields(VAEConfig)]
    if not sep or key not in fields:
        raise argparse.ArgumentTypeError(f"must be FIELD=JSON with FIELD one of {', '.join(fields)}, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{key}'s value {value!r} is not JSON ({error.msg}); "
                                         f"e.g. {key}=32 or {key}=[64,128]") from None
    return key, tuple(parsed) if isinstance(parsed, list) else parsed


def train(args: argparse.Namespace) -> None:
    import torch

    from sora_ros.model.config import VAEConfig
    from sora_ros.model.training import reconstruction_psnr, train_step, vae_loss
    from sora_ros.model.vae import VAE
    from sora_ros.model.trainer import learning_rate

    config = dataclasses.replace(VAEConfig(), **dict(args.set))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = np.load(args.frames)
    train_frames = torch.from_numpy(data["train"]).to(device)  # (N, H, W, 3) uint8
    held_out = {split: torch.from_numpy(data[split]).to(device) for split in ("val", "test")}
    vae = VAE(config).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    log = open(args.log, "a") if args.log else None

    def evaluate() -> dict[str, float]:
        vae.eval()
        scores = {f"{split}_psnr": round(reconstruction_psnr(vae, frames).mean().item(), 3)
                  for split, frames in held_out.items()}
        vae.train()
        return scores

    def emit(entry: dict) -> None:
        line = json.dumps({"name": args.name, **entry})
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()

    emit({"config": dataclasses.asdict(config), "steps": args.steps, "batch": args.batch, "lr": args.lr,
          "bf16": args.bf16, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
          "params": sum(p.numel() for p in vae.parameters())})

    def loss(batch: torch.Tensor):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=args.bf16):
            return vae_loss(vae, batch, generator)

    began = time.monotonic()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        batch = train_frames[torch.from_numpy(rng.integers(len(train_frames), size=args.batch)).to(device)]
        train_step(vae, optimizer, lambda batch=batch: loss(batch))
        done = step + 1 == args.steps
        if (step + 1) % args.eval_every == 0 or done:
            emit({"step": step + 1, "wall_s": round(time.monotonic() - began, 1), **evaluate()})
        if time.monotonic() - began > args.max_seconds:
            emit({"step": step + 1, "wall_s": round(time.monotonic() - began, 1), "stopped": "max-seconds",
                  **evaluate()})
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("dump", help="bags -> frames.npz (train, val, test frames at 64x64)")
    d.add_argument("data", nargs="+", help="training bags or folders of bags")
    d.add_argument("--val", nargs="+", required=True)
    d.add_argument("--test", nargs="+", required=True)
    d.add_argument("--image-topic", default="/camera/image_raw")
    d.add_argument("--train-every", type=positive_int, default=1,
                   help="keep every n-th training frame of each clip, at least 1 (default 1)")
    d.add_argument("--out", required=True)
    t = commands.add_parser("train", help="train one VAE variant, print held-out PSNR as it goes")
    t.add_argument("frames", help="file written by dump")
    t.add_argument("--name", required=True)
    t.add_argument("--set", type=vae_override, action="append", default=[], metavar="FIELD=JSON",
                   help="VAEConfig field override, e.g. latent_channels=32 or channels=[64,128,256,256]")
    t.add_argument("--steps", type=positive_int, default=4500, help="optimiser steps, at least 1 (default 4500)")
    t.add_argument("--batch", type=positive_int, default=32, help="frames per step, at least 1 (default 32)")
    t.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate, above 0 (default 1e-3)")
    t.add_argument("--eval-every", type=positive_int, default=1500,
                   help="steps between held-out evaluations, at least 1 (default 1500)")
    t.add_argument("--max-seconds", type=positive_float, default=float("inf"),
                   help="stop after this many seconds of training, above 0 (default: no limit)")
    t.add_argument("--seed", type=random_seed, default=0, help="initial weights and batches, 0 to 2^32 - 1 (default 0)")
    t.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast")
    t.add_argument("--log", help="also append the JSON lines to this file")
    args = parser.parse_args()
    dump(args) if args.command == "dump" else train(args)


if __name__ == "__main__":
    main()
