"""Contact observed, not predicted: has the robot just pushed against something?

The planner scores candidates by the risk head's *predicted* probability of being blocked. When
the robot is already pressed against an obstacle, odometry says so directly. The rule is the one
the head's training labels come from (sora_ros/core/risk.py): a step commanded forward with almost
no odometry progress; here also its mirror image, a step commanded in reverse with almost no
progress, because the camera does not see what is behind the robot, so neither the head nor the
world model can warn of it (in `sora-ros bench closed-loop` a robot whose monitor watched forward
contact only backed into something for 134 refused moves of one 30 s episode; README, "The planner").
After such a step, `Forbidden.bounds` caps linear_x at 0 in that direction over a plan's
first `escape_steps` steps, counted from the blocked step: a hard bound on the commands the MPC
samples (it clips its candidates to it), so no cost can outweigh it; and `Forbidden.filter` holds
every command sent to it, the plan followed between decisions included. The MPC then turns or drives
the other way instead of pushing on. This is the role that Nav2's progress checker and recovery
behaviours play, and its collision monitor's "stop" zone (a filter on the command, not a cost).
A ban that was a hazard of 1 in the cost let the MPC push on whenever every other candidate scored
worse (README, "The planner", has the runs).

Where it happened is kept too (`Contact`): a ban that only lasts escape_steps lets the robot push
again into what stopped it once the ban wears off, when the camera cannot see it (something low
right in front of the bumper, below the view: in `sora-ros bench closed-loop` one robot pinned
against a low box pushed 27 times in a minute, turning a little between pushes, its predicted
risk near 0). So while the robot is within CLEAR_DISTANCE_M of a spot where it was blocked,
heading within CONE_RAD of the way it pushed there, driving that way is forbidden for the steps a
turn out of that cone takes at max_turn (reverse the same, mirrored): it must back off or turn
away first, as a robot that remembers its bumper hits in a local costmap does (Nav2's obstacle
layer marks them). Odometry without a heading keeps no spots, and a pose without one is judged by
the timed ban alone (the spots stay for the next pose with one). A step that begins a reversal (the
command before it drove the other way) is not judged: the robot passes through rest in it, which
is no contact (a trace found a spot made so forbid a free direction for 40 s). A step that starts
from rest counts only when the step after it is blocked too: a base that stamps odometry when it
publishes it, up to about 1.5 steps after measuring, shows a robot that has just set off as still
standing (a trial with 150 ms trapped the robot at its start); a robot pressed against something
from rest is caught one step later. At rest: no motion over the step before in the odometry, or no
drive commanded in it (odometry jitter of a millimetre or two reads as motion).

Why both: a head trained on few blocked frames can read a low risk while the robot keeps pushing
(`sora-ros bench closed-loop` reports the seconds stuck per episode; README, "The planner", gives
runs with and without the monitor).

    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8, max_turn=1.5)
    monitor.command(now_ns, linear_x)          # every command sent
    monitor.odometry(stamp_ns, x, y, yaw)      # every odometry pose, stamped when measured, same clock
    bounds = monitor.forbidden_steps(now_ns).bounds(limits.low, limits.high, horizon)  # (H, A) low, high
    actions = planner.propose(bounds)          # (N, H, A) within them
    command = monitor.forbidden_steps(now_ns).filter(plan[k])   # (A,) each command sent

Legend: N candidates, H horizon steps, A action dim (linear_x first).
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from sora_ros.core.risk import BlockedRule, MotionLog, blocked_steps, commanded
from sora_ros.core.units import NS_PER_S

# A spot where the robot was blocked forbids pushing that way again until it has moved this far
# from it (m: a few centimetres more than a turn on the spot wobbles) or turned this far (rad) from
# the way it pushed there; MAX_CONTACTS spots are kept, the oldest dropped first.
CLEAR_DISTANCE_M = 0.15
CONE_RAD = math.pi / 3
MAX_CONTACTS = 32
SAME_SPOT_M, SAME_HEADING_RAD = 0.02, 0.1  # a step judged blocked again is not a new spot
# A stamp this far (ns) behind its stream's newest is a clock that jumped back, not a late message.
JUMP_BACK_NS = NS_PER_S
# Messages kept per stream at most, whatever the stamps: a clock that stands still (sim time before
# the first /clock) would keep every one; its window holds ~1.5 s, 1,000 messages at 670 Hz.
MAX_HISTORY = 1000


class Forbidden(NamedTuple):
    """Leading steps of a plan in which no command may drive forward, or in reverse."""

    forward: int = 0
    reverse: int = 0

    def bounds(self, low: np.ndarray, high: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-step command bounds of a plan starting where this was judged: the robot's `low` and
        `high` (A,) repeated over `horizon` steps, float32 (H, A) each, with linear_x at most 0
        over the first `forward` steps and at least 0 over the first `reverse`."""
        low = np.repeat(np.asarray(low, np.float32)[None], horizon, axis=0)  # (H, A)
        high = np.repeat(np.asarray(high, np.float32)[None], horizon, axis=0)
        high[: self.forward, 0] = np.minimum(high[: self.forward, 0], 0.0)
        low[: self.reverse, 0] = np.maximum(low[: self.reverse, 0], 0.0)
        return low, high

    def filter(self, command: np.ndarray) -> np.ndarray:
        """The command (A,) about to be sent, judged now: linear_x at most 0 while forward is
        forbidden, at least 0 while reverse is; a copy, as float32. Between decisions the robot
        follows a plan made before the newest blocked step: this holds the ban for it too."""
        command = np.array(command, np.float32)
        if self.forward:
            command[0] = min(command[0], 0.0)
        if self.reverse:
            command[0] = max(command[0], 0.0)
        return command


