"""Checkpoints: plain state dicts plus the config dict, loadable with weights_only=True."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from sora_ros.model.config import ModelConfig
from sora_ros.model.dit import DiT
from sora_ros.model.vae import VAE

CHECKPOINT_FORMAT = "sora_ros.checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the modules built from the stored config, plus training state.

    Attributes:
        extra: whatever the trainer stored beside the weights (step, optimiser state dicts,
            data summary); plain tensors, numbers, strings, lists and dicts only.
    """

    config: ModelConfig
    vae: VAE
    dit: DiT
    extra: dict = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, config: ModelConfig, vae: VAE, dit: DiT, **extra) -> None:
    """Write a checkpoint atomically (temporary file, then rename).

    Args:
        path: destination file.
        config: the config both modules were built from.
        extra: training state to keep (plain data only, see `Checkpoint.extra`).
    """
    payload = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(),
               "vae": vae.state_dict(), "dit": dit.state_dict(), "extra": extra}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> Checkpoint:
    """Load a checkpoint without unpickling arbitrary objects (torch.load weights_only=True).

    Raises:
        ValueError: the file is not a sora_ros checkpoint or its weights do not fit its config.
    """
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a sora_ros checkpoint (expected format {CHECKPOINT_FORMAT})")
    config = ModelConfig.from_dict(payload["config"])
    vae, dit = VAE(config.vae), DiT(config)
    try:
        vae.load_state_dict(payload["vae"])
        dit.load_state_dict(payload["dit"])
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not match the stored config: {error}") from error
    return Checkpoint(config, vae, dit, payload.get("extra", {}))
