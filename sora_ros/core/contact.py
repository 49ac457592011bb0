"""Contact observed, not predicted: has the robot just pushed against something?

The planner scores candidates by the risk head's *predicted* probability of being blocked. When
the robot is already pressed against an obstacle, odometry says so directly. The rule is the one
the head's training labels come from (sora_ros/core/risk.py): a step commanded forward with almost
no odometry progress. After such a step, `ContactMonitor.override` gives every candidate hazard 1
at each forward command in its first `escape_steps` steps, counted from the blocked step. The MPC
then turns or backs away instead of pushing on. This is the role that Nav2's progress checker and
recovery behaviours play.

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

import numpy as np

from sora_ros.core.risk import BlockedRule, MotionLog, blocked_steps
from sora_ros.core.units import NS_PER_S


class ContactMonitor:
    """Recent commands and odometry, and the forward commands they forbid.

    Args:
        rule: the thresholds of a blocked step (min_command, progress_fraction, command_timeout_s,
            max_odom_gap_s; horizon_steps is not used).
        dt: seconds per plan step (the model's dt), > 0.
        escape_steps: steps after a blocked one in which forward commands count as collisions, >= 0
            (0 disables the monitor).

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
        """A forward command (m/s) sent at stamp_ns (see `_append` for stamps that go back)."""
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

    def forbidden_steps(self, now_ns: int) -> int:
        """How many leading steps of a plan starting at now_ns may not command forward: escape_steps
        minus the steps since the newest blocked step among the last escape_steps, else 0 (also
        without odometry, whose steps are unknown, never guessed blocked)."""
        if not self.escape_steps or not self._odometry:
            return 0
        ago = np.arange(1, self.escape_steps + 1, dtype=np.int64)  # step j ended (j - 1) steps before now
        log = MotionLog(np.array([c[0] for c in self._commands], np.int64),
                        np.array([c[1] for c in self._commands], np.float32),
                        np.array([o[0] for o in self._odometry], np.int64),
                        np.array([o[1:] for o in self._odometry], np.float64).reshape(-1, 2))
        blocked = blocked_steps(self.rule, int(now_ns) - ago * self.dt_ns, self.dt_ns, log) == 1  # (escape_steps,)
        return int(self.escape_steps - ago[blocked][0] + 1) if blocked.any() else 0

    def override(self, actions: np.ndarray, hazard: np.ndarray, steps: int) -> np.ndarray:
        """hazard (N, H) with 1 at every forward command (linear_x > rule.min_command) among each
        candidate's first `steps` steps of actions (N, H, A) (`forbidden_steps` at the plan's start);
        unchanged when steps is 0."""
        if not steps:
            return hazard
        forward = np.asarray(actions)[:, :steps, 0] > self.rule.min_command  # (N, steps)
        hazard = np.array(hazard, np.float32)
        hazard[:, :steps][forward] = 1.0
        return hazard
