"""Losses and one optimiser step, for `sora-ros train` and the tests.

Training runs in two stages: the VAE on single frames (`vae_loss`), then,
with the VAE frozen and `calibrate_latent_scale` applied, the DiT on clips of
latents (`encode_frames` then `dynamics_loss`). `train_step` is the same for
both and works with any torch optimiser and with DDP-wrapped modules.

Example (one DiT step on a batch of clips and cmd_vel actions):

    latents = encode_frames(vae, clips)                   # (B, T, C, h, w)
    metrics = train_step(dit, optimizer, lambda: dynamics_loss(dit, latents, actions))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from sora_ros.core.psnr import psnr_from_mse
from sora_ros.model.config import ActionSpec
from sora_ros.model.dit import DiT
from sora_ros.model.vae import VAE, images_to_signed

LossFn = Callable[[], tuple[torch.Tensor, dict[str, float]]]

# Frames encoded per forward pass in `encode_frames` and `calibrate_latent_scale`.
ENCODE_CHUNK = 256
# Default gradient-norm clip for `train_step`.
MAX_GRAD_NORM = 1.0


def signed_psnr(mse: torch.Tensor) -> float | np.ndarray:
    """PSNR in dB (sora_ros.core.psnr, capped at PSNR_CAP_DB for the JSON logs) of mean
    squared errors measured on images in [-1, 1].

    Args:
        mse: a scalar or (B,) tensor, any float dtype and device.

    Returns:
        A float for a scalar, else float64 (B,).
    """
    # [-1, 1] -> [0, 1] divides the error by 2, the squared error by 4.
    return psnr_from_mse(mse.detach().float().cpu().numpy() / 4.0, capped=True)


def vae_loss(vae: VAE, images: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction (L1 + MSE) plus weighted KL of a batch of frames.

    Args:
        vae: the VAE being trained.
        images: uint8 (..., H, W, 3) RGB in [0, 255], e.g. (B, H, W, 3) or clips (B, T, H, W, 3).
        generator: randomness of the posterior sample (None: torch's global generator).

    Returns:
        (loss, metrics) with metrics "l1", "kl" and "psnr" (dB, of the sampled reconstruction).
    """
    x = images_to_signed(images.reshape(-1, *images.shape[-3:]))  # (B, 3, H, W)
    mean, logvar = vae.posterior(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, device=mean.device)
    recon = vae.decoder(z)
    l1 = (recon - x).abs().mean()
    mse = ((recon - x) ** 2).mean()
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).mean()
    loss = l1 + mse + vae.config.kl_weight * kl
    metrics = {"l1": l1.item(), "kl": kl.item(), "psnr": signed_psnr(mse)}
    return loss, metrics


@torch.no_grad()
def encode_frames(vae: VAE, images: torch.Tensor) -> torch.Tensor:
    """Scaled deterministic latents of uint8 frames, without gradients.

    Args:
        images: uint8 (..., H, W, 3) RGB, e.g. clips (B, T, H, W, 3).

    Returns:
        float32 (..., C, h, w).
    """
    flat = images.reshape(-1, *images.shape[-3:])  # (B * T, H, W, 3)
    latents = torch.cat([vae.encode(images_to_signed(chunk)) for chunk in flat.split(ENCODE_CHUNK)])
    return latents.reshape(*images.shape[:-3], *latents.shape[1:])  # (..., C, h, w)


@torch.no_grad()
def reconstruction_psnr(vae: VAE, images: torch.Tensor) -> np.ndarray:
    """PSNR in dB of each frame's deterministic reconstruction (encode, then decode), as `signed_psnr`.

    Args:
        images: uint8 (B, H, W, 3) RGB.

    Returns:
        float64 (B,).
    """
    scores = []
    for chunk in images.split(ENCODE_CHUNK):
        x = images_to_signed(chunk)  # (b, 3, H, W)
        recon = vae.decode(vae.encode(x)).clamp(-1, 1)
        scores.append(signed_psnr(((recon - x) ** 2).mean(dim=(1, 2, 3))))  # (b,)
    return np.concatenate(scores)


