"""The anchored decoder: predicted latents + the last real frames -> a motion field and a blend mask.

A predicted frame k is the last real frame warped backwards along `motion` and, where `mask`
says the warp has no good source (disocclusion, new content at the border), the VAE decoder's
image of the predicted latent blended in. The network runs at the model's resolution; the
runtime (sora_ros/runtime/anchor.py) upsamples the two fields to the camera's resolution and
warps the camera's own last frame, so output size follows the camera and static pixels stay sharp.

Ideas taken from the literature (no code): DMVFN and SimVP-style predictors warp the last frame
with a predicted flow and fuse through a sigmoid mask; DCVC codes a frame conditioned on its
reference; DIAMOND's upsampler is conditioned on the previous full-resolution frame. Here the
condition is the latent the DiT predicted and how well the VAE reconstructs the last frame (it
decides whether synthesis can be trusted), and a classical flow between the last two observed
frames is an input feature: the network predicts a correction to constant-velocity motion
(`step * flow`), starting from exactly zero, with the mask biased to the warp, so an untrained
or static case gives the last frame back. Nets with a `plan` input also see the actions commanded
up to step k (sora_ros.runtime.anchor.plan_features) and the pixel coordinates: the flow only
knows the motion so far, the command says how it changes (a turn shifts the view, driving
forward expands it from the centre, so the motion depends on where a pixel is).

Legend: B batch, H/W model image, h/w latent grid, C latent channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sora_ros.model.vae import ResBlock

# Pixels of motion correction per unit of the network's raw output (keeps the head near unit scale).
MOTION_SCALE = 4.0
# Classical flow is divided by this before entering the network (pixels at the model's resolution).
FLOW_INPUT_SCALE = 4.0
# Initial mask logit: sigmoid(-4) = 0.018, under the runtime's MASK_FLOOR (0.02): the warp everywhere.
MASK_INIT_LOGIT = -4.0
# Mask logit per unit of the network's raw output. Adam moves a parameter by about the learning rate
# per step whatever its gradient, so at gain 1 the logit could not leave its start in a few hundred
# steps (nets before `mask_gain` existed, gain 1 and start -6, never learned to blend).
MASK_GAIN = 4.0


@dataclass(frozen=True)
class AnchorConfig:
    """Size of the anchored decoder.

    Attributes:
        width: conv channels at half resolution (the network's main level).
        blocks: residual blocks per level (half and quarter resolution).
        horizon: the largest step it is trained for (step inputs are divided by it).
        plan_features: P of the `plan` input (sora_ros.runtime.anchor.plan_size(horizon, A));
            0: no plan input and no coordinate planes (graphs exported before them).
        mask_gain: the mask logit per unit of raw output (MASK_GAIN; 1.0 in configs written before it).
    """

    width: int = 32
    blocks: int = 1
    horizon: int = 8
    plan_features: int = 0
    mask_gain: float = MASK_GAIN

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AnchorConfig:
        fields = {k: data[k] for k in ("width", "blocks", "horizon", "plan_features", "mask_gain") if k in data}
        return cls(**{"mask_gain": 1.0, **fields})


class AnchorNet(nn.Module):
    """frames, flow, latent, context latent, step[, plan] -> motion (B, 2, H, W) and mask (B, 1, H, W).

    Args:
        config: its size.
        latent_channels: C of the world model's latents.
    """

    def __init__(self, config: AnchorConfig, latent_channels: int) -> None:
        super().__init__()
        self.config = config
        width = config.width
        image_in = 3 + 3 + 2 + 1 + 3  # previous, last, flow, step plane, |last - its reconstruction|
        if config.plan_features:
            image_in += 2  # x, y in [-1, 1]
            self.plan_in = nn.Sequential(nn.Linear(config.plan_features, width), nn.SiLU(), nn.Linear(width, width))
        self.full = nn.Sequential(nn.Conv2d(image_in, width // 2, 3, padding=1), nn.SiLU())
        self.down = nn.Sequential(nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.SiLU())
        self.latent_in = nn.Sequential(nn.Conv2d(3 * latent_channels, width, 1), nn.SiLU(), nn.Conv2d(width, width, 1))
        self.middle = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), *[ResBlock(width) for _ in range(config.blocks)])
        self.quarter = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1),
                                     *[ResBlock(width) for _ in range(config.blocks)])
        self.merge = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.SiLU())
        self.head = nn.Conv2d(width + width // 2, 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0, 0.0, MASK_INIT_LOGIT / config.mask_gain]))

    def forward(self, frames: torch.Tensor, flow: torch.Tensor, latent: torch.Tensor, context_latent: torch.Tensor,
                step: torch.Tensor, reconstruction: torch.Tensor,
                plan: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            frames: uint8 (B, 2, H, W, 3) RGB, the previous and the last observed frame.
            flow: float32 (B, 2, H, W): where each pixel of the last frame was in the previous one (pixels).
            latent: float32 (B, C, h, w), the predicted latent of step k.
            context_latent: float32 (B, C, h, w), the last observed frame's latent.
            step: float32 (B,), k >= 1.
            reconstruction: uint8 (B, H, W, 3), the VAE decoder's image of `context_latent`: where
                it differs from the last frame, the VAE cannot be trusted to fill in (real footage).
            plan: float32 (B, P), `plan_features` of the actions up to step k (nets with a plan input).

        Returns:
            motion float32 (B, 2, H, W): predicted(x) = last(x + motion(x)), pixels (dx, dy);
            mask float32 (B, 1, H, W) in [0, 1]: weight of the synthesised content.
        """
        b, _, height, width, _ = frames.shape
        images = frames.permute(0, 1, 4, 2, 3).reshape(b, 6, height, width).float() / 255.0  # (B, 6, H, W)
        steps = step.reshape(b, 1, 1, 1)
        plane = (steps / self.config.horizon).expand(b, 1, height, width)
        error = (images[:, 3:] - reconstruction.permute(0, 3, 1, 2).float() / 255.0).abs()  # (B, 3, H, W)
        features = [images, flow / FLOW_INPUT_SCALE, plane, error]
        if self.config.plan_features:
            ys = torch.linspace(-1.0, 1.0, height, dtype=images.dtype, device=images.device)
            xs = torch.linspace(-1.0, 1.0, width, dtype=images.dtype, device=images.device)
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
            features.append(torch.stack([grid_x, grid_y]).expand(b, 2, height, width))
        full = self.full(torch.cat(features, dim=1))  # (B, W/2, H, W)
        half = self.down(full)  # (B, D, H/2, W/2)
        if self.config.plan_features:
            half = half + self.plan_in(plan)[:, :, None, None]  # the command, everywhere
        lat = self.latent_in(torch.cat([latent, context_latent, latent - context_latent], dim=1))  # (B, D, h, w)
        lat = F.interpolate(lat, size=half.shape[-2:], mode="bilinear", align_corners=False)
        half = self.middle(torch.cat([half, lat], dim=1))
        quarter = F.interpolate(self.quarter(half), size=half.shape[-2:], mode="bilinear", align_corners=False)
        half = self.merge(torch.cat([half, quarter], dim=1))
        up = F.interpolate(half, size=(height, width), mode="bilinear", align_corners=False)
        out = self.head(torch.cat([up, full], dim=1))  # (B, 3, H, W)
        motion = steps * flow + MOTION_SCALE * out[:, :2]
        return motion, torch.sigmoid(self.config.mask_gain * out[:, 2:])


def backward_warp(image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Sample `image` (B, 3, H, W) at x + motion(x), motion (B, 2, H, W) in pixels of `image`;
    outside the frame the border is repeated (as cv2.BORDER_REPLICATE in the runtime)."""
    b, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=image.dtype, device=image.device),
                            torch.arange(width, dtype=image.dtype, device=image.device), indexing="ij")
    x = (xs + motion[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0  # (B, H, W)
    y = (ys + motion[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([x, y], dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def upsampled_motion(motion: torch.Tensor, size: tuple[int, int], base: torch.Tensor | None = None) -> torch.Tensor:
    """Motion (B, 2, H, W) in model pixels -> (B, 2, Ht, Wt) in pixels of the target size `size`
    (bilinear, values rescaled), plus `base` (B, 2, Ht, Wt) when given: what `compose` warps by."""
    scale = torch.tensor([size[1] / motion.shape[-1], size[0] / motion.shape[-2]], dtype=motion.dtype,
                         device=motion.device).reshape(1, 2, 1, 1)
    motion = F.interpolate(motion, size=size, mode="bilinear", align_corners=False) * scale
    return motion if base is None else motion + base


def compose(last: torch.Tensor, synthesis: torch.Tensor, motion: torch.Tensor, mask: torch.Tensor,
            base: torch.Tensor | None = None) -> torch.Tensor:
    """The anchored prediction at the resolution of `last`, as the runtime builds it.

    Args:
        last: float (B, 3, Ht, Wt) in [0, 1], the last real frame at the target resolution.
        synthesis: float (B, 3, H, W) in [0, 1], the decoder's image at the model resolution.
        motion, mask: at the model resolution (B, 2|1, H, W); with `base`, `motion` is the
            correction (AnchorNet's motion minus step * its flow input).
        base: float (B, 2, Ht, Wt) motion in target pixels added after upsampling (step times the
            flow computed at the target resolution), or None.

    Returns:
        float (B, 3, Ht, Wt) in [0, 1].
    """
    size = last.shape[-2:]
    motion = upsampled_motion(motion, size, base)
    mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
    synthesis = F.interpolate(synthesis, size=size, mode="bilinear", align_corners=False)
    return (1.0 - mask) * backward_warp(last, motion) + mask * synthesis
