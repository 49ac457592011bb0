"""The wander policy: smooth random (v, w) commands that steer away from walls.

It is both the sim node's fallback when no cmd_vel arrives and the source of
the recorded commands, so its commands must vary enough (speed, both turning
directions, straight runs, turns in place) for a world model to learn what an
action does. Input is a fan of range readings; pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sora_ros.sim.drive import DriveLimits


@dataclass(frozen=True)
class WanderConfig:
    segment_seconds: tuple[float, float] = (0.8, 3.0)  # how long one random goal lasts
    smoothing_seconds: float = 0.4  # time constant of the command's approach to the goal
    slow_distance: float = 1.2  # m: slow down when the way ahead is shorter
    turn_distance: float = 0.8  # m: turn away when the way ahead is shorter
    stop_distance: float = 0.35  # m: back off when the way ahead is shorter
    front_half_angle: float = np.radians(25)  # rays within this of the heading are "ahead"
    # Share of goals driven blind (the range fan ignored until the next goal): the collisions a
    # risk head learns "blocked" from, which the careful policy alone makes too rarely (0.4% of
    # training frames). 0 draws no extra random number, so seeds keep their recorded episodes.
    blind_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.blind_share <= 1.0:
            raise ValueError(f"blind_share must be in [0, 1], got {self.blind_share}")


# Range fan the world measures for the policy: angles relative to the heading, rad.
RAY_ANGLES = np.radians(np.linspace(-75, 75, 11))


class WanderPolicy:
    """Random goals held for a random time, approached smoothly, overridden near obstacles."""

    def __init__(self, rng: np.random.Generator, limits: DriveLimits, config: WanderConfig = WanderConfig()) -> None:
        self._rng, self._limits, self._config = rng, limits, config
        self._goal = (0.0, 0.0)
        self._goal_left = 0.0  # s until a new goal is drawn
        self._command = np.zeros(2)  # the smoothed (v, w)
        self._blind = False  # this goal ignores the range fan

    def _new_goal(self) -> tuple[float, float]:
        """Straight runs, gentle and sharp turns either way, slow and fast, some turns in place."""
        limits, rng = self._limits, self._rng
        kind = rng.random()
        if kind < 0.3:
            return rng.uniform(0.3, 1.0) * limits.max_forward, rng.normal(0, 0.1)
        if kind < 0.85:
            return rng.uniform(0.1, 1.0) * limits.max_forward, rng.uniform(-1, 1) * limits.max_turn
        return 0.0, rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * limits.max_turn

    def act(self, ranges: np.ndarray, dt: float) -> tuple[float, float]:
        """The next command.

        Args:
            ranges: float (len(RAY_ANGLES),) free distance along each ray, m.
            dt: seconds since the previous call.

        Returns:
            (v m/s, w rad/s) within the drive limits.
        """
        config, limits = self._config, self._limits
        self._goal_left -= dt
        if self._goal_left <= 0:
            self._goal = self._new_goal()
            self._goal_left = self._rng.uniform(*config.segment_seconds)
            self._blind = config.blind_share > 0 and self._rng.random() < config.blind_share
        alpha = min(1.0, dt / config.smoothing_seconds)
        self._command += alpha * (np.array(self._goal) - self._command)
        v, w = float(self._command[0]), float(self._command[1])
        if self._blind:
            return self._clipped(v, w)

        ahead = float(ranges[np.abs(RAY_ANGLES) <= config.front_half_angle].min())
        if ahead < config.slow_distance:
            v *= float(np.clip((ahead - config.stop_distance) / (config.slow_distance - config.stop_distance), 0, 1))
        if ahead < config.turn_distance:
            # Turn towards the side with more room, harder the closer the obstacle.
            left, right = ranges[RAY_ANGLES > 0].mean(), ranges[RAY_ANGLES < 0].mean()
            urgency = 1 - ahead / config.turn_distance
            turn = (1.0 if left >= right else -1.0) * limits.max_turn
            w = (1 - urgency) * w + urgency * turn
        if ahead < config.stop_distance:
            v = -0.5 * limits.max_reverse
        self._command[:] = (v, w)  # start the next smoothing from what was sent
        return self._clipped(v, w)

    def _clipped(self, v: float, w: float) -> tuple[float, float]:
        limits = self._limits
        return (float(np.clip(v, -limits.max_reverse, limits.max_forward)),
                float(np.clip(w, -limits.max_turn, limits.max_turn)))
