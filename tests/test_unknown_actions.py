"""A NaN action means "unknown": the model uses its learned stand-in, in torch and through ONNX Runtime."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from model_helpers import export_tiny, tiny_modules  # noqa: E402

from sora_ros.model.config import preset  # noqa: E402
from sora_ros.model.training import dynamics_loss  # noqa: E402
from sora_ros.runtime.engine import WorldModelEngine  # noqa: E402


def test_nan_action_selects_the_unknown_embedding():
    _, dit = tiny_modules()
    with torch.no_grad():
        dit.unknown_action.normal_()
        k, (c, h, w) = dit.config.dit.context_frames, dit.config.vae.latent_shape
        kv = dit.context_kv(torch.randn(3, k, c, h, w), torch.zeros(3))
        noisy, t = torch.randn(3, c, h, w), torch.full((3,), 0.5)
        unknown = dit.velocity(kv, noisy, t, torch.full((3, 2), float("nan")))
        zero = dit.velocity(kv, noisy, t, torch.zeros(3, 2))
        mixed = dit.velocity(kv, noisy, t, torch.tensor([[float("nan"), float("nan")], [0.0, 0.0], [1.0, -1.0]]))
    assert torch.isfinite(unknown).all()
    assert not torch.allclose(unknown, zero), "unknown must differ from standing still"
    torch.testing.assert_close(mixed[0], unknown[0])
    torch.testing.assert_close(mixed[1], zero[1])


def test_training_on_footage_without_actions_gives_a_finite_loss():
    _, dit = tiny_modules()
    latents = torch.randn(2, 4, *dit.config.vae.latent_shape)
    actions = torch.full((2, 4, 2), float("nan"))
    loss, _ = dynamics_loss(dit, latents, actions, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    assert dit.unknown_action.grad.abs().sum() > 0, "footage without actions must train the stand-in"


def test_engine_accepts_unknown_actions_and_refuses_inf(tmp_path):
    engine = WorldModelEngine(export_tiny(tmp_path / "m"))
    k, shape = preset("tiny").dit.context_frames, engine.info.latent_shape
    context = np.random.default_rng(0).standard_normal((k, *shape)).astype(np.float32)
    unknown = engine.rollout(context, np.full((3, 2), np.nan, np.float32), samples=1, seed=0)
    assert np.isfinite(unknown.latents).all()
    with pytest.raises(ValueError, match="Inf"):
        engine.rollout(context, np.full((3, 2), np.inf, np.float32), samples=1, seed=0)
