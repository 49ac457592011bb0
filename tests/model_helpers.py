"""Tiny world models for the model, export and engine tests (seconds on a CPU)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from sora_ros.model.export import export_model
from sora_ros.model.config import preset
from sora_ros.model.dit import DiT
from sora_ros.model.vae import VAE
from sora_ros.runtime.model_dir import MODEL_JSON, sha256_file

# Spread of the noise added to every weight, so that zero-initialised layers (adaLN-Zero,
# the DiT output) give outputs that a broken graph could get wrong.
PERTURBATION = 0.05


@torch.no_grad()
def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.add_(PERTURBATION * torch.randn(parameter.shape, generator=generator))
    return module


def tiny_modules(name: str = "tiny", seed: int = 0, context_attention: str = "window") -> tuple[VAE, DiT]:
    torch.manual_seed(seed)
    config = preset(name)
    config = config.replace(dit=dataclasses.replace(config.dit, context_attention=context_attention))
    return randomise(VAE(config.vae), seed).eval(), randomise(DiT(config), seed + 1).eval()


def export_tiny(directory: Path, name: str = "tiny", seed: int = 0, context_attention: str = "window") -> Path:
    vae, dit = tiny_modules(name, seed, context_attention)
    export_model(vae, dit, directory, seed=seed)
    return directory


def rehash(model_dir: Path, file_name: str) -> None:
    """Make model.json agree with the file's current bytes (to test the checks after the hash)."""
    meta = json.loads((model_dir / MODEL_JSON).read_text())
    meta["files"][file_name] = sha256_file(model_dir / file_name)
    (model_dir / MODEL_JSON).write_text(json.dumps(meta))


def export_tiny_with_risk(directory: Path, horizon_steps: int = 3, seed: int = 0) -> Path:
    """A tiny model with a random tiny risk head (model.json "risk"): FutureFrames.risk is filled."""
    from sora_ros.model.export import export_risk
    from sora_ros.model.risk import RiskConfig, RiskGraph, RiskNet
    from sora_ros.runtime.model_dir import read_model_info

    export_tiny(directory, seed=seed)
    info = read_model_info(directory)
    torch.manual_seed(seed)
    net = randomise(RiskNet(RiskConfig(width=4, hidden=8, frames=info.context_frames), info.latent_shape,
                            info.action_offset, info.action_scale),
                    seed + 5).eval()
    export_risk(RiskGraph(net), directory, horizon_steps=horizon_steps, label="random (tests)", rule={}, metrics={})
    return directory
