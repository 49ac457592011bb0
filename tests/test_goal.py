"""The goal term of the MPC: progress towards a goal in m/s, turning to face it before backing
up to it blind, and the planner choosing the candidate that heads for it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sora_ros.core.goal import Goal, goal_progress
from sora_ros.core.mpc import CemPlanner, MpcConfig, VelocityLimits, candidate_costs

LIMITS = VelocityLimits(0.6, 0.2, 1.5)
DT = 0.1


def steady(v: float, w: float, steps: int = 8) -> np.ndarray:
    return np.tile(np.float32([v, w]), (steps, 1))


def progress(goal: tuple[float, float], *candidates: np.ndarray) -> np.ndarray:
    """(N,) mean m/s of each candidate towards `goal` (robot frame)."""
    return goal_progress(np.stack(candidates), np.array(goal), DT, LIMITS.max_forward, LIMITS.max_turn).mean(axis=1)


def test_driving_at_a_goal_ahead_closes_on_it_at_the_commanded_speed():
    ahead, away, still = progress((3.0, 0.0), steady(0.6, 0.0), steady(-0.2, 0.0), steady(0.0, 0.0))
    assert ahead == pytest.approx(0.6, abs=1e-4) and away == pytest.approx(-0.2, abs=1e-4) and still == 0.0


def test_a_goal_behind_is_reached_by_turning_not_by_backing_up_blind():
    turn_left, turn_right, back_up, turn_backing, forward = progress(
        (-2.0, 0.0), steady(0.0, 1.5), steady(0.0, -1.5), steady(-0.2, 0.0), steady(-0.2, 1.5), steady(0.6, 0.0))
    # Turning at max_turn saves as much time as driving at max_forward would; backing up earns nothing.
    assert turn_left == pytest.approx(0.6, abs=1e-3) and turn_right == pytest.approx(0.6, abs=1e-3)
    assert turn_left > turn_backing and 0 > back_up > forward


def test_the_goal_in_the_robots_frame_and_its_tolerance():
    goal = Goal(1.0, 2.0, tolerance=0.5)
    np.testing.assert_allclose(goal.in_robot_frame(1.0, 0.0, math.pi / 2), [2.0, 0.0], atol=1e-9)  # straight ahead
    np.testing.assert_allclose(goal.in_robot_frame(0.0, 2.0, math.pi), [-1.0, 0.0], atol=1e-9)  # behind
    assert goal.reached(1.3, 2.3) and not goal.reached(1.4, 2.4)
    for bad in ((math.nan, 0.0, 0.3), (0.0, math.inf, 0.3), (1e308, 1e308, 0.3), (0.0, 0.0, 0.0)):
        with pytest.raises(ValueError, match="m of the odometry origin and a tolerance > 0"):
            Goal(*bad)


def test_the_planner_heads_for_the_goal_where_forward_speed_would_not():
    """Two candidates with the same (zero) risk: straight ahead and a left turn. Exploring, the
    straight one wins (faster forward); with a goal to the left, the turn."""
    actions = np.stack([steady(0.6, 0.0), steady(0.5, 1.2)])
    hazard = np.zeros((2, 8), np.float32)
    config, current = MpcConfig(candidates=2, elites=1), np.zeros(2, np.float32)
    goal = Goal(0.0, 1.5)
    towards = goal.progress_from(0.0, 0.0, 0.0, DT, LIMITS.max_forward, LIMITS.max_turn)
    assert np.argmin(candidate_costs(actions, hazard, current, config, LIMITS)) == 0
    assert np.argmin(candidate_costs(actions, hazard, current, config, LIMITS, towards(actions))) == 1
    planner = CemPlanner(config, LIMITS, seed=0)
    assert planner.update(actions, hazard, progress=towards).index == 1


def test_progress_of_the_wrong_shape_or_nan_is_refused():
    from sora_ros.core.mpc import PlannerInputError

    actions, hazard = np.stack([steady(0.6, 0.0)] * 2), np.zeros((2, 8), np.float32)
    for bad in (np.zeros((2, 7)), np.full((2, 8), np.nan)):
        with pytest.raises(PlannerInputError, match="progress must be finite"):
            candidate_costs(actions, hazard, np.zeros(2, np.float32), MpcConfig(), LIMITS, bad)


def test_a_robot_that_stops_getting_nearer_explores_a_while_then_heads_for_the_goal_again():
    """Nav2's progress checker in small: 5 s without coming 0.2 m nearer, then 3 s of exploring."""
    from sora_ros.core.goal import GoalPursuit

    pursuit = GoalPursuit(Goal(5.0, 0.0))

    def scoring(t_s: float, x: float):
        return pursuit.scoring(round(t_s * 1e9), x, 0.0, 0.0, DT, LIMITS.max_forward, LIMITS.max_turn)

    for t in np.arange(0.0, 5.0, 0.5):  # nearing 0.3 m a second: always heading for it
        assert scoring(t, 0.3 * t) is not None
    # Then held in front of something at 1.35 m: it last came 0.2 m nearer at 4 s.
    assert all(scoring(t, 1.35) is not None for t in (5.0, 6.0, 9.0))  # not yet 5 s: still trying
    assert scoring(9.6, 1.35) is None and pursuit.exploring_until_ns == round(12.6e9)  # 5.6 s: explore for 3 s
    assert scoring(12.0, 1.0) is None  # exploring, whatever the distance
    heading = scoring(12.6, 1.0)
    assert heading is not None and heading(np.stack([steady(0.6, 0.0)])).mean() > 0.5  # the goal again
    assert scoring(17.0, 1.0) is not None and scoring(17.7, 1.0) is None  # a fresh window from the end of exploring


def test_the_approach_speed_stops_the_base_within_the_distance_left():
    from sora_ros.core.goal import approach_speed

    assert approach_speed(0.15, 0.3) == pytest.approx(0.3) and approach_speed(-0.1, 1.0) == 0.0


def test_the_poses_a_plan_drives_through_are_the_sims_own_integration():
    """~/plan/path and the goal term integrate commands as the sim drives them (sim/drive.integrate)."""
    from sora_ros.core.goal import unicycle_poses
    from sora_ros.sim.drive import Pose2D, integrate

    plan = np.random.default_rng(0).uniform(-1.0, 1.0, (8, 2))
    poses = [Pose2D()]
    for v, w in plan:
        poses.append(integrate(poses[-1], float(v), float(w), DT))
    expected = np.array([(p.x, p.y, p.yaw) for p in poses])
    got = unicycle_poses(plan[None], DT)[0]
    np.testing.assert_allclose(got[:, :2], expected[:, :2], atol=1e-12)
    np.testing.assert_allclose(np.cos(got[:, 2] - expected[:, 2]), 1.0, atol=1e-12)  # the same heading, mod 2 pi
