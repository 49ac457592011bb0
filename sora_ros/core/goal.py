"""A goal for the MPC: where the robot should go, and how fast each candidate closes on it.

Without a goal the planner rewards forward speed (it explores; in open floor it drives circles).
With one, the progress term is how fast the candidate's commanded unicycle motion brings the robot
nearer the goal (`goal_progress`). Both are m/s, so `progress_weight` and `max_forward` scale them
alike (sora_ros/core/mpc.py).

    goal = Goal(2.0, 1.0)                                         # in the odometry frame, m
    ahead = goal.in_robot_frame(x, y, yaw)                        # (2,) m, the robot's frame now
    progress = goal_progress(actions, ahead, dt, 0.6, 1.5)        # (N, H) m/s
    scoring = goal.progress_from(x, y, yaw, dt, 0.6, 1.5)         # the same as a function of actions, for CemPlanner
    goal.reached(x, y)
    pursuit = GoalPursuit(goal)                                   # out of local minima: explores a while when stuck
    scoring = pursuit.scoring(stamp_ns, x, y, yaw, dt, 0.6, 1.5)  # None while exploring (forward speed)
    bounds = approach_bounds(bounds, goal.distance(x, y), max_accel)  # forward no faster than it can stop

The commands are integrated as given (no acceleration limit), with the midpoint heading of
sora_ros/sim/drive.integrate: a cost, not a prediction of where the robot will be.
Legend: N candidates, H steps, A = 2 (linear_x m/s, angular_z rad/s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from sora_ros.core.units import NS_PER_S

# Within this distance a goal counts as reached (m): about a robot radius (the sim robot's is 0.22 m).
GOAL_TOLERANCE_M = 0.3
# A goal further than this from the odometry origin (m) is refused: no robot's odometry frame spans
# more, and squared distances of 1e308 overflow.
MAX_GOAL_M = 1e5


@dataclass(frozen=True)
class Goal:
    """A position to reach, in the odometry frame.

    Attributes:
        x, y: m, finite.
        tolerance: m, > 0: reached within this distance.

    Raises:
        ValueError: a position not within MAX_GOAL_M of the origin on both axes, or tolerance not
            finite and > 0.
    """

    x: float
    y: float
    tolerance: float = GOAL_TOLERANCE_M

    def __post_init__(self) -> None:
        if not (abs(self.x) <= MAX_GOAL_M and abs(self.y) <= MAX_GOAL_M and math.isfinite(self.tolerance)
                and self.tolerance > 0):
            raise ValueError(f"a goal needs a position within {MAX_GOAL_M:g} m of the odometry origin and a "
                             f"tolerance > 0, got {self}")

    def distance(self, x: float, y: float) -> float:
        """m from (x, y) in the odometry frame."""
        return math.hypot(self.x - x, self.y - y)

    def reached(self, x: float, y: float) -> bool:
        return self.distance(x, y) <= self.tolerance

    def in_robot_frame(self, x: float, y: float, yaw: float) -> np.ndarray:
        """float64 (2,): the goal as seen from a robot at (x, y) heading `yaw` (rad): +x ahead, +y left."""
        dx, dy = self.x - x, self.y - y
        cos, sin = math.cos(yaw), math.sin(yaw)
        return np.array([cos * dx + sin * dy, -sin * dx + cos * dy])

    def progress_from(self, x: float, y: float, yaw: float, dt: float, max_forward: float,
                      max_turn: float) -> Callable[[np.ndarray], np.ndarray]:
        """actions (N, H, A) -> `goal_progress` (N, H) m/s of candidates starting at (x, y, yaw)."""
        return partial(goal_progress, goal=self.in_robot_frame(x, y, yaw), dt=dt, max_forward=max_forward,
                       max_turn=max_turn)


def goal_progress(actions: np.ndarray, goal: np.ndarray, dt: float, max_forward: float, max_turn: float) -> np.ndarray:
    """How fast each step of each candidate brings the robot nearer `goal`, in m/s.

    Nearness is the time a robot would need to turn on the spot towards the goal at `max_turn`,
    then drive straight to it at `max_forward`: distance / max_forward + |bearing| / max_turn. A
    step's progress is the time it saves, x max_forward / dt: the closing speed while facing the
    goal, and max_forward while turning towards it at max_turn. Distance alone would make a goal
    behind the robot a reason to back up, blind (the camera looks ahead), rather than turn; so a
    step driven in reverse earns no distance: what it closes counts as lost.

    Args:
        actions: (N, H, A) commands, step k applied from k * dt, starting at the origin heading +x.
        goal: (2,) m in that frame (`Goal.in_robot_frame`).
        dt: s per step, > 0. max_forward: m/s, > 0. max_turn: rad/s, > 0.

    Returns:
        float32 (N, H) m/s.
    """
    poses = unicycle_poses(actions, dt)  # (N, H + 1, 3)
    heading, v = poses[..., 2], np.asarray(actions)[..., 0]
    to_goal = np.asarray(goal, np.float64) - poses[..., :2]
    bearing = np.angle(np.exp(1j * (np.arctan2(to_goal[..., 1], to_goal[..., 0]) - heading)))  # (N, H + 1), wrapped
    closed = -np.diff(np.linalg.norm(to_goal, axis=-1), axis=1)  # (N, H) m nearer
    closed = np.where(v < 0, -np.abs(closed), closed)
    turned = -np.diff(np.abs(bearing), axis=1)  # (N, H) rad nearer facing it
    return ((closed / max_forward + turned / max_turn) * max_forward / dt).astype(np.float32)


def unicycle_poses(actions: np.ndarray, dt: float) -> np.ndarray:
    """float64 (N, H + 1, 3): x, y (m), yaw (rad, not wrapped) of a base starting at the origin heading +x
    and driven by each candidate's (N, H, A) commands for dt s each, with the midpoint heading of
    sora_ros/sim/drive.integrate; the start first."""
    actions = np.asarray(actions, np.float64)
    v, w = actions[..., 0], actions[..., 1]  # (N, H)
    heading = np.concatenate([np.zeros((len(actions), 1)), np.cumsum(w * dt, axis=1)], axis=1)  # (N, H + 1)
    mid = heading[:, 1:] - 0.5 * w * dt
    moves = np.stack([v * np.cos(mid), v * np.sin(mid)], axis=-1) * dt  # (N, H, 2)
    position = np.concatenate([np.zeros((len(actions), 1, 2)), np.cumsum(moves, axis=1)], axis=1)  # (N, H + 1, 2)
    return np.concatenate([position, heading[..., None]], axis=-1)


def approach_speed(distance: float, max_accel: float) -> float:
    """m/s from which a base braking at `max_accel` (m/s^2) stops within `distance` m: sqrt(2 a d)."""
    return math.sqrt(2.0 * max_accel * max(distance, 0.0))


def approach_bounds(bounds: tuple[np.ndarray, np.ndarray], distance: float,
                    max_accel: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-step command bounds (low, high), each (H, A), with forward speed at most
    `approach_speed`: slow enough to stop at a goal `distance` m away rather than coast past it."""
    low, high = bounds
    high = high.copy()
    high[:, 0] = np.minimum(high[:, 0], approach_speed(distance, max_accel))
    return low, high