@torch.no_grad()
def calibrate_latent_scale(vae: VAE, *images: torch.Tensor) -> float:
    """Set `vae.latent_scale` so that the scaled latents of `images` have unit standard deviation.

    Args:
        images: uint8 (..., H, W, 3) RGB, a representative sample of the training frames: one
            tensor per input size (a bucket each), their latents pooled.

    Returns:
        The new scale.
    """
    vae.latent_scale.fill_(1.0)
    std = torch.cat([encode_frames(vae, batch).flatten() for batch in images]).std().item()
    vae.latent_scale.fill_(1.0 / max(std, 1e-6))
    return vae.latent_scale.item()


def normalise_actions(actions: torch.Tensor, spec: ActionSpec) -> torch.Tensor:
    """Physical actions (..., A) -> what the network sees, (actions - offset) / scale."""
    offset = torch.tensor(spec.offset, dtype=actions.dtype, device=actions.device)
    scale = torch.tensor(spec.scale, dtype=actions.dtype, device=actions.device)
    return (actions - offset) / scale


def dynamics_loss(dit: DiT, latents: torch.Tensor, actions: torch.Tensor | None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Rectified-flow loss of predicting every frame of a clip from the K frames before it.

    Each clip of T frames gives T - K training windows. The context is noised to a random
    level in [0, max_context_noise] (the level is a model input), the target to a flow time
    drawn from a logit-normal distribution.

    Args:
        dit: the DiT being trained.
        latents: float32 (B, T, C, h, w) scaled latents from `encode_frames`, T > K.
        actions: float32 (B, T, A) physical actions, actions[:, t] applied at frame t;
            NaN rows where unknown (footage without commands); None when the model is unconditioned.
        generator: randomness of noise and times (None: torch's global generator).

    Returns:
        (loss, metrics) with metric "mse" (velocity error).

    Raises:
        ValueError: the clip is too short or the actions do not match the model.
    """
    cfg = dit.config.dit
    k = cfg.context_frames
    b, t_len = latents.shape[:2]
    if t_len <= k:
        raise ValueError(f"clips need more than {k} frames, got {t_len}")
    if (actions is None) != (cfg.action_dim == 0):
        raise ValueError(f"model action_dim is {cfg.action_dim}, actions given: {actions is not None}")
    windows = t_len - k
    index = torch.arange(windows)[:, None] + torch.arange(k)[None, :]  # (W, K)
    context = latents[:, index].flatten(0, 1)  # (B * W, K, C, h, w)
    target = latents[:, k:].flatten(0, 1)  # (B * W, C, h, w)
    action = None
    if actions is not None:
        action = normalise_actions(actions[:, k - 1:-1], dit.config.actions).flatten(0, 1)  # (B * W, A)
        dropped = torch.rand((action.shape[0], 1), generator=generator, device=action.device) < cfg.action_dropout
        action = torch.where(dropped, torch.full_like(action, float("nan")), action)  # NaN: unknown

    def randn(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=latents.device)

    n = context.shape[0]
    level = torch.rand((n,), generator=generator, device=latents.device) * cfg.max_context_noise
    context = (1 - level[:, None, None, None, None]) * context + level[:, None, None, None, None] * randn(context.shape)
    flow_time = torch.sigmoid(randn((n,)))  # logit-normal
    noise = randn(target.shape)
    noisy = (1 - flow_time[:, None, None, None]) * target + flow_time[:, None, None, None] * noise
    velocity = dit(context, level, noisy, flow_time, action)
    mse = ((velocity - (noise - target)) ** 2).mean()
    return mse, {"mse": mse.item()}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
               max_grad_norm: float = MAX_GRAD_NORM) -> dict[str, float]:
    """One optimiser step: zero grads, loss, backward, clip, step.

    Args:
        model: the module whose parameters `optimizer` updates (may be DDP-wrapped).
        optimizer: any torch optimiser.
        loss_fn: computes (loss, metrics) of the current batch, e.g. a lambda around `vae_loss`.
        max_grad_norm: gradient-norm clip.

    Returns:
        metrics of `loss_fn` plus "loss" and "grad_norm" (before clipping).

    Raises:
        FloatingPointError: the loss is NaN or infinite (the step is not taken).
    """
    optimizer.zero_grad(set_to_none=True)
    loss, metrics = loss_fn()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss {loss.item()}")
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return {**metrics, "loss": loss.item(), "grad_norm": grad_norm.item()}
