"""The NumPy sampler, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sora_ros.runtime import sampler

LATENT = (2, 2, 2)  # (C, h, w)


def test_euler_timesteps():
    np.testing.assert_allclose(sampler.euler_timesteps(4), [1.0, 0.75, 0.5, 0.25, 0.0])
    with pytest.raises(ValueError):
        sampler.euler_timesteps(0)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_an_exact_velocity_lands_on_the_data(steps):
    """On the straight path x_t = (1 - t) data + t noise the velocity is (x_t - data) / t, and Euler
    integration from t = 1 to 0 is exact: each predicted frame must equal what the oracle wants."""
    k, horizon = 2, 3
    context = np.zeros((1, k, *LATENT), np.float32)

    def context_fn(window, level):
        assert window.shape == (1, k, *LATENT) and level.shape == (1,)
        return window.copy()  # the "keys/values": the window itself

    def velocity_fn(kv, x, t, action):
        target = kv[:, -1] + action[:, :1, None, None]  # next frame = last frame + action[0]
        return (x - target) / t[:, None, None, None]

    actions = np.array([[[1.0], [2.0], [-0.5]]], np.float32)  # (B, H, A)
    out = sampler.rollout(context_fn, velocity_fn, context, actions, horizon, steps, 0.0, np.random.default_rng(0))
    expected = np.cumsum(actions[0, :, 0])  # 1, 3, 2.5: autoregressive, each frame builds on the last
    np.testing.assert_allclose(out[0, :, 0, 0, 0], expected, atol=1e-5)


def test_context_noise_level():
    rng = np.random.default_rng(0)
    context = np.ones((1, 2, *LATENT), np.float32)
    assert sampler.noise_context(context, 0.0, rng) is context
    noised = sampler.noise_context(context, 0.5, np.random.default_rng(1))
    noise = np.random.default_rng(1).standard_normal(context.shape, dtype=np.float32)
    np.testing.assert_allclose(noised, 0.5 * context + 0.5 * noise, rtol=1e-6)


def test_a_shared_context_computes_the_first_frames_keys_values_once_per_sample():
    """Candidates x samples rows from one context: the first frame's window is the same for every
    candidate (same latents, same noise), so the context pass runs on the S distinct rows only; the
    prediction is what the full-batch pass gives."""
    k, horizon, candidates, samples = 2, 3, 4, 2
    rng = np.random.default_rng(0)
    context = np.repeat(rng.standard_normal((1, k, *LATENT), dtype=np.float32), candidates * samples, axis=0)
    actions = rng.standard_normal((candidates * samples, horizon, 1), dtype=np.float32)
    batches = []

    def context_fn(window, level):
        batches.append(len(window))
        return window * 2.0 + level[:, None, None, None, None]

    def velocity_fn(kv, x, t, action):
        return x - kv[:, -1] - action[:, :1, None, None]

    def run(shared):
        batches.clear()
        out = sampler.rollout(context_fn, velocity_fn, context, actions, horizon, 2, 0.1, np.random.default_rng(3),
                              noise_period=samples, shared_context=shared)
        return out, list(batches)

    full, full_batches = run(False)
    once, once_batches = run(True)
    assert full_batches == [candidates * samples] * horizon
    assert once_batches == [samples] + [candidates * samples] * (horizon - 1)
    np.testing.assert_array_equal(once, full)
    assert not np.allclose(full[0], full[samples]), "candidates must differ by their actions"