@dataclass
class GoalPursuit:
    """Heads for `goal`, and explores for a while when it stops getting nearer.

    A local planner facing an obstacle between the robot and the goal settles in front of it (the
    risk term pushes away, the progress term pulls back): a local minimum. As Nav2's progress
    checker hands over to its recovery behaviours, the robot that has not come `progress_m` nearer
    the goal in `window_s` explores (progress = forward speed, no goal) for `explore_s`, then heads
    for the goal again from wherever that took it.

        pursuit = GoalPursuit(Goal(2.0, 1.0))
        progress = pursuit.scoring(stamp_ns, x, y, yaw, dt, max_forward, max_turn)   # None: explore

    Attributes:
        goal: where to go.
        window_s, progress_m, explore_s: s, m, s; > 0.
    """

    goal: Goal
    window_s: float = 5.0
    progress_m: float = 0.2
    explore_s: float = 3.0
    _nearest: float = field(default=math.inf, init=False)  # m, the nearest the robot came since _since_ns
    _since_ns: int | None = field(default=None, init=False)
    _explore_until_ns: int = field(default=0, init=False)

    def scoring(self, stamp_ns: int, x: float, y: float, yaw: float, dt: float, max_forward: float,
                max_turn: float) -> Callable[[np.ndarray], np.ndarray] | None:
        """How to score candidates starting at (x, y, yaw) at stamp_ns (ns, increasing): progress
        towards the goal (`Goal.progress_from`), or None while exploring (forward speed)."""
        distance = self.goal.distance(x, y)
        if self._since_ns is None or distance < self._nearest - self.progress_m:
            self._nearest, self._since_ns = distance, stamp_ns  # getting nearer: the window starts again
        elif stamp_ns - self._since_ns > self.window_s * NS_PER_S:  # stuck: explore, then a fresh window
            self._explore_until_ns = stamp_ns + round(self.explore_s * NS_PER_S)
            self._nearest, self._since_ns = distance, self._explore_until_ns
        if stamp_ns < self._explore_until_ns:
            return None
        return self.goal.progress_from(x, y, yaw, dt, max_forward, max_turn)

    @property
    def exploring_until_ns(self) -> int:
        """When the current spell of exploring ends (ns; in the past: heading for the goal)."""
        return self._explore_until_ns
