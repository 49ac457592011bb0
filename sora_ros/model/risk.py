"""The risk head: the latents of the last W frames and the action that led into the last one ->
the logit of "blocked within the next k steps" (the label of sora_ros/core/risk.py).

Why W frames, not one: in the simulator most collisions are with something the camera has just
turned or driven past (the robot's side hits it), so a single frame often shows nothing to fear;
the frames before it still do (measured: see README, "The risk head").

Small on purpose: the W latent grids stacked as channels, two convolutions over the grid (keeping
where things are: an obstacle straight ahead matters, one at the side less), the action embedded
and added to the flattened features, then an MLP. Latents are standardised per channel with statistics of the training
latents, actions with the world model's own normalisation; both are buffers, so the exported
graph takes latents and physical actions as the runtime has them. Dreamer's reward and
continuation heads on latents are the idea; this is a much smaller one.

ONNX ops: Conv, Gelu (or its Erf decomposition), Flatten/Reshape, Gemm/MatMul, Add, Sub, Div, Sigmoid.

Legend: B batch, W window, C/h/w latent grid, A action dim.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RiskConfig:
    """Size of the risk head.

    Attributes:
        width: channels of the first convolution (the second has twice as many).
        hidden: width of the MLP.
        dropout: dropout before the last layer in training (small data).
        frames: W, latents per window (at most the world model's context length).
    """

    width: int = 16
    hidden: int = 64
    dropout: float = 0.5
    frames: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RiskConfig:
        return cls(**{k: data[k] for k in ("width", "hidden", "dropout", "frames") if k in data})


class RiskNet(nn.Module):
    """latents (B, W, C, h, w) oldest first, action (B, A) in physical units -> logit (B,).

    Args:
        config: its size.
        latent_shape: (C, h, w).
        action_offset, action_scale: the world model's action normalisation (A entries each; empty
            for an unconditioned model, which then takes no action input).
        latent_mean, latent_std: (C,) per-channel statistics of the training latents (default 0, 1).
    """

    def __init__(self, config: RiskConfig, latent_shape: tuple[int, int, int], action_offset: tuple[float, ...],
                 action_scale: tuple[float, ...], latent_mean: torch.Tensor | None = None,
                 latent_std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config, self.latent_shape, self.frames = config, tuple(latent_shape), config.frames
        channels, height, width = latent_shape
        self.action_dim = len(action_offset)
        self.register_buffer("latent_mean", torch.zeros(channels) if latent_mean is None else latent_mean.float())
        self.register_buffer("latent_std", torch.ones(channels) if latent_std is None else latent_std.float())
        self.register_buffer("action_offset", torch.tensor(action_offset, dtype=torch.float32))
        self.register_buffer("action_scale", torch.tensor(action_scale, dtype=torch.float32))
        self.features = nn.Sequential(
            nn.Conv2d(config.frames * channels, config.width, 3, padding=1), nn.GELU(),
            nn.Conv2d(config.width, 2 * config.width, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(),
        )
        flat = 2 * config.width * ((height + 1) // 2) * ((width + 1) // 2)
        self.project = nn.Linear(flat, config.hidden)
        self.action = nn.Linear(self.action_dim, config.hidden) if self.action_dim else None
        self.head = nn.Sequential(nn.GELU(), nn.Linear(config.hidden, config.hidden), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, 1))

    def forward(self, latents: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        x = (latents - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]  # (B, W, C, h, w)
        x = self.project(self.features(x.flatten(1, 2)))  # (B, W * C, h, w) -> (B, hidden)
        if self.action is not None:
            x = x + self.action((action - self.action_offset) / self.action_scale)  # (B, hidden)
        return self.head(x)[:, 0]  # (B,)


def prior_log_odds(positives: int, negatives: int) -> float:
    """The logit shift that turns a head trained with positives weighted by negatives / positives
    back into a probability: log(positives / negatives).

    Weighting the positives by w = negatives / positives multiplies the odds the loss is minimised
    at by w (Elkan 2001, "The foundations of cost-sensitive learning", Theorem 1; the prior
    correction of King and Zeng 2001): with 8% of the training frames positive, sigmoid(logit) of
    such a head reads 0.15 where the probability is 0.016. Adding log(1 / w) to the logit gives
    P(label | window, action) under the training data's label frequency.

    Raises:
        ValueError: a class without samples (no shift is defined).
    """
    if positives <= 0 or negatives <= 0:
        raise ValueError(f"the prior correction needs both classes, got {positives} positives and "
                         f"{negatives} negatives")
    return math.log(positives / negatives)


class RiskGraph(nn.Module):
    """What risk.onnx computes: the probability, sigmoid(logit + log_odds_shift), float32 (B,) in [0, 1].

    Args:
        net: the trained head.
        log_odds_shift: `prior_log_odds` of its class-weighted training (0: the logit is already calibrated).
    """

    def __init__(self, net: RiskNet, log_odds_shift: float = 0.0) -> None:
        super().__init__()
        self.net, self.log_odds_shift = net, float(log_odds_shift)

    def forward(self, latents: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.net(latents, action) + self.log_odds_shift)
