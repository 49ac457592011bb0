"""Observed contact (sora_ros/core/contact.py): a step commanded forward (or in reverse) without
odometry progress bounds the commands in that direction to 0 for the next escape_steps steps, so
the MPC turns or drives the other way, whatever the predicted risk."""

from __future__ import annotations

import numpy as np
import pytest

from sora_ros.core.contact import CONE_RAD, MAX_HISTORY, ContactMonitor, Forbidden
from sora_ros.core.mpc import CemPlanner, MpcConfig, VelocityLimits
from sora_ros.core.risk import BlockedRule

DT_NS = 100_000_000  # 0.1 s


def drive(monitor: ContactMonitor, commands: list[float], progress: list[float], start_step: int = 0,
          x: float = 0.0) -> tuple[int, float]:
    """Send commands[i] at step start_step + i, the robot moving progress[i] m along x in that step;
    returns (the step after the last, the final x)."""
    if start_step == 0:
        monitor.odometry(0, x, 0.0)
    for i, (command, moved) in enumerate(zip(commands, progress)):
        step = start_step + i
        monitor.command(step * DT_NS, command)
        x += moved
        monitor.odometry((step + 1) * DT_NS, x, 0.0)
    return start_step + len(commands), x


LIMITS = VelocityLimits(0.6, 0.2, 1.5)


def test_a_blocked_step_forbids_forward_commands_in_the_next_steps_only():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=5)
    now, _ = drive(monitor, [0.5] * 6, [0.05] * 4 + [0.0] * 2)  # the last two steps refused
    assert monitor.forbidden_steps(now * DT_NS) == (5, 0)
    low, high = Forbidden(forward=5).bounds(LIMITS.low, LIMITS.high, 8)
    assert np.allclose(high[:, 0], [0] * 5 + [0.6] * 3)  # no forward for 5 steps, then the robot's limit
    assert np.allclose(low[:, 0], -0.2) and np.allclose(high[:, 1], 1.5)  # back, turn: free


def test_backing_into_something_forbids_reverse_commands_not_forward_ones():
    # The camera does not see behind the robot: odometry is all that tells of a wall at its back.
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=5)
    now, x = drive(monitor, [-0.2] * 4, [-0.02] * 4)
    assert monitor.forbidden_steps(now * DT_NS) == (0, 0)  # backing away as commanded
    now, x = drive(monitor, [-0.2] * 2, [0.0] * 2, now, x)  # refused
    assert monitor.forbidden_steps(now * DT_NS) == (0, 5)
    low, high = monitor.forbidden_steps(now * DT_NS).bounds(LIMITS.low, LIMITS.high, 8)
    assert np.allclose(low[:, 0], [0] * 5 + [-0.2] * 3) and np.allclose(high[:, 0], 0.6)
    # Then forward: the reversal's step shows no progress (the robot passes through rest), which is no
    # contact; the steps after it, refused too, start from rest: two in a row are, both banned.
    now, x = drive(monitor, [0.5], [0.0], now, x)
    assert monitor.forbidden_steps(now * DT_NS) == (0, 4)
    now, x = drive(monitor, [0.5], [0.0], now, x)
    assert monitor.forbidden_steps(now * DT_NS) == (0, 3)
    now, x = drive(monitor, [0.5], [0.0], now, x)
    assert monitor.forbidden_steps(now * DT_NS) == (5, 2)


def test_the_ban_wears_off_step_by_step_and_a_moving_robot_is_never_blocked():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=4)
    now, x = drive(monitor, [0.5] * 6, [0.05] * 6)
    assert monitor.forbidden_steps(now * DT_NS) == (0, 0)  # moving as commanded
    now, x = drive(monitor, [0.5], [0.0], now, x)  # refused
    assert monitor.forbidden_steps(now * DT_NS) == (4, 0)
    for left in (3, 2, 1, 0):  # turning away: no forward command, so no new blocked step
        now, x = drive(monitor, [0.0], [0.0], now, x)
        assert monitor.forbidden_steps(now * DT_NS) == (left, 0)


def test_a_start_from_rest_is_not_contact():
    # The sim's first step from rest at 0.6 m/s covers 1 cm of the 6 cm commanded (core/risk.py).
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)
    now, _ = drive(monitor, [0.6], [0.01])
    assert monitor.forbidden_steps(now * DT_NS) == (0, 0)


