"""A sampling MPC over cmd_vel sequences: the cross-entropy method (CEM), warm-started.

Each decision proposes N candidate sequences of H (linear_x m/s, angular_z rad/s) commands
within the robot's velocity limits, asks a forecaster how hazardous each one's predicted
future is (per step, in [0, 1]: the world model's risk head, `Forecast.risk`; or the
image-space obstacle share of sora_ros/core/planner.py for a model without one), scores them
and refits the sampling distribution to the best few (the elites). The robot follows the best
candidate; the next decision shifts both that plan and the elites' mean by the steps that
passed (the last command repeated at the end), keeps the plan as candidate 0 and samples the
rest around the mean, so the search carries over between decisions and one rollout call per
decision is enough at control rate.

Why CEM and not MPPI: the anchors that plan with world models use it (Navigation World Models
ranks rollouts with CEM, V-JEPA 2-AC plans with CEM), and it ranks rather than weights, so the
cost terms' scales (a probability, a speed) need no temperature tuned to them; candidate 0 is
always the warm start itself (iCEM, Pinneri et al. 2020, keeps the shifted elite too), so a
decision never discards a plan that is still good. Noise is smoothed in time (AR(1), as
iCEM's coloured noise), so candidates are drivable sequences rather than per-step jitter.

Cost of candidate n (lower is better), every term a mean over its H steps:
    risk_weight * hazard[n, k]
  - progress_weight * progress[n, k] / max_forward            (reward progress, m/s)
where progress is the forward speed linear_x, or with a goal the speed at which the candidate
closes on it (sora_ros/core/goal.py: without a goal the planner explores, with one it goes there).
  + smoothness_weight * |(a[n, k] - a[n, k-1]) / span|^2      (a[n, -1]: the command in force)

Deterministic for a seed. Legend: N candidates, H horizon steps, A = 2 action components.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sora_ros.core.requests import MAX_CANDIDATES, MAX_HORIZON

ACTION_DIM = 2  # (linear_x m/s, angular_z rad/s), the model's action order
# Largest cost weight: the costs are float32, and a weight near its 3.4e38 limit would turn them into Inf/NaN.
MAX_WEIGHT = 100.0


class PlannerInputError(ValueError):
    """Input the planner refuses (a hazard of the wrong shape or with NaN, an empty candidate
    set, limits that leave no command); the message says what was expected."""


@dataclass(frozen=True)
class VelocityLimits:
    """The commands the robot may be sent (SI units; the planner node defaults to the sim robot's
    sora_ros.sim.drive.DriveLimits).

    Attributes:
        max_forward: m/s, > 0. max_reverse: m/s as a positive number (0: never back up).
        max_turn: rad/s either way, > 0.
    """

    max_forward: float
    max_reverse: float
    max_turn: float

    def __post_init__(self) -> None:
        values = (self.max_forward, self.max_reverse, self.max_turn)
        if not all(np.isfinite(values)) or self.max_forward <= 0 or self.max_reverse < 0 or self.max_turn <= 0:
            raise PlannerInputError(f"velocity limits must be finite with max_forward > 0, max_reverse >= 0 and "
                                    f"max_turn > 0, got {self}")

    @property
    def low(self) -> np.ndarray:
        return np.array([-self.max_reverse, -self.max_turn], np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.array([self.max_forward, self.max_turn], np.float32)

    def within(self, low: np.ndarray, high: np.ndarray) -> VelocityLimits:
        """These limits narrowed to an action range (A,) low/high, e.g. the model's."""
        return VelocityLimits(min(self.max_forward, float(high[0])), min(self.max_reverse, float(-low[0])),
                              min(self.max_turn, float(high[1]), float(-low[1])))