class Contact(NamedTuple):
    """A spot where the robot was blocked: its odometry position (m) and the way it pushed (rad, the
    heading for a forward push, the heading + pi for a reverse one)."""

    x: float
    y: float
    heading: float


def _turn_left(contacts: list[Contact], heading: float) -> float:
    """How far (rad) a robot moving along `heading` must still turn to push toward none of the
    spots `contacts` (0: it does not face one)."""
    return max((CONE_RAD - abs(math.remainder(heading - c.heading, math.tau)) for c in contacts), default=0.0)


class ContactMonitor:
    """Recent commands and odometry, and the commands they forbid.

    Args:
        rule: the thresholds of a blocked step (min_command, progress_fraction, command_timeout_s,
            max_odom_gap_s; horizon_steps is not used).
        dt: seconds per plan step (the model's dt), > 0.
        escape_steps: steps after a blocked one in which no command may drive in its direction,
            >= 0 (0 disables the monitor).
        max_turn: rad/s the robot turns at most (> 0), to count the steps it needs to turn away
            from a spot where it was blocked; None: escape_steps.

    Raises:
        ValueError: dt <= 0 or escape_steps < 0.
    """

    def __init__(self, rule: BlockedRule, dt: float, escape_steps: int, max_turn: float | None = None) -> None:
        if not dt > 0 or escape_steps < 0 or (max_turn is not None and not max_turn > 0):
            raise ValueError(f"dt must be > 0, escape_steps >= 0 and max_turn > 0 or None, got {dt}, {escape_steps} "
                             f"and {max_turn}")
        self.rule, self.escape_steps, self.max_turn = rule, escape_steps, max_turn
        self.dt_ns = round(dt * NS_PER_S)
        # What the last escape_steps steps need, and the command in force before them.
        self._memory_ns = (escape_steps + 2) * self.dt_ns + round(rule.command_timeout_s * NS_PER_S)
        self._commands: deque[tuple[int, float]] = deque(maxlen=MAX_HISTORY)
        # stamp, x, y, yaw (NaN: unknown)
        self._odometry: deque[tuple[int, float, float, float]] = deque(maxlen=MAX_HISTORY)
        self.contacts: deque[Contact] = deque(maxlen=MAX_CONTACTS)

    def command(self, stamp_ns: int, linear_x: float) -> None:
        """A linear.x command (m/s, negative in reverse) sent at stamp_ns (see `_append` for stamps
        that go back)."""
        self._append(self._commands, (int(stamp_ns), float(linear_x)))

    def odometry(self, stamp_ns: int, x: float, y: float, yaw: float = math.nan) -> bool:
        """The robot's position (m, any fixed frame) and heading (rad, NaN: unknown, then no contact
        spot is kept) at stamp_ns. Returns False, keeping nothing, for a position that is not finite
        (no step is judged from it)."""
        if not (np.isfinite(x) and np.isfinite(y)):
            return False
        self._append(self._odometry, (int(stamp_ns), float(x), float(y), float(yaw)))
        return True

    def reset(self) -> None:
        """Forget everything (a jump in time, a restarted robot)."""
        self._commands.clear()
        self._odometry.clear()
        self.contacts.clear()

    def _append(self, queue: deque, item: tuple) -> None:
        # Each stream comes in order of its stamps (odometry may be stamped when it was measured,
        # before the commands sent since). One older than its stream's newest by more than
        # JUMP_BACK_NS means the clock jumped back (a restarted simulation or bag): what came
        # before no longer compares. A little older: delivered out of order, and dropped.
        if queue and item[0] < queue[-1][0]:
            if queue[-1][0] - item[0] <= JUMP_BACK_NS:
                return
            self.reset()
        queue.append(item)
        while queue[0][0] < item[0] - self._memory_ns:
            queue.popleft()

    def forbidden_steps(self, now_ns: int) -> Forbidden:
        """How many leading steps of a plan starting at now_ns may not command forward, and how many
        not in reverse: escape_steps minus the steps since the newest step blocked in that direction
        among the last escape_steps, else 0 (also without odometry, whose steps are unknown, never
        guessed blocked); and, while the robot's newest pose faces a spot where it was blocked that
        way (`Contact`), the steps a turn out of that spot's cone takes at max_turn (escape_steps
        without it, at most escape_steps). A spot is found here, by a call within escape_steps steps
        of its blocked step, so call this every step or so; the filter then lets the robot go once it
        has turned away."""
        if not self.escape_steps or not self._odometry:
            return Forbidden()
        ago = np.arange(1, self.escape_steps + 1, dtype=np.int64)  # step j ended (j - 1) steps before now
        starts = int(now_ns) - ago * self.dt_ns
        command_ns = np.array([c[0] for c in self._commands], np.int64)
        command_v = np.array([c[1] for c in self._commands], np.float32)
        odom_ns = np.array([o[0] for o in self._odometry], np.int64)
        odom_xy = np.array([o[1:3] for o in self._odometry], np.float64).reshape(-1, 2)
        odom_yaw = np.array([o[3] for o in self._odometry], np.float64)

        motion, still = self._motion_before(starts, odom_ns, odom_xy, odom_yaw)  # (escape_steps,) each

        def left(sign: float) -> int:  # the rule judges forward commands: reverse ones are judged mirrored
            log = MotionLog(command_ns, sign * command_v, odom_ns, odom_xy)
            blocked = blocked_steps(self.rule, starts, self.dt_ns, log) == 1  # (escape_steps,), newest first
            # A reversal passes through rest, which shows no progress: a step that began driving the
            # other way, or with the robot still moving the other way, is not judged.
            before = starts - self.dt_ns // 2  # (escape_steps,) within the step before each
            command_before = commanded(self.rule, log, before)  # (escape_steps,) m/s
            blocked &= command_before > -self.rule.min_command
            blocked &= sign * motion >= 0
            # A start from rest counts only with the step after it blocked too: odometry stamped when
            # published, up to ~1.5 steps late, shows a robot that just set off as not moving yet. At
            # rest: odometry over the step before shows no motion, or the commands on record stood
            # still over it (odometry noise of a millimetre or two reads as motion).
            rest = still | ((np.searchsorted(command_ns, before, side="right") > 0)
                            & (command_before <= self.rule.min_command))
            twice = blocked[1:] & blocked[:-1]  # (escape_steps - 1,) step and the one after it
            counted = blocked & ~rest
            counted[1:] |= twice
            counted[:-1] |= twice
            for start in starts[counted]:
                self._remember(start, sign, odom_ns, odom_xy, odom_yaw)
            return int(self.escape_steps - ago[counted][0] + 1) if counted.any() else 0

        x, y, yaw = (float(v) for v in (*odom_xy[-1], odom_yaw[-1]))  # the newest pose
        steps = left(1.0), left(-1.0)
        near = [c for c in self.contacts if math.hypot(c.x - x, c.y - y) < CLEAR_DISTANCE_M]
        self.contacts = deque(near, maxlen=MAX_CONTACTS)  # the robot got away from the others
        facing = near if math.isfinite(yaw) else []  # no heading: which spot it faces is unknown (kept)
        return Forbidden(*(max(n, self._steps_to_turn(_turn_left(facing, yaw + turn)))
                           for n, turn in zip(steps, (0.0, math.pi))))

    def _motion_before(self, starts: np.ndarray, odom_ns: np.ndarray, odom_xy: np.ndarray,
                       odom_yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How the robot moved over the step before each of `starts` (int64 (T,) ns): float (T,) the
        way, 1 forward, -1 backward, along the heading of the newest pose at or before it, 0 for less
        than the rule counts as progress at min_command, or a heading unknown; and bool (T,) whether
        it moved less than that in any direction (at rest)."""
        newest = np.maximum(np.searchsorted(odom_ns, starts, side="right") - 1, 0)
        heading = odom_yaw[newest]  # (T,) NaN: unknown
        times = odom_ns.astype(np.float64)
        before, at = ([np.interp(t, times, odom_xy[:, i]) for i in range(2)] for t in (starts - self.dt_ns, starts))
        along = (at[0] - before[0]) * np.cos(heading) + (at[1] - before[1]) * np.sin(heading)  # (T,) m, NaN: unknown
        least = self.rule.progress_fraction * self.rule.min_command * self.dt_ns / NS_PER_S
        way = np.where(np.abs(np.nan_to_num(along)) > least, np.sign(np.nan_to_num(along)), 0.0)
        return way, np.hypot(at[0] - before[0], at[1] - before[1]) <= least

    def _steps_to_turn(self, angle: float) -> int:
        """Plan steps a turn of `angle` rad takes at max_turn (escape_steps without one), at most escape_steps."""
        if angle <= 0:
            return 0
        if self.max_turn is None:
            return self.escape_steps
        return min(self.escape_steps, math.ceil(angle / (self.max_turn * self.dt_ns / NS_PER_S)))

    def _remember(self, start_ns: int, sign: float, odom_ns: np.ndarray, odom_xy: np.ndarray,
                  odom_yaw: np.ndarray) -> None:
        """Keep the spot of a step blocked at start_ns (sign 1 forward, -1 reverse): the position
        interpolated there, the heading of the newest pose at or before it (not interpolated: it wraps)."""
        newest = max(int(np.searchsorted(odom_ns, start_ns, side="right")) - 1, 0)
        if not np.isfinite(odom_yaw[newest]):
            return
        x, y = (float(np.interp(start_ns, odom_ns, odom_xy[:, i])) for i in range(2))
        heading = float(odom_yaw[newest]) + (0.0 if sign > 0 else math.pi)
        if not any(math.hypot(c.x - x, c.y - y) < SAME_SPOT_M
                   and abs(math.remainder(heading - c.heading, math.tau)) < SAME_HEADING_RAD for c in self.contacts):
            self.contacts.append(Contact(x, y, heading))
