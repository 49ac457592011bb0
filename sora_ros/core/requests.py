"""Rollout requests and their caps; checks of `~/rollout` requests (sora_ros/srv/Rollout) apart from the ROS types.

A request that cannot be served is refused with a sentence saying why; the caps
below bound what one call may cost (a batch of candidates x samples runs as one
batched rollout, so memory and time grow with that product).
"""

from __future__ import annotations

import operator
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
    """A request, checked against the caps on construction.

    Attributes:
        actions: float32 (N, H, A) in the model's physical units (a row of NaN: that step's
            action is unknown), or None for an unconditioned model (then `candidates` futures of
            `horizon` frames, A = 0).
        candidates, horizon, samples: N, H and S, within the caps above.
        seed: the sampler's noise seed.
        return_images: decode every frame of every candidate (at most MAX_IMAGE_CANDIDATES).
        sampler_steps: Euler steps per predicted frame for this call, 1..MAX_SAMPLER_STEPS;
            0 = the node's setting (a planner's what-if may trade quality for speed, see
            `sora-ros eval --sampler-steps`).

    Raises:
        RequestError: a field that is not an integer (bool included) or above its cap, a negative
            seed, actions that are not (candidates, horizon, A), action values that are not
            finite (NaN rows excepted), or a masked array with masked values (see `unmasked`).
    """

    actions: np.ndarray | None
    candidates: int
    horizon: int
    samples: int
    seed: int
    return_images: bool
    sampler_steps: int = 0

    def __post_init__(self) -> None:
        as_integers(self, ("candidates", "horizon", "samples", "seed", "sampler_steps"), RequestError)
        if self.seed < 0 or not isinstance(self.return_images, (bool, np.bool_)):
            raise RequestError(f"seed must be >= 0 and return_images a bool, got {self.seed} and {self.return_images!r}")
        check_caps(self.candidates, self.horizon, self.samples, self.sampler_steps, self.return_images)
        if self.actions is None:
            return
        object.__setattr__(self, "actions", unmasked(self.actions, "actions", RequestError))
        kind = np.asarray(self.actions).dtype.kind
        if kind not in "fiu":  # not bools, strings, objects
            raise RequestError(f"actions must be an array of real numbers, got dtype kind {kind!r}")
        object.__setattr__(self, "actions", np.asarray(self.actions, np.float32))
        shape = self.actions.shape
        if len(shape) != 3 or shape[:2] != (self.candidates, self.horizon) or shape[2] == 0:
            raise RequestError(f"actions must be (candidates, horizon, A) = ({self.candidates}, {self.horizon}, A), "
                               f"A >= 1 (None for an unconditioned model), got {shape}")
        nan = np.isnan(self.actions)
        if np.isinf(self.actions).any() or (nan.any(axis=-1) != nan.all(axis=-1)).any():
            raise RequestError("actions must be finite; mark an unknown step with NaN in every component of its row")

    @property
    def action_dim(self) -> int:
        """A, 0 without actions."""
        return 0 if self.actions is None else self.actions.shape[-1]


def unmasked(values, name: str, error: type[ValueError] = RequestError):
    """`values` without a numpy mask: a masked array with nothing masked is its data; anything else
    is returned as it is.

    Raises:
        error: some values are masked. np.asarray drops a mask and keeps the values under it, so
            the hidden values would be used as if given.
    """
    if not isinstance(values, np.ma.MaskedArray):
        return values
    hidden = int(np.ma.count_masked(values))
    if hidden:
        raise error(f"{name} is a masked array with {hidden} of {values.size} values masked: a mask is not read, "
                    f"the values under it would be used; pass a plain array, e.g. np.ma.filled({name}, np.nan) "
                    "to mark unknown steps (NaN in every component of a row)")
    return np.ma.getdata(values)


def as_integers(fields: object, names: tuple[str, ...], error: type[ValueError]) -> None:
    """Make each named field of a frozen dataclass a Python int (numpy integers too).

    Raises:
        error: a field that is not an integer, or is a bool.
    """
    for name in names:
        value = getattr(fields, name)
        try:
            if isinstance(value, (bool, np.bool_)):
                raise TypeError
            object.__setattr__(fields, name, operator.index(value))
        except TypeError:
            raise error(f"{name} must be an integer, got {value!r}") from None


def check_caps(candidates: int, horizon: int, samples: int, sampler_steps: int, return_images: bool) -> None:
    """Raises RequestError for a field outside its cap."""
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise RequestError(f"candidates must be 1..{MAX_CANDIDATES}, got {candidates}")
    if return_images and candidates > MAX_IMAGE_CANDIDATES:
        raise RequestError(f"with return_images, candidates must be 1..{MAX_IMAGE_CANDIDATES}, got {candidates} "
                           f"(latents only: up to {MAX_CANDIDATES})")
    if not 1 <= horizon <= MAX_HORIZON:
        raise RequestError(f"horizon must be 1..{MAX_HORIZON}, got {horizon}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise RequestError(f"samples must be 1..{MAX_SAMPLES}, got {samples}")
    if not 0 <= sampler_steps <= MAX_SAMPLER_STEPS:
        raise RequestError(f"sampler_steps must be 0 (the node's setting) or 1..{MAX_SAMPLER_STEPS}, "
                           f"got {sampler_steps}")
    if candidates * samples > MAX_BATCH:
        raise RequestError(f"candidates x samples = {candidates * samples} exceeds the cap of {MAX_BATCH} per call")


def check_request(actions: np.ndarray, candidates: int, horizon: int, action_dim: int, samples: int, seed: int,
                  return_images: bool, model_action_dim: int, sampler_steps: int = 0) -> RolloutRequest:
    """Validate the fields of a Rollout request against the model and the caps.

    Args:
        actions: the flat `actions` field (candidates * horizon * action_dim values).
        candidates, horizon, action_dim, samples, seed, return_images, sampler_steps: the request's fields.
        model_action_dim: A of the loaded model (0 = unconditioned).

    Returns:
        The request with actions as (N, H, A).

    Raises:
        RequestError: wrong action shape or size, values that are not finite (NaN rows excepted:
            they mean "unknown" to the model), masked values, or a request above a cap.
    """
    check_caps(candidates, horizon, samples, sampler_steps, return_images)  # before the size arithmetic
    if action_dim != model_action_dim:
        raise RequestError(f"action_dim is {action_dim} but the model takes {model_action_dim} values per step")
    flat = np.asarray(unmasked(actions, "actions"), np.float32).reshape(-1)
    expected = candidates * horizon * action_dim
    if flat.size != expected:
        raise RequestError(f"actions has {flat.size} values; candidates x horizon x action_dim = "
                           f"{candidates} x {horizon} x {action_dim} = {expected}")
    if model_action_dim == 0:
        return RolloutRequest(None, candidates, horizon, samples, seed, return_images, sampler_steps)
    return RolloutRequest(flat.reshape(candidates, horizon, action_dim), candidates, horizon, samples, seed,
                          return_images, sampler_steps)
