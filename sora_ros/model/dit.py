"""Diffusion transformer that predicts the next latent frame from K context frames.

Tokens are p x p patches of latent cells. The sequence is K context frames
followed by the noisy target frame; attention is block-causal: context tokens
attend to context tokens only, target tokens attend to everything. Context
tokens are modulated (adaLN-Zero) by the context noise level, target tokens by
flow time plus the action. Nothing about the context depends on flow time, so

    context_kv(context, noise_level)            once per predicted frame
    velocity(context_kv, noisy, t, action)      once per sampler step

is the same function as one full pass, split where the sampler can reuse work.
These two methods are also the two dynamics ONNX graphs.

With `context_attention = "frame"` a context token attends within its own frame
only: `context_kv` of F frames is F independent passes, a frame's keys/values
never change once computed, and a rollout keeps them as the window slides (one
new frame's tokens per predicted frame). The predicted frame then tells the
context frames apart by learned per-layer slot embeddings, added to the keys
and values of the frame in each window slot (oldest first) in `velocity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sora_ros.model.config import ModelConfig

# Sinusoidal embedding size for the scalar conditions (flow time, noise level).
FREQUENCY_EMBED_DIM = 256
# Scalars in [0, 1] are stretched to this range before the sinusoidal embedding.
SCALAR_EMBED_SCALE = 1000.0
# Wavelength base of every sinusoidal embedding.
MAX_PERIOD = 10000.0
LAYER_NORM_EPS = 1e-6


def _sincos(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(P,) integer positions -> (P, dim) float32 sin/cos features."""
    half = dim // 2
    omega = 1.0 / MAX_PERIOD ** (torch.arange(half, dtype=torch.float32) / half)  # (dim / 2,)
    angles = positions.float()[:, None] * omega[None, :]  # (P, dim / 2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def position_embedding(frames: torch.Tensor, grid_h: int, grid_w: int, width: int) -> torch.Tensor:
    """Fixed spatio-temporal embedding (F, grid_h * grid_w, width) of the (F,) frame indices
    `frames`: sincos of the row in half the features and of the column in the other half, plus a
    sincos of the frame index.

    Defined for any token grid, and a cell (row, column) gets the same embedding in every grid
    that has it: one set of weights serves every aspect ratio (sora_ros.core.patch_grid). Built
    from torch ops on the sizes, so an ONNX graph traced through it computes it from its input's
    shape (a dynamic token count)."""
    half = width // 2
    ys = torch.arange(grid_h)[:, None].expand(grid_h, grid_w).reshape(-1)  # (N,) row of each token
    xs = torch.arange(grid_w)[None, :].expand(grid_h, grid_w).reshape(-1)  # (N,) column of each token
    spatial = torch.cat([_sincos(ys, half), _sincos(xs, width - half)], dim=1)  # (N, D)
    temporal = _sincos(frames, width)  # (F, D)
    return temporal[:, None, :] + spatial[None, :, :]  # (F, N, D)


class ScalarEmbedder(nn.Module):
    """(B,) scalar in [0, 1] -> (B, D) via sinusoidal features and an MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        half = FREQUENCY_EMBED_DIM // 2
        freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs)
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_EMBED_DIM, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        angles = (s * SCALAR_EMBED_SCALE)[:, None] * self.freqs[None, :]  # (B, F / 2)
        return self.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention of q (B, N, D) over keys/values (B, M, D) -> (B, N, D)."""
    b, n, d = q.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, -1, heads, d // heads).transpose(1, 2)  # (B, heads, N or M, D / heads)

    attn = F.scaled_dot_product_attention(split(q), split(keys), split(values))
    return attn.transpose(1, 2).reshape(b, n, d)  # (B, N, D)


