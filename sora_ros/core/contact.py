"""Contact observed, not predicted: has the robot just pushed against something?

The planner scores candidates by the risk head's *predicted* probability of being blocked. When
the robot is already pressed against an obstacle, odometry says so directly. The rule is the one
the head's training labels come from (sora_ros/core/risk.py): a step commanded forward with almost
no odometry progress; here also its mirror image, a step commanded in reverse with almost no
progress, because the camera does not see what is behind the robot, so neither the head nor the
world model can warn of it (in `sora-ros bench closed-loop` a robot whose monitor watched forward
contact only backed into something for 134 refused moves of one 30 s episode; README, "The planner").
After such a step, `ContactMonitor.override` gives every candidate hazard 1 at each command in
that direction in its first `escape_steps` steps, counted from the blocked step. The MPC then
turns or drives the other way instead of pushing on. This is the role that Nav2's progress
checker and recovery behaviours play.

Why both: a head trained on few blocked frames can read a low risk while the robot keeps pushing
(`sora-ros bench closed-loop` reports the seconds stuck per episode; README, "The planner", gives
runs with and without the monitor).

    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)
    monitor.command(now_ns, linear_x)          # every command sent
    monitor.odometry(now_ns, x, y)             # every odometry position, on the same clock
    hazard = monitor.override(actions, hazard, monitor.forbidden_steps(now_ns))   # (N, H, A), (N, H) -> (N, H)

Legend: N candidates, H horizon steps, A action dim (linear_x first).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from sora_ros.core.risk import BlockedRule, MotionLog, blocked_steps
from sora_ros.core.units import NS_PER_S


class Forbidden(NamedTuple):
    """Leading steps of a plan in which a command forward, or in reverse, counts as a collision."""

    forward: int = 0
    reverse: int = 0


class ContactMonitor:
    """Recent commands and odometry, and the commands they forbid.

    Args:
        rule: the thresholds of a blocked step (min_command, progress_fraction, command_timeout_s,
            max_odom_gap_s; horizon_steps is not used).
        dt: seconds per plan step (the model's dt), > 0.
        escape_steps: steps after a blocked one in which commands in its direction count as
            collisions, >= 0 (0 disables the monitor).

    Raises:
        ValueError: dt <= 0 or escape_steps < 0.
    """

    def __init__(self, rule: BlockedRule, dt: float, escape_steps: int) -> None:
        if not dt > 0 or escape_steps < 0:
            raise ValueError(f"dt must be > 0 and escape_steps >= 0, got {dt} and {escape_steps}")
        self.rule, self.escape_steps = rule, escape_steps
        self.dt_ns = round(dt * NS_PER_S)
        # What the last escape_steps steps need, and the command in force before them.
        self._memory_ns = (escape_steps + 2) * self.dt_ns + round(rule.command_timeout_s * NS_PER_S)
        self._commands: deque[tuple[int, float]] = deque()
        self._odometry: deque[tuple[int, float, float]] = deque()

    def command(self, stamp_ns: int, linear_x: float) -> None:
        """A linear.x command (m/s, negative in reverse) sent at stamp_ns (see `_append` for stamps
        that go back)."""
        self._append(self._commands, (int(stamp_ns), float(linear_x)))

    def odometry(self, stamp_ns: int, x: float, y: float) -> bool:
        """The robot's position (m, any fixed frame) at stamp_ns. Returns False, keeping nothing, for
        a position that is not finite (no step is judged from it)."""
        if not (np.isfinite(x) and np.isfinite(y)):
            return False
        self._append(self._odometry, (int(stamp_ns), float(x), float(y)))
        return True

    def reset(self) -> None:
        """Forget everything (a jump in time, a restarted robot)."""
        self._commands.clear()
        self._odometry.clear()

    def _append(self, queue: deque, item: tuple) -> None:
        # Callers stamp with one clock as things happen; a stamp before the newest one means that
        # clock jumped back (a restarted simulation or bag): what came before no longer compares.
        newest = max((q[-1][0] for q in (self._commands, self._odometry) if q), default=item[0])
        if item[0] < newest:
            self.reset()
        queue.append(item)
        while queue[0][0] < item[0] - self._memory_ns:
            queue.popleft()

    def forbidden_steps(self, now_ns: int) -> Forbidden:
        """How many leading steps of a plan starting at now_ns may not command forward, and how many
        not in reverse: escape_steps minus the steps since the newest step blocked in that direction
        among the last escape_steps, else 0 (also without odometry, whose steps are unknown, never
        guessed blocked)."""
        if not self.escape_steps or not self._odometry:
            return Forbidden()
        ago = np.arange(1, self.escape_steps + 1, dtype=np.int64)  # step j ended (j - 1) steps before now
        starts = int(now_ns) - ago * self.dt_ns
        command_ns = np.array([c[0] for c in self._commands], np.int64)
        command_v = np.array([c[1] for c in self._commands], np.float32)
        odom_ns = np.array([o[0] for o in self._odometry], np.int64)
        odom_xy = np.array([o[1:] for o in self._odometry], np.float64).reshape(-1, 2)

        def left(sign: float) -> int:  # the rule judges forward commands: reverse ones are judged mirrored
            log = MotionLog(command_ns, sign * command_v, odom_ns, odom_xy)
            blocked = blocked_steps(self.rule, starts, self.dt_ns, log) == 1  # (escape_steps,)
            return int(self.escape_steps - ago[blocked][0] + 1) if blocked.any() else 0

        return Forbidden(left(1.0), left(-1.0))

    def override(self, actions: np.ndarray, hazard: np.ndarray, forbidden: Forbidden) -> np.ndarray:
        """hazard (N, H) with 1 at every forward command (linear_x > rule.min_command) among each
        candidate's first `forbidden.forward` steps of actions (N, H, A), and at every reverse one
        (linear_x < -rule.min_command) among its first `forbidden.reverse` (`forbidden_steps` at the
        plan's start); the same array when nothing is forbidden."""
        if not any(forbidden):
            return hazard
        linear = np.asarray(actions)[:, :, 0]  # (N, H)
        hazard = np.array(hazard, np.float32)
        for steps, pushing in ((forbidden.forward, linear > self.rule.min_command),
                               (forbidden.reverse, linear < -self.rule.min_command)):
            hazard[:, :steps][pushing[:, :steps]] = 1.0
        return hazard
