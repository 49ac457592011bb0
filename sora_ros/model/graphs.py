"""The modules exported to ONNX: thin wrappers fixing each graph's inputs, outputs and value ranges.

Input and output names, shapes and dtypes are the model contract, defined once
in sora_ros/runtime/model_dir.py (`graph_signatures`); the order of `forward`
arguments here follows it.
"""

from __future__ import annotations

import torch
from torch import nn

from sora_ros.model.dit import DiT
from sora_ros.model.vae import VAE, images_to_signed, signed_to_images


class EncoderGraph(nn.Module):
    """image uint8 (B, H, W, 3) RGB in [0, 255] -> latent float32 (B, C, h, w), scaled posterior mean."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images_to_signed(image))


class DecoderGraph(nn.Module):
    """latent float32 (B, C, h, w) -> image float32 (B, H, W, 3) RGB in [0, 1]."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return signed_to_images(self.vae.decode(latent))


class DynamicsContextGraph(nn.Module):
    """context (B, K, C, h, w), context_noise (B,) -> context_kv (B, L, 2, K * N, D); see `DiT.context_kv`."""

    def __init__(self, dit: DiT) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, context: torch.Tensor, context_noise: torch.Tensor) -> torch.Tensor:
        return self.dit.context_kv(context, context_noise)


class DynamicsStepGraph(nn.Module):
    """context_kv, noisy (B, C, h, w), flow_time (B,)[, action (B, A)] -> velocity (B, C, h, w).

    One sampler step; see `DiT.velocity`. The action input exists only when A > 0. With a
    per-frame context the keys/values come as 2L inputs (B, K * N, D), a layer's keys then its
    values: the runtime keeps them in place as the window slides, and the graph reads each
    where it lies (one stacked input costs a copy of all of them per step).
    """

    def __init__(self, dit: DiT) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.dit.per_frame:
            layers = 2 * self.dit.config.dit.depth
            context_kv, (noisy, flow_time, *action) = inputs[:layers], inputs[layers:]
        else:
            context_kv, noisy, flow_time, *action = inputs
        return self.dit.velocity(context_kv, noisy, flow_time, *action)