@pytest.mark.parametrize("lag_ms", [0, 100, 150])
def test_odometry_stamped_when_published_does_not_trap_a_robot_at_its_start(lag_ms):
    """A base that stamps odometry when it publishes it, `lag_ms` after measuring (common with
    serial drivers: a trial trapped the robot at its start at 150 ms, every start from rest read as
    contact); a robot pressed against something from rest is still caught, one step later."""
    for accel, pinned in ((1.0, False), (0.3, False), (1.0, True)):
        monitor = ContactMonitor(BlockedRule(max_accel=accel), dt=0.1, escape_steps=8, max_turn=1.5)
        reached = np.concatenate([[0.0], np.cumsum([0.0] * 6 if pinned else ramp(accel, 6))])  # m at each step

        def position(t_ns: int) -> float:  # where the robot was at t_ns (0.6 m/s commanded from t = 0)
            return float(np.interp(t_ns / DT_NS, np.arange(len(reached)), reached, left=0.0))

        judged = []
        for tick in range(61):  # odometry at 100 Hz, stamped lag_ms after it was measured
            now_ns = tick * 10_000_000
            monitor.odometry(now_ns, position(now_ns - lag_ms * 1_000_000), 0.0, 0.0)
            if tick % 10 == 0:  # a step: judge, then command on
                judged.append(monitor.forbidden_steps(now_ns).forward > 0)
                monitor.command(now_ns, 0.6)
        assert any(judged) == pinned, (accel, pinned, judged)
        if pinned:
            assert judged.index(True) <= 3, "pressed against something from rest: caught after its second step"


@pytest.mark.parametrize("lag_ms", [100, 150])
def test_noisy_odometry_stamped_when_published_does_not_trap_a_robot_at_its_start(lag_ms):
    """Odometry with a millimetre or two of jitter never reads as "at rest" (the robot seems to move
    more than min_command's 10% of a step): a start from rest is known from the commands too, so the
    lagging odometry of a robot that set off is no contact; pinned from rest, it still is."""
    for pinned in (False, True):
        monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8, max_turn=1.5)
        jitter = np.random.default_rng(0).normal(0.0, 0.002 if not pinned else 0.001, (2, 101))  # m
        judged = []
        for tick in range(101):  # odometry at 100 Hz, stamped lag_ms after it was measured
            now_ns = tick * 10_000_000
            moving_s = max(0.0, (now_ns - lag_ms * 1_000_000) / 1e9 - 0.5)  # 0.5 m/s commanded from 0.5 s
            monitor.odometry(now_ns, (0.0 if pinned else 0.5 * moving_s) + jitter[0, tick], jitter[1, tick], 0.0)
            if tick % 10 == 0:  # a step: judge, then command
                judged.append(monitor.forbidden_steps(now_ns).forward > 0)
                monitor.command(now_ns, 0.5 if tick >= 50 else 0.0)
        assert any(judged) == pinned, (pinned, judged)
        if pinned:
            assert judged.index(True) <= 8, "pressed against something from rest: caught after its second step"


def test_without_odometry_or_with_escape_steps_0_nothing_is_forbidden():
    silent = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)
    for step in range(5):
        silent.command(step * DT_NS, 0.5)
    assert silent.forbidden_steps(5 * DT_NS) == (0, 0)  # unknown is never guessed blocked
    idle = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)  # odometry, but no command sent yet
    for step in range(5):
        idle.odometry(step * DT_NS, 0.0, 0.0)
    assert idle.forbidden_steps(5 * DT_NS) == (0, 0)
    off = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=0)
    now, _ = drive(off, [0.5] * 3, [0.0] * 3)
    assert off.forbidden_steps(now * DT_NS) == (0, 0)
    stale = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=3)  # the odometry stopped 1 s ago
    drive(stale, [0.5] * 3, [0.0] * 3)
    assert stale.forbidden_steps(13 * DT_NS) == (0, 0)


