"""Fit a rollout into its time budget: fewer sampler steps, fewer decoded frames.

The cost model is learnt online from the node's own rollouts: milliseconds per
(predicted frame x sampler step) and per decoded frame, each an exponential
moving average. Before a rollout, `plan` picks the most sampler steps (up to the
model's default) whose estimate fits the budget, then, if even one step does not
fit, decodes only the frames that something needs right now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Weight of the newest measurement in the moving averages: follows a change of load
# within ~5 rollouts without jumping on a single slow one.
EMA_WEIGHT = 0.2
MIN_STEPS = 1


@dataclass(frozen=True)
class RolloutPlan:
    """How one rollout will run.

    Attributes:
        steps: sampler steps per predicted frame.
        decode: indices (0-based horizon steps) of the frames to decode, ascending.
        estimate_ms: the cost model's estimate for this plan.
        notes: what was cut to meet the budget, for messages and diagnostics (empty when nothing).
    """

    steps: int
    decode: tuple[int, ...]
    estimate_ms: float
    notes: tuple[str, ...] = field(default=())

    @property
    def reduced_steps(self) -> bool:
        return any(note.startswith("sampler steps") for note in self.notes)

    @property
    def skipped_decode(self) -> bool:
        return any(note.startswith("decoded only") for note in self.notes)


class CostModel:
    """Running estimates of rollout and decode cost, in milliseconds.

    Args:
        step_ms, decode_ms: initial guesses before the first measurement.
    """

    def __init__(self, step_ms: float = 0.0, decode_ms: float = 0.0) -> None:
        self.step_ms = step_ms  # per predicted frame per sampler step (context pass included)
        self.decode_ms = decode_ms  # per decoded frame
        self._seen_rollout = self._seen_decode = False

    def observe_rollout(self, ms: float, frames: int, steps: int) -> None:
        """A rollout of `frames` predicted frames x `steps` steps per frame took `ms`."""
        self.step_ms = self._mix(self.step_ms, ms / (frames * steps), self._seen_rollout)
        self._seen_rollout = True

    def observe_decode(self, ms: float, frames: int) -> None:
        """Decoding `frames` frames took `ms`."""
        if frames:
            self.decode_ms = self._mix(self.decode_ms, ms / frames, self._seen_decode)
            self._seen_decode = True

    @staticmethod
    def _mix(old: float, new: float, seen: bool) -> float:
        return (1 - EMA_WEIGHT) * old + EMA_WEIGHT * new if seen else new

    def estimate_ms(self, horizon: int, steps: int, decoded: int) -> float:
        return horizon * steps * self.step_ms + decoded * self.decode_ms


def plan_rollout(cost: CostModel, horizon: int, default_steps: int, wanted: tuple[int, ...],
                 essential: tuple[int, ...], budget_ms: float) -> RolloutPlan:
    """Choose sampler steps and decoded frames for one rollout.

    Args:
        cost: the running cost estimates.
        horizon: predicted frames.
        default_steps: the sampler steps the model (or the user) asks for.
        wanted: frames someone subscribed to (e.g. every frame when ~/futures has subscribers).
        essential: frames still decoded under pressure (e.g. the one ~/predicted/image shows);
            a subset of `wanted`.
        budget_ms: the time budget; 0 or less means none.

    Returns:
        The plan: default steps and every wanted frame when they fit; otherwise fewer steps
        (not below 1); otherwise 1 step and only the essential frames.
    """
    if budget_ms <= 0 or cost.estimate_ms(horizon, default_steps, len(wanted)) <= budget_ms:
        return RolloutPlan(default_steps, wanted, cost.estimate_ms(horizon, default_steps, len(wanted)))
    for steps in range(default_steps - 1, MIN_STEPS - 1, -1):
        estimate = cost.estimate_ms(horizon, steps, len(wanted))
        if estimate <= budget_ms:
            note = f"sampler steps {default_steps} -> {steps} to fit the {budget_ms:g} ms budget"
            return RolloutPlan(steps, wanted, estimate, (note,))
    estimate = cost.estimate_ms(horizon, MIN_STEPS, len(essential))
    notes: tuple[str, ...] = ()
    if default_steps > MIN_STEPS:
        notes += (f"sampler steps {default_steps} -> {MIN_STEPS} to fit the {budget_ms:g} ms budget",)
    if len(essential) < len(wanted):
        notes += (f"decoded only {len(essential)} of {len(wanted)} wanted frames to fit the budget",)
    return RolloutPlan(MIN_STEPS, essential, estimate, notes)
