"""Few-step rectified-flow sampler and the autoregressive latent rollout, in NumPy.

Flow convention (shared with training, sora_ros/model/training.py):
    x_t = (1 - t) * data + t * noise,   velocity = noise - data,
sampling integrates dx/dt = velocity from t = 1 (noise) to t = 0 (data) with
Euler steps. The network calls are passed in as two functions, so the same
loop runs ONNX Runtime sessions (the engine) or torch modules (training
validation, the torch-eager benchmark baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np

from sora_ros.runtime.model_dir import layer_kv

# context (B, K, C, h, w), noise level (B,) -> context keys/values (B, L, 2, K * N, D)
ContextFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# context keys/values (or, cached, their 2L per-layer slices), noisy (B, C, h, w), flow time (B,),
# action (B, A) or None -> velocity (B, C, h, w)
VelocityFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


def euler_timesteps(steps: int) -> np.ndarray:
    """Flow times from 1 (noise) down to 0 (data), `steps + 1` values, float32.

    Raises:
        ValueError: steps < 1.
    """
    if steps < 1:
        raise ValueError(f"sampler steps must be at least 1, got {steps}")
    return np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...], period: int | None = None) -> np.ndarray:
    """float32 noise of `shape`; with `period`, row r of the batch gets the noise of row r % period."""
    if period is None or period == shape[0]:
        return rng.standard_normal(shape, dtype=np.float32)
    rows = rng.standard_normal((period, *shape[1:]), dtype=np.float32)
    return np.tile(rows, (shape[0] // period, *([1] * (len(shape) - 1))))


def noise_context(context: np.ndarray, level: float, rng: np.random.Generator, period: int | None = None) -> np.ndarray:
    """Context latents moved to flow time `level` (the model's guard against drift); level 0 returns them as is."""
    if level == 0.0:
        return context
    noise = standard_normal(rng, context.shape, period)
    return ((1.0 - level) * context + level * noise).astype(np.float32)


def _layer_slices(kv: np.ndarray, cache: list[np.ndarray] | None, rows: int) -> list[np.ndarray]:
    """(P, L, 2, T, D) keys/values -> 2L contiguous (rows, T, D) arrays (into `cache` when given),
    row r holding row r % P (P divides rows): a shared context is copied once, not tiled first."""
    layers = layer_kv(kv)
    if cache is None:
        cache = [np.empty((rows, *layer.shape[1:]), layer.dtype) for layer in layers]
    for target, layer in zip(cache, layers, strict=True):
        target.reshape(rows // len(layer), *layer.shape)[:] = layer
    return cache


def rollout(context_fn: ContextFn, velocity_fn: VelocityFn, context: np.ndarray, actions: np.ndarray | None,
            horizon: int, steps: int, context_noise: float, rng: np.random.Generator,
            noise_period: int | None = None, shared_context: bool = False, cached_context: bool = False,
            cache: list[np.ndarray] | None = None,
            turn: Callable[[], AbstractContextManager] = nullcontext) -> np.ndarray:
    """Predict `horizon` latent frames autoregressively, never leaving latent space.

    Args:
        context_fn, velocity_fn: the two dynamics networks (see module docstring).
        context: (B, K, C, h, w) float32 latents, oldest first.
        actions: (B, horizon, A) float32 normalised actions, actions[:, i] applied at the frame
            before predicted frame i; None for an unconditioned model.
        horizon: frames to predict.
        steps: Euler steps per frame.
        context_noise: context noise level in [0, 1] (0 disables it).
        rng: the only source of randomness; same state, same output.
        noise_period: draw noise for this many rows and repeat it down the batch (row r gets
            row r % noise_period's), so that candidates laid out as (candidate, sample) rows see
            the same noise and differ by their actions alone (common random numbers).
        shared_context: every row starts from the same context latents (candidates of one
            what-if): the first frame's noised windows, hence its keys/values, are then the same
            for rows r and r % noise_period, so `context_fn` runs on the first noise_period rows
            only and its output is repeated down the batch (the first of `horizon` context passes
            costs 1 / candidates of a full one).
        cached_context: the model's context frames are independent (DiT context_attention
            "frame"): `context_fn` then also takes one frame (B, 1, C, h, w) -> (B, L, 2, N, D), and
            after the first frame only the newest frame's keys/values are computed, each frame
            noised once, as it enters the window. The keys/values are then kept, and given to
            `velocity_fn`, as 2L arrays (B, K * N, D): each layer's keys, then its values.
        cache: with `cached_context`, those 2L arrays preallocated (e.g. a graph's bound inputs,
            which `velocity_fn` then reads without a copy); None: allocated here.
        turn: entered around each frame's network calls, e.g. to let another rollout run
            between this one's frames (nothing the networks return is kept across frames, except
            a cached context's keys/values: the caller keeps those buffers to this rollout).

    Returns:
        (B, horizon, C, h, w) float32 predicted latents.
    """
    b, k = context.shape[:2]
    times = euler_timesteps(steps)
    history = np.empty((b, k + horizon, *context.shape[2:]), np.float32)  # (B, K + H, C, h, w)
    history[:, :k] = context
    noise_level = np.full((b,), context_noise, np.float32)
    flow_time = np.empty((b,), np.float32)
    period = b if noise_period is None else noise_period
    for i in range(horizon):
        entering = history[:, k + i - 1:k + i] if cached_context and i > 0 else history[:, i:i + k]
        window = noise_context(np.ascontiguousarray(entering), context_noise, rng, noise_period)  # (B, K or 1, C, h, w)
        action = None if actions is None else np.ascontiguousarray(actions[:, i])  # (B, A)
        x = standard_normal(rng, (b, *context.shape[2:]), noise_period)  # (B, C, h, w)
        with turn():
            if i == 0 and shared_context and period < b:
                kv = context_fn(np.ascontiguousarray(window[:period]), noise_level[:period])  # (period, L, 2, K * N, D)
                if not cached_context:  # (cached, _layer_slices spreads them down the batch)
                    kv = np.tile(kv, (b // period, *([1] * (kv.ndim - 1))))  # (B, L, 2, K * N, D)
            elif i > 0 and cached_context:  # the oldest frame leaves the window, the newest enters it
                newest = context_fn(window, noise_level)  # (B, L, 2, N, D)
                n = newest.shape[-2]
                for layer, entering_kv in zip(kv, layer_kv(newest)):  # (B, K * N, D), (B, N, D)
                    layer[:, :-n] = layer[:, n:]
                    layer[:, -n:] = entering_kv
            else:
                kv = context_fn(window, noise_level)
            if i == 0 and cached_context:
                kv = _layer_slices(kv, cache, b)
            for t, t_next in zip(times[:-1], times[1:]):
                flow_time.fill(t)
                x -= (t - t_next) * velocity_fn(kv, x, flow_time, action)
        history[:, k + i] = x
    return history[:, k:]