class _MultiHeadAttention(torch.autograd.Function):
    """`_attention`, exported as one ONNX Runtime MultiHeadAttention node (com.microsoft domain,
    scale 1 / sqrt(D / heads) by default, as here). Traced as eight or so reshapes, transposes and
    scalings per block that ONNX Runtime runs one by one on every call (context keys/values
    included, at every sampler step); the fused CPU kernel splits the heads itself."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, heads: int) -> torch.Tensor:
        return _attention(q, keys, values, heads)

    @staticmethod
    def symbolic(g, q, keys, values, heads: int):
        out = g.op("com.microsoft::MultiHeadAttention", q, keys, values, num_heads_i=heads)
        out.setType(q.type())  # (B, N, D) like the queries: keeps the exporter's shape inference whole
        return out


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation from a (B, D) condition."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.width = width
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=LAYER_NORM_EPS)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Six (B, 1, D) tensors: shift, scale, gate for attention, then for the MLP."""
        return self.ada(cond).unsqueeze(1).chunk(6, dim=-1)

    def project(self, x: torch.Tensor, mod: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values, each (B, N, D), of tokens x (B, N, D)."""
        qkv = self.qkv(_modulate(self.norm1(x), mod[0], mod[1]))  # (B, N, 3 * D)
        d = self.width  # static slices keep the widths known to ONNX shape inference (chunk loses them)
        return qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def update(self, x: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               mod: tuple[torch.Tensor, ...], frames: int | None = None) -> torch.Tensor:
        """Attention of x's queries q (B, N, D) over keys/values (B, M, D), then the MLP. With
        `frames`, x holds that many frames' tokens one after another (N = M = F * n) and each
        token attends within its own frame only."""
        b, _, d = q.shape
        if frames is not None:  # (B * F, n, D): a frame per row
            q, keys, values = (t.reshape(b * frames, -1, d) for t in (q, keys, values))
        if torch.onnx.is_in_onnx_export():
            attn = _MultiHeadAttention.apply(q, keys, values, self.heads)  # (B, N, D)
        else:
            attn = _attention(q, keys, values, self.heads)  # (B, N, D)
        x = x + mod[2] * self.proj(attn.reshape(b, -1, d))
        return x + mod[5] * self.mlp(_modulate(self.norm2(x), mod[3], mod[4]))


class DiT(nn.Module):
    """Next-latent-frame predictor (velocity of rectified flow).

    Args:
        config: the whole model config (latent shape from `config.vae`, sizes from `config.dit`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dit = config.dit
        channels = config.vae.latent_channels
        p = dit.patch_size
        self.patch_embed = nn.Conv2d(channels, dit.width, p, stride=p)
        self.time_embed = ScalarEmbedder(dit.width)
        self.noise_embed = ScalarEmbedder(dit.width)
        self.action_embed = (
            nn.Sequential(nn.Linear(dit.action_dim, dit.width), nn.SiLU(), nn.Linear(dit.width, dit.width))
            if dit.action_dim else None
        )
        # Stands in for the action embedding where the action is unknown (NaN): footage without
        # commands, and the actions dropped in training so that the model learns both cases.
        self.unknown_action = nn.Parameter(torch.zeros(dit.width)) if dit.action_dim else None
        self.blocks = nn.ModuleList(Block(dit.width, dit.heads, dit.mlp_ratio) for _ in range(dit.depth))
        self.per_frame = dit.context_attention == "frame"
        # (L, 2, K, D): added to the keys, then the values, of the context frame in window slot k.
        self.slot_kv = (nn.Parameter(torch.zeros(dit.depth, 2, dit.context_frames, dit.width))
                        if self.per_frame else None)
        self.final_norm = nn.LayerNorm(dit.width, elementwise_affine=False, eps=LAYER_NORM_EPS)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dit.width, 2 * dit.width))
        self.final = nn.Linear(dit.width, p * p * channels)
        for layer in (self.final_ada[1], self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @staticmethod
    def drop_legacy(state: dict, prefix: str = "") -> None:
        """Remove from a state dict what older weights stored and this DiT computes: the position
        embedding of one fixed grid ("pos", up to model format 0.2.0)."""
        state.pop(prefix + "pos", None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.drop_legacy(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _tokens(self, latents: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, C, h, w) latents of the (F,) frame indices `frames` -> (B, F * N, D) embedded tokens,
        N = (h / p) * (w / p) for whatever grid the latents have."""
        b, f = latents.shape[:2]
        x = self.patch_embed(latents.flatten(0, 1))  # (B * F, D, h / p, w / p)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2).reshape(b, f, gh * gw, -1)  # (B, F, N, D)
        pos = position_embedding(frames, gh, gw, self.config.dit.width)  # (F, N, D)
        return (x + pos).reshape(b, f * gh * gw, -1)  # (B, F * N, D)

    def context_kv(self, context: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        """Per-layer keys and values of the context tokens.

        Args:
            context: (B, F, C, h, w) scaled latents (any grid h x w the patch size divides), oldest
                first, already noised to `noise_level`; F = K, or with per-frame context any F.
            noise_level: (B,) context noise level in [0, 1].

        Returns:
            (B, L, 2, F * N, D): keys then values, for every block.
        """
        # Per frame, every frame takes the same (slot-free) position: its keys/values fit any slot.
        frames = torch.zeros(1, dtype=torch.long) if self.per_frame else torch.arange(self.config.dit.context_frames)
        x = self._tokens(context, frames)  # (B, F * N, D)
        cond = self.noise_embed(noise_level)
        within = context.shape[1] if self.per_frame else None
        kv = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            mod = block.modulation(cond)
            q, keys, values = block.project(x, mod)
            kv.append(torch.stack([keys, values], dim=1))  # (B, 2, F * N, D)
            if i < last:  # the last block's context outputs are never attended to
                x = block.update(x, q, keys, values, mod, frames=within)
        return torch.stack(kv, dim=1)  # (B, L, 2, F * N, D)

    def velocity(self, context_kv: torch.Tensor | Sequence[torch.Tensor], noisy: torch.Tensor,
                 flow_time: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """Rectified-flow velocity (noise - data) of the target frame.

        Args:
            context_kv: (B, L, 2, K * N, D) from `context_kv`, or its 2L slices (B, K * N, D) in
                the order keys of layer 0, values of layer 0, keys of layer 1, ...
            noisy: (B, C, h, w) target latents at flow time t, on the grid of the context.
            flow_time: (B,) t in [0, 1]; 1 is pure noise.
            action: (B, A) normalised action applied at the last context frame; a row with NaN
                means "unknown"; None when A = 0.

        Returns:
            (B, C, h, w) velocity.
        """
        b, c, h, w = noisy.shape
        p = self.config.dit.patch_size
        x = self._tokens(noisy[:, None], torch.tensor([self.config.dit.context_frames]))  # (B, N, D)
        cond = self.time_embed(flow_time)
        if self.action_embed is not None:
            known = ~torch.isnan(action).any(dim=-1, keepdim=True)  # (B, 1)
            embedded = self.action_embed(torch.where(known, action, torch.zeros_like(action)))  # (B, D)
            cond = cond + torch.where(known, embedded, self.unknown_action)
        k = self.config.dit.context_frames

        def slotted(tokens: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
            """(B, K * N, D) plus slot (K, D), each window slot's row on its frame's N tokens."""
            return (tokens.unflatten(1, (k, -1)) + slot[:, None, :]).flatten(1, 2)

        for i, block in enumerate(self.blocks):
            mod = block.modulation(cond)
            q, keys, values = block.project(x, mod)
            if isinstance(context_kv, torch.Tensor):
                context_keys, context_values = context_kv[:, i, 0], context_kv[:, i, 1]  # (B, K * N, D) each
            else:
                context_keys, context_values = context_kv[2 * i], context_kv[2 * i + 1]
            if self.per_frame:
                context_keys = slotted(context_keys, self.slot_kv[i, 0])
                context_values = slotted(context_values, self.slot_kv[i, 1])
            keys = torch.cat([context_keys, keys], dim=1)  # (B, K * N + N, D)
            values = torch.cat([context_values, values], dim=1)  # (B, K * N + N, D)
            x = block.update(x, q, keys, values, mod)
        shift, scale = self.final_ada(cond).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, D) each
        out = self.final(_modulate(self.final_norm(x), shift, scale))  # (B, N, p * p * C)
        out = out.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, gh, p, gw, p)
        return out.reshape(b, c, h, w)  # (B, C, h, w)

    def forward(self, context: torch.Tensor, noise_level: torch.Tensor, noisy: torch.Tensor,
                flow_time: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """One full pass: `velocity(context_kv(context, noise_level), noisy, flow_time, action)`."""
        return self.velocity(self.context_kv(context, noise_level), noisy, flow_time, action)