@dataclass(frozen=True)
class MpcConfig:
    """What the planner samples and how it scores (defaults tuned in `sora-ros bench closed-loop`).

    Attributes:
        candidates: N per decision, 2..MAX_CANDIDATES (the warm start and at least one sample).
        horizon: H steps of the model's dt, 1..MAX_HORIZON.
        elites: best candidates the distribution is refitted to, 1..candidates.
        iterations: CEM refits per decision (each one rollout call of N candidates).
        initial_std: (linear m/s, angular rad/s) spread of a fresh distribution.
        min_std: the spread never shrinks below this (keeps exploring).
        noise_smoothing: AR(1) coefficient of the sampling noise in time, 0 (white) .. < 1.
        risk_weight, progress_weight, smoothness_weight: the cost terms (module docstring), 0..MAX_WEIGHT.
        escape_steps: after a step in which odometry showed the robot blocked, no candidate drives
            in that direction (forward or reverse) in the steps up to this many after it
            (sora_ros/core/contact.py; 0: trust the predicted risk alone).
    """

    candidates: int = 32
    horizon: int = 8
    elites: int = 4
    iterations: int = 1
    initial_std: tuple[float, float] = (0.3, 0.8)
    min_std: tuple[float, float] = (0.05, 0.15)
    noise_smoothing: float = 0.5
    risk_weight: float = 8.0
    progress_weight: float = 1.0
    smoothness_weight: float = 0.1
    escape_steps: int = 8

    def __post_init__(self) -> None:
        if not 2 <= self.candidates <= MAX_CANDIDATES:
            raise PlannerInputError(f"candidates must be 2..{MAX_CANDIDATES} (the warm start and at least one "
                                    f"sample; one ~/rollout call holds at most {MAX_CANDIDATES}), got {self.candidates}")
        if not 1 <= self.horizon <= MAX_HORIZON:
            raise PlannerInputError(f"horizon must be 1..{MAX_HORIZON}, got {self.horizon}")
        if not 1 <= self.elites <= self.candidates or self.iterations < 1 or self.escape_steps < 0:
            raise PlannerInputError(f"elites must be 1..candidates ({self.candidates}), iterations >= 1 and "
                                    f"escape_steps >= 0, got {self.elites}, {self.iterations} and {self.escape_steps}")
        numbers = (*self.initial_std, *self.min_std, self.risk_weight, self.progress_weight, self.smoothness_weight)
        weights = (self.risk_weight, self.progress_weight, self.smoothness_weight)
        if not all(np.isfinite(numbers)) or min(numbers) < 0 or max(weights) > MAX_WEIGHT \
                or not 0 <= self.noise_smoothing < 1:
            raise PlannerInputError(f"stds and weights must be finite and >= 0, weights at most {MAX_WEIGHT:g}, "
                                    f"noise_smoothing in [0, 1): {self}")


@dataclass(frozen=True)
class Decision:
    """One decision.

    Attributes:
        plan: float32 (H, A) the commands to follow, step k applied k * dt after the context's newest frame.
        index: the chosen candidate among the last iteration's.
        costs: float32 (N,) of the last iteration's candidates.
        hazard: float32 (H,) the chosen candidate's predicted hazard.
        forecast: whatever the forecaster returned for the chosen candidate (e.g. its Forecast), or None.
    """

    plan: np.ndarray
    index: int
    costs: np.ndarray
    hazard: np.ndarray
    forecast: object = None


# evaluate(actions (N, H, A)) -> (hazard float (N, H) in [0, 1], per-candidate extras or None)
Forecaster = Callable[[np.ndarray], tuple[np.ndarray, list | None]]
# progress(actions (N, H, A)) -> float (N, H) m/s per step
Progress = Callable[[np.ndarray], np.ndarray]


