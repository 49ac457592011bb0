"""The PyTorch model: configs, shapes, checkpoints, and that a training step lowers the loss."""

from __future__ import annotations

import pytest
import torch

from model_helpers import tiny_modules
from sora_ros.model.checkpoint import load_checkpoint, save_checkpoint
from sora_ros.model.config import PRESETS, ModelConfig, VAEConfig, preset
from sora_ros.model.dit import DiT
from sora_ros.core.psnr import PSNR_CAP_DB
from sora_ros.model.training import (calibrate_latent_scale, dynamics_loss, encode_frames, signed_psnr, train_step,
                                     vae_loss)
from sora_ros.model.vae import VAE

STEPS = 15
CLIP_FRAMES = 5


def _clips(config: ModelConfig, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    shape = (batch, CLIP_FRAMES, config.vae.image_height, config.vae.image_width, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)  # (B, T, H, W, 3)


def _actions(config: ModelConfig, batch: int = 2) -> torch.Tensor | None:
    if config.dit.action_dim == 0:
        return None
    return torch.randn((batch, CLIP_FRAMES, config.dit.action_dim), generator=torch.Generator().manual_seed(1))


def _fixed(loss_fn):
    """The loss with the same noise every call, so that successive values are comparable."""
    return lambda: loss_fn(torch.Generator().manual_seed(7))


def test_presets_are_consistent():
    for name, config in PRESETS.items():
        assert ModelConfig.from_dict(config.to_dict()) == config, name
        c, h, w = config.vae.latent_shape
        assert (h * config.vae.downsample, w * config.vae.downsample) == (config.vae.image_height,
                                                                            config.vae.image_width)
    assert preset("cpu64").vae.latent_shape == (16, 8, 8)
    assert preset("cpu64").tokens_per_frame == 16
    with pytest.raises(KeyError, match="cpu64"):
        preset("no-such-preset")


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        VAEConfig(image_height=60)
    with pytest.raises(ValueError, match="action spec"):
        preset("tiny").replace(dit=preset("tiny-unconditioned").dit)


@pytest.mark.parametrize("name", ["tiny", "tiny-wide"])
def test_shapes_follow_the_image(name):
    config = preset(name)
    vae, dit = tiny_modules(name)
    clips = _clips(config)
    latents = encode_frames(vae, clips)
    c, h, w = config.vae.latent_shape
    assert latents.shape == (2, CLIP_FRAMES, c, h, w)
    assert w / h == config.vae.image_width / config.vae.image_height  # aspect ratio kept
    k = config.dit.context_frames
    kv = dit.context_kv(latents[:, :k], torch.zeros(2))
    assert kv.shape == (2, config.dit.depth, 2, k * config.tokens_per_frame, config.dit.width)
    velocity = dit.velocity(kv, latents[:, k], torch.full((2,), 0.5), _actions(config)[:, 0])
    assert velocity.shape == (2, c, h, w)
    assert vae.decode(latents[:, 0]).shape == (2, 3, config.vae.image_height, config.vae.image_width)


def test_actions_condition_the_prediction():
    config = preset("tiny")
    vae, dit = tiny_modules("tiny")
    latents = encode_frames(vae, _clips(config))
    k = config.dit.context_frames
    kv = dit.context_kv(latents[:, :k], torch.zeros(2))
    args = (kv, latents[:, k], torch.full((2,), 0.5))
    assert not torch.allclose(dit.velocity(*args, torch.zeros(2, 2)), dit.velocity(*args, torch.ones(2, 2)))


def test_vae_training_step_lowers_the_loss():
    config = preset("tiny")
    vae = VAE(config.vae)
    clips = _clips(config)
    loss = _fixed(lambda g: vae_loss(vae, clips, g))
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    before = loss()[0].item()
    metrics = [train_step(vae, optimizer, loss) for _ in range(STEPS)]
    assert loss()[0].item() < 0.9 * before
    assert {"loss", "grad_norm", "psnr", "kl", "l1"} <= set(metrics[-1])


@pytest.mark.parametrize("name", ["tiny", "tiny-unconditioned"])
def test_dynamics_training_step_lowers_the_loss(name):
    config = preset(name)
    vae = VAE(config.vae)
    clips = _clips(config)
    calibrate_latent_scale(vae, clips)
    latents = encode_frames(vae, clips)
    assert latents.std().item() == pytest.approx(1.0, rel=1e-3)
    dit = DiT(config)
    actions = _actions(config)
    loss = _fixed(lambda g: dynamics_loss(dit, latents, actions, g))
    optimizer = torch.optim.AdamW(dit.parameters(), lr=2e-3)
    before = loss()[0].item()
    for _ in range(STEPS):
        train_step(dit, optimizer, loss)
    assert loss()[0].item() < 0.9 * before


def test_dynamics_loss_refuses_bad_batches():
    config = preset("tiny")
    dit = DiT(config)
    latents = torch.zeros(1, config.dit.context_frames, *config.vae.latent_shape)
    with pytest.raises(ValueError, match="more than"):
        dynamics_loss(dit, latents, torch.zeros(1, config.dit.context_frames, 2))
    with pytest.raises(ValueError, match="action_dim"):
        dynamics_loss(dit, torch.zeros(1, CLIP_FRAMES, *config.vae.latent_shape), None)


def test_non_finite_loss_stops_the_step():
    vae = VAE(preset("tiny").vae)
    optimizer = torch.optim.SGD(vae.parameters(), lr=0.1)
    before = [p.clone() for p in vae.parameters()]
    with pytest.raises(FloatingPointError):
        train_step(vae, optimizer, lambda: (torch.tensor(float("nan"), requires_grad=True), {}))
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))


def test_checkpoint_round_trip(tmp_path):
    vae, dit = tiny_modules("tiny-wide")
    vae.latent_scale.fill_(0.5)
    path = tmp_path / "model.pt"
    save_checkpoint(path, dit.config, vae, dit, step=12, optimizer={"lr": 1e-3})
    loaded = load_checkpoint(path)
    assert loaded.config == dit.config
    assert loaded.extra == {"step": 12, "optimizer": {"lr": 1e-3}}
    for a, b in ((vae, loaded.vae), (dit, loaded.dit)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_checkpoint_refuses_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a sora_ros checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("kept", [0.5, 0.1])  # torch fails on these in two ways: miniz's words, "Invalid argument"
def test_a_truncated_checkpoint_is_one_line_naming_the_file_and_what_to_do(tmp_path, kept):
    vae, dit = tiny_modules()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, dit.config, vae, dit, step=1)
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * kept)])
    with pytest.raises(ValueError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (f"{path}: truncated or damaged (a copy cut short, a full disk?); use an earlier "
                                 "checkpoint (e.g. the run's checkpoint_best.pt) or train again")


def test_signed_psnr_is_the_core_psnr_of_a_quarter_of_the_mse_capped_for_logs():
    # An error of 0.2 on [-1, 1] is 0.1 on [0, 1]: MSE 0.01, 20 dB.
    assert signed_psnr(torch.tensor(0.04)) == pytest.approx(20.0)
    assert signed_psnr(torch.tensor(0.0, dtype=torch.bfloat16)) == PSNR_CAP_DB  # identical: finite in JSON
    assert signed_psnr(torch.tensor([0.4, 0.004])).tolist() == pytest.approx([10.0, 30.0])
