"""Convolutional KL-VAE: image -> grid of patch latents -> image.

Images inside the network are float (B, 3, H, W) in [-1, 1]. Latents leave the
VAE multiplied by `latent_scale` (a buffer set from data after VAE training),
so the DiT sees roughly unit-variance latents and flow-matching noise N(0, 1)
is on the same scale; `decode` undoes the scale.
"""

from __future__ import annotations

import torch
from torch import nn

from sora_ros.model.config import VAEConfig

# GroupNorm groups; every conv width in the presets divides by it.
NORM_GROUPS = 8
# Clamp on the predicted log-variance, keeps exp() finite early in training.
LOGVAR_RANGE = (-30.0, 20.0)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(NORM_GROUPS, channels), channels)


class ResBlock(nn.Module):
    """Pre-norm residual block of two 3x3 convs; keeps (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> posterior mean and log-variance, each (B, C, h, w)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.latent_channels = config.latent_channels
        widths = config.channels
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        for level, (width, blocks) in enumerate(zip(widths, config.encoder_blocks)):
            if level > 0:
                layers += [nn.SiLU(), nn.Conv2d(widths[level - 1], width, 3, stride=2, padding=1)]
            layers += [ResBlock(width) for _ in range(blocks)]
        layers += [_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], 2 * config.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = self.net(x)  # (B, 2 * C, h, w)
        return moments[:, :self.latent_channels], moments[:, self.latent_channels:].clamp(*LOGVAR_RANGE)


class Decoder(nn.Module):
    """(B, C, h, w) unscaled latents -> (B, 3, H, W) in about [-1, 1]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = config.channels[::-1]
        blocks = config.decoder_blocks[::-1]
        layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)]
        for level, (width, count) in enumerate(zip(widths, blocks)):
            if level > 0:
                layers += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(widths[level - 1], width, 3, padding=1)]
            layers += [ResBlock(width) for _ in range(count)]
        layers += [_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VAE(nn.Module):
    """Encoder + decoder + the latent scale.

    Args:
        config: sizes; `config.latent_shape` is the (C, h, w) of one frame's latents.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latent_scale", torch.ones(()))

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled posterior mean and log-variance (B, C, h, w) of float images (B, 3, H, W) in [-1, 1]."""
        return self.encoder(images)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic scaled latents (B, C, h, w) of float images (B, 3, H, W) in [-1, 1]."""
        mean, _ = self.encoder(images)
        return mean * self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, H, W), about [-1, 1], from scaled latents (B, C, h, w)."""
        return self.decoder(latents / self.latent_scale)


# uint8 [0, 255] <-> the [-1, 1] the networks work in.
PIXEL_HALF_RANGE = 127.5


def images_to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB in [0, 255] -> float (B, 3, H, W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / PIXEL_HALF_RANGE - 1.0  # (B, 3, H, W)


def signed_to_images(x: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) in [-1, 1] -> float (B, H, W, 3) in [0, 1], clipped."""
    return ((x.permute(0, 2, 3, 1) + 1.0) * 0.5).clamp(0.0, 1.0)  # (B, H, W, 3)