def candidate_costs(actions: np.ndarray, hazard: np.ndarray, current: np.ndarray, config: MpcConfig,
                    limits: VelocityLimits, progress: np.ndarray | None = None) -> np.ndarray:
    """The cost of each candidate (module docstring).

    Args:
        actions: float32 (N, H, A), N >= 1.
        hazard: (N, H) in [0, 1] per predicted step.
        current: float32 (A,) the command in force (the smoothness term's start).
        progress: (N, H) m/s per step (e.g. `goal.goal_progress`); None: the forward speed.

    Returns:
        float32 (N,).

    Raises:
        PlannerInputError: no candidates, a shape mismatch, or a hazard that is not finite.
    """
    actions, hazard = np.asarray(actions, np.float32), np.asarray(hazard, np.float32)
    if actions.ndim != 3 or actions.shape[0] == 0 or actions.shape[-1] != ACTION_DIM:
        raise PlannerInputError(f"candidates must be (N >= 1, H, {ACTION_DIM}), got {actions.shape}")
    if hazard.shape != actions.shape[:2]:
        raise PlannerInputError(f"hazard must be one value per candidate and step {actions.shape[:2]}, "
                                f"got {hazard.shape}")
    if not np.isfinite(hazard).all() or not np.isfinite(actions).all():
        raise PlannerInputError("hazard and actions must be finite (a NaN risk means the forecaster failed)")
    progress = actions[..., 0] if progress is None else np.asarray(progress, np.float32)
    if progress.shape != hazard.shape or not np.isfinite(progress).all():
        raise PlannerInputError(f"progress must be finite, one value per candidate and step {hazard.shape}, "
                                f"got shape {progress.shape}")
    span = limits.high - limits.low  # (A,)
    steps = np.diff(np.concatenate([np.broadcast_to(current, (len(actions), 1, ACTION_DIM)), actions], axis=1),
                    axis=1) / span  # (N, H, A)
    return (config.risk_weight * hazard.mean(axis=1)
            - config.progress_weight * progress.mean(axis=1) / limits.max_forward
            + config.smoothness_weight * (steps ** 2).sum(axis=-1).mean(axis=1)).astype(np.float32)