def test_a_clock_jump_back_or_a_bad_position_forgets_or_drops_and_memory_stays_bounded():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=4)
    now, x = drive(monitor, [0.5] * 1000, [0.05] * 1000)
    assert len(monitor._odometry) < 20 and len(monitor._commands) < 20
    now, x = drive(monitor, [0.5], [0.0], now, x)
    assert monitor.forbidden_steps(now * DT_NS) == (4, 0)
    assert not monitor.odometry(now * DT_NS + 1, float("nan"), 0.0)  # dropped: the blocked step still counts
    assert monitor.forbidden_steps(now * DT_NS) == (4, 0)
    # The simulation restarted: time 0 again. The old blocked step is forgotten, and the new
    # steps are judged on their own (a refused one counts again).
    later, _ = drive(monitor, [0.5, 0.5], [0.05, 0.05], 0, 0.0)
    assert monitor.forbidden_steps(later * DT_NS) == (0, 0) and len(monitor._commands) == 2
    later, _ = drive(monitor, [0.5], [0.0], later, 0.1)
    assert monitor.forbidden_steps(later * DT_NS) == (4, 0)
    monitor.reset()
    assert monitor.forbidden_steps(later * DT_NS) == (0, 0)
    for _ in range(3000):  # a clock that stands still (sim time before the first /clock): all at 0
        monitor.command(0, 0.5)
        monitor.odometry(0, 0.0, 0.0)
    assert len(monitor._odometry) <= MAX_HISTORY and len(monitor._commands) <= MAX_HISTORY


def test_the_mpc_does_not_push_on_whatever_the_predicted_risk():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)
    now, _ = drive(monitor, [0.5] * 4, [0.05, 0.05, 0.0, 0.0])  # the last two steps refused: 6 steps left

    def unaware(actions):  # a risk head that sees nothing wrong, and forward is progress
        return np.zeros(actions.shape[:2], np.float32), None

    pushing = CemPlanner(MpcConfig(candidates=16, horizon=8), LIMITS, seed=0).decide(unaware)
    assert pushing.plan[:6, 0].max() > 0.3, "without the bound the MPC drives on"
    bounds = monitor.forbidden_steps(now * DT_NS).bounds(LIMITS.low, LIMITS.high, 8)
    planner = CemPlanner(MpcConfig(candidates=16, horizon=8), LIMITS, seed=0)
    plan = planner.decide(unaware, bounds=bounds).plan
    assert (plan[:6, 0] <= 0).all(), "no forward while the bound holds"
    assert (planner.propose(bounds)[:, :6, 0] <= 0).all(), "every candidate, the warm start included"


@pytest.mark.parametrize("dt, steps", [(0.0, 4), (-0.1, 4), (0.1, -1)])
def test_bad_settings_are_refused(dt, steps):
    with pytest.raises(ValueError):
        ContactMonitor(BlockedRule(), dt=dt, escape_steps=steps)


def test_commands_sent_between_decisions_hold_the_ban_too():
    assert np.array_equal(Forbidden(forward=2).filter([0.5, 1.0]), [0.0, 1.0])
    assert np.allclose(Forbidden(reverse=1).filter([-0.2, 0.3]), [0.0, 0.3])
    assert np.array_equal(Forbidden(forward=3).filter([-0.2, 0.3]), np.float32([-0.2, 0.3]))
    # A robot pinned against a wall ahead (forward makes no progress, reverse does), a risk head
    # that sees nothing, a decision every 4 steps: no command is sent forward while it is forbidden.
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)
    planner = CemPlanner(MpcConfig(), LIMITS, seed=0)
    x, pushes, forbidden_pushes, plan, age = 0.0, 0, 0, None, 0
    monitor.odometry(0, x, 0.0)
    for step in range(60):
        now = step * DT_NS
        if plan is None or step % 4 == 0:
            bounds = monitor.forbidden_steps(now).bounds(LIMITS.low, LIMITS.high, 8)
            plan = planner.decide(lambda a: (np.zeros(a.shape[:2], np.float32), None),
                                  elapsed_steps=0 if plan is None else age, bounds=bounds).plan
            age = 0
        forbidden = monitor.forbidden_steps(now)
        linear = float(forbidden.filter(plan[min(age, 7)])[0])
        pushes += linear > 0.05
        forbidden_pushes += linear > 0.05 and forbidden.forward > 0
        monitor.command(now, linear)
        x += min(linear, 0.0) * 0.1
        monitor.odometry(now + DT_NS, x, 0.0)
        age += 1
    assert pushes >= 3, "the MPC wants forward: it pushes whenever the ban has run out (else this proves nothing)"
    assert forbidden_pushes == 0


