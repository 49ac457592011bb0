"""Risk labels from data a real robot has, and the ROC AUC that scores the risk head.

A step is *blocked* when the robot is commanded to move forward and its odometry shows (almost)
no forward progress over that step: a collision, a bumper pressed against something, or (in the
simulator, sora_ros/sim/world.py) a refused move. The label of frame t is "blocked within the
next k steps": one of the steps t -> t + 1, ..., t + k - 1 -> t + k is blocked.

The rule, per step from time s to s + dt (the model's dt):
  - commanded: the cmd_vel linear.x in force at s (zero-order hold, as training reads actions)
    exceeds `min_command` m/s; a command older than `command_timeout_s` counts as zero (robot
    drivers stop on a stale cmd_vel);
  - no progress: the odometry position moved less than `progress_fraction` x the commanded
    distance (v_cmd x dt), in any direction (turning on the spot moves the base's origin by
    nothing; a robot still reversing when the forward command comes moves, and is not blocked).
    Positions are interpolated linearly between odometry messages; a step whose ends lie more
    than `max_odom_gap_s` from any odometry message is unknown (NaN), never guessed.
Progress is measured from the odometry pose, not from its twist, so it works for any odometry
source (wheel, visual, lidar). A robot that accelerates from rest moves less than commanded in its
first step; `progress_fraction` (default 0.1) sits below that: in the simulator a start from rest
at the highest command (0.6 m/s, 1 m/s^2) covers 1 cm of the 6 cm commanded, a refused move 0.
A base that accelerates more slowly covers less than that fraction in its first steps from rest
(0.15 cm at 0.3 m/s^2): with `max_accel` set, "commanded distance" is the distance the base can
cover in the step from the speed odometry showed over the step before, ramping at max_accel to the
command (the planner's contact monitor sets it to the robot's limit; the training labels do not).
tests/test_risk.py checks the labels against the simulator's own refused moves, step by step.

    steps = blocked_steps(rule, grid_ns, dt_ns, motion)    # (T,) 1, 0 or NaN per step at grid_ns
    labels = blocked_within(steps, rule.horizon_steps)     # (T,) label of each frame
    auc = roc_auc(labels, scores)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sora_ros.core.units import NS_PER_S

# The label the risk head is trained on, as model.json "risk.label" states it.
LABEL_RULE = ("blocked within {span} of {dt:g} s: commanded linear.x > {min_command:g} m/s (held "
              "from {cmd}, stale after {timeout:g} s) while the {odom} position moved < {fraction:g} x the "
              "commanded distance")


def next_steps(k: int) -> str:
    """The label's span in words: "the next step" for k = 1, else "the next k steps"."""
    return "the next step" if k == 1 else f"the next {k} steps"


@dataclass(frozen=True)
class BlockedRule:
    """The label rule's thresholds (see the module docstring).

    Attributes:
        horizon_steps: k of "blocked within the next k steps", >= 1.
        min_command: m/s; a forward command at or below it is no command to move.
        progress_fraction: share of the commanded distance below which a step made no progress, in (0, 1).
        command_timeout_s: a cmd_vel older than this counts as a stop, > 0.
        max_odom_gap_s: a step end farther than this from every odometry message is unknown, > 0.
        max_accel: m/s^2 the base accelerates at, > 0, or None: it reaches any command within a step.

    Raises:
        ValueError: a value outside its range.
    """

    horizon_steps: int = 8
    min_command: float = 0.05
    progress_fraction: float = 0.1
    command_timeout_s: float = 0.5
    max_odom_gap_s: float = 0.25
    max_accel: float | None = None

    def __post_init__(self) -> None:
        if not (self.horizon_steps >= 1 and self.min_command >= 0 and 0 < self.progress_fraction < 1
                and self.command_timeout_s > 0 and self.max_odom_gap_s > 0
                and (self.max_accel is None or 0 < self.max_accel < math.inf)):
            raise ValueError(f"risk label rule out of range: {self} (horizon_steps >= 1, min_command >= 0, "
                             f"progress_fraction in (0, 1), command_timeout_s > 0, max_odom_gap_s > 0, "
                             f"max_accel > 0 and finite or None)")

    def describe(self, dt: float, cmd_topic: str, odom_topic: str) -> str:
        """The rule in one line, for model.json and reports."""
        return LABEL_RULE.format(span=next_steps(self.horizon_steps), dt=dt, min_command=self.min_command,
                                 cmd=cmd_topic, timeout=self.command_timeout_s, odom=odom_topic,
                                 fraction=self.progress_fraction)


@dataclass(frozen=True)
class MotionLog:
    """What a bag says about the robot's motion.

    Attributes:
        command_ns: int64 (M,) increasing stamps of the forward commands.
        command_v: float32 (M,) commanded linear.x, m/s.
        odom_ns: int64 (P,) increasing stamps of the odometry positions.
        odom_xy: float64 (P, 2) positions, m.
    """

    command_ns: np.ndarray
    command_v: np.ndarray
    odom_ns: np.ndarray
    odom_xy: np.ndarray