@dataclass
class CemPlanner:
    """The warm-started CEM of the module docstring. Not thread-safe: one decision at a time.

        planner = CemPlanner(MpcConfig(), VelocityLimits(0.6, 0.2, 1.5), seed=0)
        decision = planner.decide(forecaster)          # forecaster: actions (N, H, A) -> (hazard (N, H), extras)
        ...                                            # follow decision.plan; steps pass
        decision = planner.decide(forecaster, elapsed_steps=2)

    An asynchronous caller (a node waiting on ~/rollout) does the same in parts: shift(steps),
    propose(), then update(actions, hazard) when the forecast arrives.
    """

    config: MpcConfig
    limits: VelocityLimits
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)
    _mean: np.ndarray = field(init=False, repr=False)  # (H, A)
    _std: np.ndarray = field(init=False, repr=False)  # (H, A)
    _best: np.ndarray = field(init=False, repr=False)  # (H, A) the plan being followed
    _current: np.ndarray = field(init=False, repr=False)  # (A,) the command in force

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self.reset()

    def reset(self) -> None:
        """Forget the warm start: stand still, full spread (after a stop or a stale spell)."""
        horizon = self.config.horizon
        self._mean = np.zeros((horizon, ACTION_DIM), np.float32)
        self._std = np.broadcast_to(np.asarray(self.config.initial_std, np.float32), (horizon, ACTION_DIM)).copy()
        self._best = self._mean.copy()
        self._current = np.zeros(ACTION_DIM, np.float32)

    def shift(self, steps: int) -> None:
        """Move the warm start `steps` steps on (the robot executed them; the last command is
        repeated at the end); the spread grows back to the initial one for the new steps."""
        steps = min(max(steps, 0), self.config.horizon)
        if steps == 0:
            return
        self._current = self._best[steps - 1].copy()
        self._mean, self._best = (np.concatenate([plan[steps:], np.repeat(plan[-1:], steps, axis=0)])
                                  for plan in (self._mean, self._best))
        initial = np.asarray(self.config.initial_std, np.float32)
        self._std = np.concatenate([self._std[steps:], np.broadcast_to(initial, (steps, ACTION_DIM))])

    def propose(self, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """float32 (N, H, A): candidate 0 the plan being followed, the rest sampled around the
        elites' mean, all clipped to the limits, or to `bounds` (low, high), each (H, A) within
        them, where some steps allow less (`sora_ros.core.contact.Forbidden.bounds`)."""
        config = self.config
        white = self._rng.standard_normal((config.candidates - 1, config.horizon, ACTION_DIM)).astype(np.float32)
        noise = np.empty_like(white)
        noise[:, 0] = white[:, 0]
        a = config.noise_smoothing
        for k in range(1, config.horizon):  # AR(1) with unit stationary variance
            noise[:, k] = a * noise[:, k - 1] + np.sqrt(1 - a * a) * white[:, k]
        samples = self._mean + self._std * noise  # (N - 1, H, A)
        low, high = (self.limits.low, self.limits.high) if bounds is None else bounds
        return np.clip(np.concatenate([self._best[None], samples]), low, high)

    def update(self, actions: np.ndarray, hazard: np.ndarray, extras: list | None = None,
               progress: Progress | None = None) -> Decision:
        """Score proposed candidates by their forecast, refit the distribution to the elites and
        follow the best.

        Args:
            actions: float32 (N, H, A) as `propose` returned them.
            hazard: (N, H) in [0, 1] per candidate and predicted step.
            extras: per candidate, what to hand back in Decision.forecast (or None).
            progress: actions -> (N, H) m/s, e.g. `goal.goal_progress` towards a goal; None: the forward speed.

        Raises:
            PlannerInputError: see candidate_costs; then nothing changes.
        """
        costs = candidate_costs(actions, hazard, self._current, self.config, self.limits,
                                None if progress is None else progress(actions))
        order = np.argsort(costs, kind="stable")
        elites = actions[order[: self.config.elites]]  # (E, H, A)
        self._mean = elites.mean(axis=0)
        self._std = np.maximum(elites.std(axis=0), np.asarray(self.config.min_std, np.float32))
        best = int(order[0])
        self._best = np.asarray(actions[best], np.float32).copy()
        return Decision(self._best.copy(), best, costs, np.asarray(hazard, np.float32)[best].copy(),
                        None if extras is None else extras[best])

    def decide(self, forecaster: Forecaster, elapsed_steps: int = 0,
               bounds: tuple[np.ndarray, np.ndarray] | None = None, progress: Progress | None = None) -> Decision:
        """Shift the warm start by `elapsed_steps`, run the CEM iterations with candidates within
        `bounds` (see `propose`) scored with `progress` (see `update`), return the best plan.
        Candidate 0 of each iteration is the previous iteration's best, so the last iteration's
        best is the best seen.

        Raises:
            PlannerInputError: the forecaster's hazard has the wrong shape or is not finite.
            Whatever the forecaster raises (the caller decides: stop, retry).
        """
        self.shift(elapsed_steps)
        for _ in range(self.config.iterations):
            actions = self.propose(bounds)  # (N, H, A)
            decision = self.update(actions, *forecaster(actions), progress=progress)
        return decision


def command_at(plan: np.ndarray | None, age_s: float, dt: float, stale_s: float) -> np.ndarray:
    """The command to send now while following `plan`.

    Args:
        plan: float32 (H, A) from a Decision, or None before the first decision.
        age_s: seconds since the plan's step 0 began (its context's newest frame, or the request).
        dt: seconds per plan step (the model's dt).
        stale_s: a plan older than this is stale: stop rather than keep driving on it.

    Returns:
        float32 (A,): plan[floor(age / dt)] (the last step held past the end), zeros when there is no
        plan, when it is stale or when age_s is not a finite number >= 0.
    """
    if plan is None or not (0 <= age_s <= stale_s):
        return np.zeros(ACTION_DIM, np.float32)
    return np.asarray(plan[min(int(age_s / dt), len(plan) - 1)], np.float32)
