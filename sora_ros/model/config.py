"""Model configuration: one small dataclass per part, composed into `ModelConfig`,
with named size presets.

The config is plain data (no torch), stored in every checkpoint and in
model.json, so whoever loads a model can check what it is loading.

Shape legend used across sora_ros/model and sora_ros/runtime:
B batch, T time, K context frames, C channels, H/W image height/width,
h/w latent grid height/width, N tokens, D transformer width, L layers, A action dim.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sora_ros.core.patch_grid import PatchGrid

# The widest range of camera width / height a model trains on: within it every camera's token grid
# crops at most 18% of a side (sora_ros.core.patch_grid); training narrows it to its data's cameras.
ASPECT_RANGE = (1 / 3, 3.0)
# DiTConfig.context_attention values.
CONTEXT_ATTENTION = ("window", "frame")


@dataclass(frozen=True)
class VAEConfig:
    """Convolutional KL-VAE: RGB image (H, W) -> latent grid (C, H / f, W / f), f = 2 ** (levels - 1).

    Attributes:
        image_height, image_width: the reference input size in pixels (a multiple of the downsample
            factor): its pixel count is the model's budget. Being convolutional, the VAE takes any
            multiple of the downsample factor; each camera gets its own size at about this budget
            (`ModelConfig.patch_grid`).
        latent_channels: C, channels of one latent cell.
        channels: conv width per resolution level, full resolution first; each further level halves H and W.
        encoder_blocks, decoder_blocks: residual blocks per level (same order as `channels`).
        kl_weight: weight of the per-element KL term against the per-pixel reconstruction loss.
    """

    image_height: int = 64
    image_width: int = 64
    latent_channels: int = 16
    channels: tuple[int, ...] = (32, 64, 128, 128)
    encoder_blocks: tuple[int, ...] = (0, 1, 1, 1)
    decoder_blocks: tuple[int, ...] = (0, 1, 2, 2)
    kl_weight: float = 1e-4

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent grid."""
        return (self.latent_channels, self.image_height // self.downsample, self.image_width // self.downsample)

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.encoder_blocks) == len(self.decoder_blocks)):
            raise ValueError("channels, encoder_blocks and decoder_blocks need one entry per level")
        if self.image_height % self.downsample or self.image_width % self.downsample:
            raise ValueError(f"image size {self.image_height}x{self.image_width} is not a multiple of {self.downsample}")


@dataclass(frozen=True)
class DiTConfig:
    """Diffusion transformer over patch tokens of K context latent frames plus the predicted frame.

    Context tokens are conditioned on the context noise level only (never on flow time), and
    attend only to context tokens, so their per-layer keys and values are computed once per
    predicted frame and reused by every denoising step.

    Attributes:
        context_frames: K, latent frames the prediction is conditioned on.
        patch_size: latent cells per token side; the token grid is (h / p, w / p).
        width: D, the transformer width.
        depth: L, number of transformer blocks.
        heads: attention heads (width must divide by it).
        mlp_ratio: hidden width of the MLP as a multiple of D.
        action_dim: A, per-step action size; 0 means unconditioned.
        max_context_noise: training draws the context noise level uniformly from [0, this].
        action_dropout: fraction of training windows whose action is marked unknown (NaN).
        context_attention: what a context token attends to. "window": every context token of the
            K frames, so all K frames' keys/values change as the window slides and a rollout
            recomputes them for every predicted frame. "frame": its own frame's tokens only, so a
            frame's keys/values never change once computed and a rollout computes them once per
            frame (N new tokens per predicted frame instead of K * N); the predicted frame tells the
            context frames apart by learned per-layer slot embeddings added to their keys and values
            (context enters only through the predicted frame's attention, as in the CDiT of
            Navigation World Models, Bar et al. 2025).
    """

    context_frames: int = 4
    patch_size: int = 2
    width: int = 192
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    action_dim: int = 2
    max_context_noise: float = 0.3
    action_dropout: float = 0.1
    context_attention: str = "window"

    def __post_init__(self) -> None:
        if self.context_attention not in CONTEXT_ATTENTION:
            raise ValueError(f"context_attention must be one of {CONTEXT_ATTENTION}, got {self.context_attention!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} does not divide into {self.heads} heads")


@dataclass(frozen=True)
class ActionSpec:
    """What the action vector means. The network sees (action - offset) / scale.

    Attributes:
        names, units: one entry per action dimension (empty for an unconditioned model).
        offset, scale: normalisation, one entry per dimension.
    """

    names: tuple[str, ...] = ("linear_x", "angular_z")
    units: tuple[str, ...] = ("m/s", "rad/s")
    offset: tuple[float, ...] = (0.0, 0.0)
    scale: tuple[float, ...] = (0.5, 1.0)

    @property
    def dim(self) -> int:
        return len(self.names)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.units) == len(self.offset) == len(self.scale)):
            raise ValueError("action names, units, offset and scale need one entry per dimension")
        if any(s <= 0 for s in self.scale):
            raise ValueError("action scale entries must be positive")