def test_a_spot_where_the_robot_was_blocked_stays_forbidden_while_it_faces_it():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=4)
    monitor.odometry(-DT_NS, -0.05, 0.0, 0.0)  # driving at 0.5 m/s
    monitor.odometry(0, 0.0, 0.0, 0.0)
    monitor.command(0, 0.5)
    monitor.odometry(DT_NS, 0.0, 0.0, 0.0)  # refused: a spot at (0, 0), pushed along 0 rad
    assert monitor.forbidden_steps(DT_NS) == (4, 0)
    step = 1

    def hold(x: float, yaw: float, command: float = 0.0) -> Forbidden:
        nonlocal step
        monitor.command(step * DT_NS, command)
        step += 1
        monitor.odometry(step * DT_NS, x, 0.0, yaw)
        return monitor.forbidden_steps(step * DT_NS)

    for yaw in (0.2, 0.4, 0.6, 0.8, 0.9, 0.9):  # turning a little on the spot: the 4-step ban wears off, not this
        assert hold(0.0, yaw) == (4, 0)
    assert hold(0.0, CONE_RAD + 0.1) == (0, 0)  # turned away: forward is free; reverse never was forbidden
    assert hold(0.0, -0.3) == (4, 0)  # facing it again
    assert hold(-0.1, 0.0, command=-0.2) == (4, 0)  # backed off 10 cm: still near it
    assert hold(-0.2, 0.0, command=-0.2) == (0, 0) and not monitor.contacts  # away: forgotten
    blind = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=4)  # odometry without a heading keeps no spot
    drive(blind, [0.5] * 2, [0.0] * 2)
    assert blind.forbidden_steps(2 * DT_NS) == (4, 0) and not blind.contacts


def test_a_spot_blocked_in_reverse_forbids_backing_that_way():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=2)
    monitor.odometry(-DT_NS, 1.0 + 0.02 * np.cos(1.0), 1.0 + 0.02 * np.sin(1.0), 1.0)  # backing at 0.2 m/s
    monitor.odometry(0, 1.0, 1.0, 1.0)
    monitor.command(0, -0.2)
    monitor.odometry(DT_NS, 1.0, 1.0, 1.0)  # backing along 1 + pi rad: refused
    for step in range(1, 5):  # wiggling on the spot, judged every step as the planner does
        monitor.forbidden_steps(step * DT_NS)
        monitor.command(step * DT_NS, 0.0)
        monitor.odometry((step + 1) * DT_NS, 1.0, 1.0, 1.0 + 0.1 * (-1) ** step)
    assert monitor.forbidden_steps(5 * DT_NS) == (0, 2)
    assert monitor.contacts[0].heading == pytest.approx(1.0 + np.pi)


def test_facing_a_spot_forbids_forward_for_the_steps_a_turn_away_takes():
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8, max_turn=1.5)
    monitor.odometry(-DT_NS, -0.05, 0.0, 0.0)  # driving at 0.5 m/s
    monitor.odometry(0, 0.0, 0.0, 0.0)
    monitor.command(0, 0.5)
    monitor.odometry(DT_NS, 0.0, 0.0, 0.0)  # refused, pushing along 0 rad
    monitor.forbidden_steps(DT_NS)
    for step, yaw in enumerate((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5), start=1):  # the 8-step ban wears off
        monitor.command(step * DT_NS, 0.0)
        monitor.odometry((step + 1) * DT_NS, 0.0, 0.0, yaw)
    # 0.5 rad off the way it pushed: pi/3 - 0.5 = 0.55 rad to go at 0.15 rad a step, 4 steps
    assert monitor.forbidden_steps(10 * DT_NS) == (4, 0)
    with pytest.raises(ValueError, match="max_turn"):
        ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8, max_turn=0.0)


def test_a_pose_without_heading_beside_a_spot_is_judged_by_the_timed_ban_and_keeps_the_spot():
    """An odometry message with no orientation (a zero quaternion: yaw NaN) right where the robot
    was blocked: no crash, the timed ban alone, and the spot still forbids once a heading returns."""
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=4, max_turn=1.5)
    monitor.odometry(-DT_NS, -0.05, 0.0, 0.0)  # driving at 0.5 m/s
    monitor.odometry(0, 0.0, 0.0, 0.0)
    monitor.command(0, 0.5)
    monitor.odometry(DT_NS, 0.0, 0.0, 0.0)  # refused: a spot at (0, 0), pushed along 0 rad
    assert monitor.forbidden_steps(DT_NS) == (4, 0) and len(monitor.contacts) == 1
    for step in range(1, 7):  # standing still, heading unknown: the ban wears off
        monitor.command(step * DT_NS, 0.0)
        monitor.odometry((step + 1) * DT_NS, 0.0, 0.0, float("nan"))
    assert monitor.forbidden_steps(7 * DT_NS) == (0, 0) and len(monitor.contacts) == 1
    monitor.odometry(8 * DT_NS, 0.0, 0.0, 0.1)  # a heading again, still facing the spot
    assert monitor.forbidden_steps(8 * DT_NS)[0] > 0


