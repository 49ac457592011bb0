"""Run under torchrun by the DDP test: train a few steps, then each rank writes a hash of its weights."""

import argparse
import hashlib
import sys
from pathlib import Path

import torch.distributed as dist

from sora_ros.cli.train import add_arguments
from sora_ros.model.trainer import Trainer, init_distributed


def weights_hash(*modules) -> str:
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    args.command = " ".join(sys.argv)
    info = init_distributed()
    trainer = Trainer(args, info)
    trainer.run()
    Path(args.out, f"rank{info.rank}.sha256").write_text(weights_hash(trainer.vae, trainer.dit))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