def commanded(rule: BlockedRule, log: MotionLog, at_ns: np.ndarray) -> np.ndarray:
    """float (T,) forward command in force at each time (zero before the first and after a timeout)."""
    if len(log.command_ns) == 0:
        return np.zeros(np.shape(at_ns))
    index = np.searchsorted(log.command_ns, at_ns, side="right") - 1
    valid = index >= 0
    safe = np.maximum(index, 0)
    fresh = valid & (at_ns - log.command_ns[safe] <= rule.command_timeout_s * NS_PER_S)
    return np.where(fresh, log.command_v[safe], 0.0)


def _odom_known(rule: BlockedRule, log: MotionLog, at_ns: np.ndarray) -> np.ndarray:
    """bool (T,): an odometry message lies within max_odom_gap_s on both sides (or at the time itself)."""
    limit = rule.max_odom_gap_s * NS_PER_S
    after = np.searchsorted(log.odom_ns, at_ns, side="left")
    before = np.searchsorted(log.odom_ns, at_ns, side="right") - 1
    has_after = after < len(log.odom_ns)
    has_before = before >= 0
    after_ok = has_after & (log.odom_ns[np.minimum(after, len(log.odom_ns) - 1)] - at_ns <= limit)
    before_ok = has_before & (at_ns - log.odom_ns[np.maximum(before, 0)] <= limit)
    return after_ok & before_ok


def blocked_steps(rule: BlockedRule, start_ns: np.ndarray, dt_ns: int, log: MotionLog) -> np.ndarray:
    """Whether each step from start_ns to start_ns + dt_ns is blocked (module docstring).

    Args:
        rule: the thresholds.
        start_ns: int64 (T,) step start times, ns (any order).
        dt_ns: step length, ns, > 0.
        log: the bag's commands and odometry.

    Returns:
        float32 (T,): 1 blocked, 0 not, NaN unknown (odometry does not cover the step; no odometry at all).

    Raises:
        ValueError: dt_ns <= 0.
    """
    if dt_ns <= 0:
        raise ValueError(f"dt_ns must be positive, got {dt_ns}")
    start = np.asarray(start_ns, np.int64)
    end = start + dt_ns
    if len(log.odom_ns) == 0:
        return np.full(start.shape, np.nan, np.float32)
    times, dt = log.odom_ns.astype(np.float64), dt_ns / NS_PER_S
    x0, y0 = (np.interp(start, times, log.odom_xy[:, i]) for i in range(2))
    x1, y1 = (np.interp(end, times, log.odom_xy[:, i]) for i in range(2))
    moved = np.hypot(x1 - x0, y1 - y0)  # (T,) m, whichever way
    command = commanded(rule, log, start)  # (T,) m/s
    reach = command * dt  # (T,) m
    if rule.max_accel is not None:  # from the speed over the step before (0 before the first odometry)
        xp, yp = (np.interp(start - dt_ns, times, log.odom_xy[:, i]) for i in range(2))
        reach = np.minimum(reach, reachable(np.hypot(x0 - xp, y0 - yp) / dt, command, rule.max_accel, dt))
    blocked = (command > rule.min_command) & (moved < rule.progress_fraction * reach)
    known = _odom_known(rule, log, start) & _odom_known(rule, log, end)
    return np.where(known, blocked.astype(np.float32), np.nan).astype(np.float32)


def reachable(speed: np.ndarray, command: np.ndarray, accel: float, dt: float) -> np.ndarray:
    """m a base covers in dt s starting at `speed` (m/s, >= 0) while it accelerates at `accel`
    (m/s^2) towards `command` (m/s), then holds it; at least speed x dt (it may be braking)."""
    ramp = np.clip((command - speed) / accel, 0.0, dt)  # s spent accelerating
    return speed * dt + accel * ramp * (dt - ramp / 2)


def blocked_within(rule: BlockedRule, frame_ns: np.ndarray, dt_ns: int, log: MotionLog) -> np.ndarray:
    """The label of each frame: one of the next `rule.horizon_steps` steps from its stamp is blocked.

    Args:
        frame_ns: int64 (T,) frame stamps, ns.
        dt_ns: the model's step, ns.

    Returns:
        float32 (T,): 1, 0, or NaN when a step is unknown and none of the known ones is blocked.
    """
    frame = np.asarray(frame_ns, np.int64)
    offsets = np.arange(rule.horizon_steps, dtype=np.int64) * dt_ns  # (k,)
    steps = blocked_steps(rule, (frame[:, None] + offsets[None]).reshape(-1), dt_ns, log)
    steps = steps.reshape(len(frame), rule.horizon_steps)  # (T, k)
    any_blocked = np.nan_to_num(steps, nan=0.0).max(axis=1, initial=0.0) > 0
    all_known = ~np.isnan(steps).any(axis=1)
    return np.where(any_blocked, 1.0, np.where(all_known, 0.0, np.nan)).astype(np.float32)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count half), by the Mann-Whitney U statistic on average ranks.

    Args:
        labels: (N,) 1 positive, 0 negative; NaN entries (unknown) are left out.
        scores: (N,) higher = more likely positive; NaN entries are left out.

    Returns:
        AUC in [0, 1], or NaN when one class is absent.
    """
    labels, scores = np.asarray(labels, np.float64), np.asarray(scores, np.float64)
    keep = ~(np.isnan(labels) | np.isnan(scores))
    labels, scores = labels[keep], scores[keep]
    positives = int((labels > 0.5).sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - 0.5 * (counts - 1))[inverse]  # 1-based, average over ties
    rank_sum = ranks[labels > 0.5].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))