def ramp(accel: float, steps: int, command: float = 0.6) -> list[float]:
    """m covered in each step by a base starting from rest that accelerates at `accel` to `command`."""
    speeds = np.minimum(command, accel * 0.1 * np.arange(steps + 1))
    return list((speeds[:-1] + speeds[1:]) / 2 * 0.1)


@pytest.mark.parametrize("accel", [0.3, 0.5])
def test_a_base_that_accelerates_slowly_is_not_blocked_when_the_rule_knows_its_limit(accel):
    """From rest at 0.3 m/s^2 the first step covers 0.15 cm of the 6 cm commanded, under the rule's
    10%: without max_accel that is a block (a ban and a spot at the start in open floor)."""
    progress = ramp(accel, 12)
    naive = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=8)
    now, _ = drive(naive, [0.6] * 2, ramp(0.3, 2))
    assert naive.forbidden_steps(now * DT_NS)[0] > 0, "without the limit the start reads as contact"
    knowing = ContactMonitor(BlockedRule(max_accel=accel), dt=0.1, escape_steps=8)
    now, x = drive(knowing, [0.6] * 2, progress[:2])
    assert knowing.forbidden_steps(now * DT_NS) == (0, 0)
    now, x = drive(knowing, [0.6] * 10, progress[2:], now, x)
    assert knowing.forbidden_steps(now * DT_NS) == (0, 0)
    now, _ = drive(knowing, [0.6], [0.0], now, x)  # then it hits something
    assert knowing.forbidden_steps(now * DT_NS) == (8, 0)
    pinned = ContactMonitor(BlockedRule(max_accel=accel), dt=0.1, escape_steps=8)  # pressed against it from rest
    now, _ = drive(pinned, [0.6] * 2, [0.0] * 2)
    assert pinned.forbidden_steps(now * DT_NS) == (8, 0)


def test_odometry_stamped_when_measured_may_lag_the_commands():
    """Odometry 150 ms late, stamped with the time it was measured: its stamps fall behind the
    commands sent since, which is no clock jump; a moving robot is not blocked, a refused move is."""
    monitor = ContactMonitor(BlockedRule(), dt=0.1, escape_steps=4)
    lag, x = 150_000_000, 0.0
    for step in range(12):
        monitor.command(step * DT_NS, 0.5)
        if step >= 2:  # the odometry of 2 steps ago arrives now
            x += 0.05 if step < 10 else 0.0  # refused from step 8 on (measured at step - 2)
            monitor.odometry(step * DT_NS - lag, x, 0.0)
        if step == 9:
            assert monitor.forbidden_steps(step * DT_NS - lag) == (0, 0), "moving as commanded"
    assert monitor.forbidden_steps(11 * DT_NS - lag)[0] > 0
    assert len(monitor._commands) == 12, "nothing was reset"


def test_a_reversal_over_two_steps_is_no_contact_but_a_push_after_it_is():
    """Backing at 0.2 m/s, then forward: at 1 m/s^2 the robot takes two steps to pass through rest
    (the sim moves 0 in the second), with a small command between (a trace of a goal run: a spot
    kept there forbade the way to the goal for the rest of the episode)."""
    monitor = ContactMonitor(BlockedRule(max_accel=1.0), dt=0.1, escape_steps=8, max_turn=1.5)
    step, x = 0, 0.0

    def send(command: float, moved: float) -> Forbidden:
        nonlocal step, x
        monitor.command(step * DT_NS, command)
        step, x = step + 1, x + moved
        monitor.odometry(step * DT_NS, x, 0.0, 0.0)
        return monitor.forbidden_steps(step * DT_NS)

    monitor.odometry(0, 0.0, 0.0, 0.0)
    for _ in range(4):
        assert send(-0.2, -0.02) == (0, 0)
    assert send(0.044, -0.01) == (0, 0)  # braking: -0.2 -> -0.1 m/s
    assert send(0.444, 0.0) == (0, 0) and not monitor.contacts  # -0.1 -> 0 m/s: still moving back at its start
    assert send(0.444, 0.01) == (0, 0)
    assert send(0.444, 0.0) == (8, 0) and len(monitor.contacts) == 1  # moving ahead, then stopped: a push
