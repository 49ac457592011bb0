"""Rollout requests and their caps; checks of `~/rollout` requests (sora_ros/srv/Rollout) apart from the ROS types.

A request that cannot be served is refused with a sentence saying why; the caps
below bound what one call may cost (a batch of candidates x samples runs as one
batched rollout, so memory and time grow with that product).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Caps on what one rollout may cost, live or per ~/rollout call: the one definition the node
# parameters, the service checks, the planner and README quote.
MAX_CANDIDATES = 64  # latents only: a sampling planner's what-if (issue 14 times 32)
MAX_IMAGE_CANDIDATES = 8  # with images: every frame of every candidate is decoded
MAX_SAMPLES = 8
MAX_BATCH = 64  # candidates x samples: one dynamics call holds this many rows
MAX_HORIZON = 32
MAX_SAMPLER_STEPS = 16
# ~/rollout calls running or waiting at once; more are refused as busy, never left unanswered.
MAX_PENDING_CALLS = 4


class RequestError(ValueError):
    """A request refused; the message says why and what would be accepted."""


@dataclass(frozen=True)
class RolloutRequest:
    """A checked request.

    Attributes:
        actions: float32 (N, H, A) in the model's physical units, or None for an
            unconditioned model (then `candidates` futures of `horizon` frames, A = 0).
    """

    actions: np.ndarray | None
    candidates: int
    horizon: int
    samples: int
    seed: int
    return_images: bool


def check_request(actions: np.ndarray, candidates: int, horizon: int, action_dim: int, samples: int, seed: int,
                  return_images: bool, model_action_dim: int) -> RolloutRequest:
    """Validate the fields of a Rollout request against the model and the caps.

    Args:
        actions: the flat `actions` field (candidates * horizon * action_dim values).
        candidates, horizon, action_dim, samples, seed, return_images: the request's fields.
        model_action_dim: A of the loaded model (0 = unconditioned).

    Returns:
        The request with actions as (N, H, A).

    Raises:
        RequestError: wrong action shape or size, values that are not finite (NaN rows excepted:
            they mean "unknown" to the model), or a request above a cap.
    """
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise RequestError(f"candidates must be 1..{MAX_CANDIDATES}, got {candidates}")
    if return_images and candidates > MAX_IMAGE_CANDIDATES:
        raise RequestError(f"with return_images, candidates must be 1..{MAX_IMAGE_CANDIDATES}, got {candidates} "
                           f"(latents only: up to {MAX_CANDIDATES})")
    if not 1 <= horizon <= MAX_HORIZON:
        raise RequestError(f"horizon must be 1..{MAX_HORIZON}, got {horizon}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise RequestError(f"samples must be 1..{MAX_SAMPLES}, got {samples}")
    if candidates * samples > MAX_BATCH:
        raise RequestError(f"candidates x samples = {candidates * samples} exceeds the cap of {MAX_BATCH} per call")
    if action_dim != model_action_dim:
        raise RequestError(f"action_dim is {action_dim} but the model takes {model_action_dim} values per step")
    flat = np.asarray(actions, np.float32).reshape(-1)
    expected = candidates * horizon * action_dim
    if flat.size != expected:
        raise RequestError(f"actions has {flat.size} values; candidates x horizon x action_dim = "
                           f"{candidates} x {horizon} x {action_dim} = {expected}")
    if model_action_dim == 0:
        return RolloutRequest(None, candidates, horizon, samples, seed, return_images)
    shaped = flat.reshape(candidates, horizon, action_dim)  # (N, H, A)
    nan = np.isnan(shaped)
    if np.isinf(shaped).any() or (nan.any(axis=-1) != nan.all(axis=-1)).any():
        raise RequestError("actions must be finite; mark an unknown step with NaN in every component of its row")
    return RolloutRequest(shaped, candidates, horizon, samples, seed, return_images)