NO_ACTIONS = ActionSpec(names=(), units=(), offset=(), scale=())


@dataclass(frozen=True)
class ModelConfig:
    """The whole world model: VAE, DiT, actions and the sampler defaults.

    Attributes:
        name: model name (written to model.json).
        dt: seconds between consecutive frames, observed and predicted.
        horizon: default number of predicted frames.
        sampler_steps: Euler steps per predicted frame; export writes it to model.json's sampler.steps,
            which the runtime reads (4 here for the GPU presets; cpu64 and the tiny ones set 2).
        context_noise: context noise level the runtime uses by default (in [0, max_context_noise]).
        aspect_range: (lowest, highest) camera width / height the model serves; training sets it
            to the range of its data's cameras (sora_ros.core.patch_grid).
    """

    name: str = "cpu64"
    vae: VAEConfig = field(default_factory=VAEConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    actions: ActionSpec = field(default_factory=ActionSpec)
    dt: float = 0.1
    horizon: int = 8
    sampler_steps: int = 4
    context_noise: float = 0.05
    aspect_range: tuple[float, float] = ASPECT_RANGE

    def __post_init__(self) -> None:
        if self.actions.dim != self.dit.action_dim:
            raise ValueError(f"action spec has {self.actions.dim} dims, DiT expects {self.dit.action_dim}")
        _, h, w = self.vae.latent_shape
        p = self.dit.patch_size
        if h % p or w % p:
            raise ValueError(f"latent grid {h}x{w} is not a multiple of patch size {p}")
        if not 0.0 <= self.context_noise <= self.dit.max_context_noise:
            raise ValueError("context_noise must lie in [0, dit.max_context_noise]")
        self.patch_grid  # raises ValueError on a bad aspect range

    @property
    def tokens_per_frame(self) -> int:
        """Tokens of one frame at the reference size: the budget every camera's grid keeps near."""
        _, h, w = self.vae.latent_shape
        return (h // self.dit.patch_size) * (w // self.dit.patch_size)

    @property
    def patch_grid(self) -> PatchGrid:
        """Chooses each camera's input size (sora_ros.core.patch_grid)."""
        return PatchGrid(self.vae.downsample * self.dit.patch_size, self.tokens_per_frame, tuple(self.aspect_range))

    def to_dict(self) -> dict:
        """Plain dict (lists, numbers, strings) for checkpoints and model.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of `to_dict`.

        Raises:
            ValueError: a field is unknown or a value is inconsistent.
        """

        def build(kind: type, values: dict):
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        top = dict(data)
        parts = {"vae": VAEConfig, "dit": DiTConfig, "actions": ActionSpec}
        for key, kind in parts.items():
            if key in top:
                top[key] = build(kind, top[key])
        return build(cls, top)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _tiny(height: int, width: int, actions: ActionSpec) -> ModelConfig:
    return ModelConfig(
        name=f"tiny{height}x{width}",
        vae=VAEConfig(image_height=height, image_width=width, latent_channels=4, channels=(8, 16, 16),
                      encoder_blocks=(0, 0, 1), decoder_blocks=(0, 0, 1)),
        dit=DiTConfig(context_frames=2, patch_size=2, width=32, depth=2, heads=2, action_dim=actions.dim),
        actions=actions,
        sampler_steps=2,
    )


PRESETS: dict[str, ModelConfig] = {
    # The CPU default: 64x64 -> 8x8x16 latents, 16 tokens per frame. 2 Euler steps per frame: with
    # anchored decoding as fast a rollout at no measured PSNR cost against 4 (README, "Sampler steps").
    # Per-frame context: a frame's keys/values are computed once per rollout (README, "Per-frame context").
    "cpu64": ModelConfig(sampler_steps=2, dit=DiTConfig(context_attention="frame")),
    # GPU sizes: same code, more pixels and a wider, deeper DiT.
    "gpu128": ModelConfig(
        name="gpu128",
        vae=VAEConfig(image_height=128, image_width=128, channels=(64, 128, 192, 256),
                      encoder_blocks=(1, 1, 1, 1), decoder_blocks=(1, 1, 2, 2)),
        dit=DiTConfig(width=384, depth=12, heads=6, context_attention="frame"),
    ),
    "gpu256": ModelConfig(
        name="gpu256",
        vae=VAEConfig(image_height=256, image_width=256, channels=(64, 128, 256, 256),
                      encoder_blocks=(1, 1, 2, 2), decoder_blocks=(1, 2, 2, 2)),
        dit=DiTConfig(width=768, depth=12, heads=12, context_attention="frame"),
    ),
    # Test sizes: seconds on a CPU.
    "tiny": _tiny(32, 32, ActionSpec()),
    "tiny-wide": _tiny(32, 48, ActionSpec()),
    "tiny-unconditioned": _tiny(32, 32, NO_ACTIONS),
}


def preset(name: str) -> ModelConfig:
    """The named preset.

    Raises:
        KeyError: no preset has that name (the message lists them).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
