"""The sampling MPC (sora_ros/core/mpc.py): it picks the lower-cost future, stays within the
velocity limits, stops on a stale plan, is deterministic for a seed and refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest

from sora_ros.core.mpc import MAX_WEIGHT, CemPlanner, MpcConfig, PlannerInputError, VelocityLimits, candidate_costs, command_at
from sora_ros.core.requests import MAX_CANDIDATES

LIMITS = VelocityLimits(max_forward=0.6, max_reverse=0.2, max_turn=1.5)


def left_is_dangerous(actions: np.ndarray):
    """A crafted forecast: turning left (angular_z > 0) predicts certain collision, else none."""
    return (actions[..., 1] > 0).astype(np.float32), [f"candidate {i}" for i in range(len(actions))]


def test_update_picks_the_candidate_whose_future_costs_less():
    planner = CemPlanner(MpcConfig(candidates=3, horizon=4, elites=1), LIMITS, seed=0)
    actions = np.zeros((3, 4, 2), np.float32)
    actions[:, :, 0] = 0.5  # all equally fast and smooth (after step 0)
    hazard = np.array([[0.9] * 4, [0.1] * 4, [0.5] * 4], np.float32)  # (N, H)
    decision = planner.update(actions, hazard, ["a", "b", "c"])
    assert decision.index == 1 and decision.forecast == "b"
    assert decision.costs.argmin() == 1 and np.allclose(decision.hazard, 0.1)
    # Hand-computed: risk 8 x 0.1 - progress 0.5 / 0.6 + smoothness 0.1 x (0.5 / 0.8)^2 / 4 (the first step from rest).
    assert MpcConfig().risk_weight == 8.0
    assert decision.costs[1] == pytest.approx(8 * 0.1 - 0.5 / 0.6 + 0.1 * (0.5 / 0.8) ** 2 / 4, abs=1e-6)
    # With equal hazard, the faster candidate wins (progress), and a jerky one loses (smoothness).
    fast, slow, jerky = (np.full((4, 2), (v, 0.0), np.float32) for v in (0.5, 0.2, 0.5))
    jerky[1::2, 1] = 1.5
    costs = candidate_costs(np.stack([fast, slow, jerky]), np.zeros((3, 4)), np.zeros(2, np.float32),
                            MpcConfig(), LIMITS)
    assert costs[0] < costs[1] and costs[0] < costs[2]


def test_decide_avoids_the_dangerous_side_and_stays_within_the_limits():
    config = MpcConfig(candidates=32, horizon=6, iterations=3, initial_std=(5.0, 5.0))  # wide: samples clip
    planner = CemPlanner(config, LIMITS, seed=3)
    for step in range(5):
        proposals = planner.propose()
        assert proposals.shape == (32, 6, 2)
        assert (proposals >= LIMITS.low).all() and (proposals <= LIMITS.high).all()
        decision = planner.decide(left_is_dangerous, elapsed_steps=1 if step else 0)
        assert (decision.plan[:, 1] <= 0).all(), "a left turn was predicted to collide"
        assert (decision.plan >= LIMITS.low).all() and (decision.plan <= LIMITS.high).all()
    assert decision.plan[:, 0].mean() > 0.3, "no hazard straight ahead: it should drive on"
    narrow = LIMITS.within(np.array([-0.1, -1.0]), np.array([0.4, 1.0]))
    assert (narrow.max_forward, narrow.max_reverse, narrow.max_turn) == (0.4, 0.1, 1.0)


def test_same_seed_same_decisions_and_the_warm_start_shifts():
    def run(seed):
        planner = CemPlanner(MpcConfig(candidates=8, horizon=4), LIMITS, seed=seed)
        return [planner.decide(left_is_dangerous, elapsed_steps=1).plan for _ in range(3)]

    assert all(np.array_equal(a, b) for a, b in zip(run(7), run(7)))
    assert not all(np.array_equal(a, b) for a, b in zip(run(7), run(8)))
    planner = CemPlanner(MpcConfig(candidates=4, horizon=4), LIMITS, seed=0)
    plan = planner.decide(left_is_dangerous).plan
    planner.shift(2)
    warm = planner.propose()[0]  # candidate 0: the plan being followed, two steps on
    assert np.array_equal(warm[:2], plan[2:]) and np.array_equal(warm[2:], np.repeat(plan[-1:], 2, axis=0))


def test_a_stale_plan_stops_the_robot():
    plan = np.array([[0.5, 0.1], [0.4, 0.2], [0.3, 0.3]], np.float32)
    assert command_at(plan, 0.0, dt=0.1, stale_s=1.0).tolist() == pytest.approx([0.5, 0.1])
    assert command_at(plan, 0.15, dt=0.1, stale_s=1.0).tolist() == pytest.approx([0.4, 0.2])
    assert command_at(plan, 0.9, dt=0.1, stale_s=1.0).tolist() == pytest.approx([0.3, 0.3]), "last step held"
    for age in (1.01, 5.0, float("nan"), -0.1):
        assert not command_at(plan, age, dt=0.1, stale_s=1.0).any(), f"age {age}: must stop"
    assert not command_at(None, 0.0, dt=0.1, stale_s=1.0).any(), "no plan yet: stand still"


def test_bad_input_is_refused_with_a_reason():
    planner = CemPlanner(MpcConfig(candidates=4, horizon=3), LIMITS, seed=0)
    actions = planner.propose()
    with pytest.raises(PlannerInputError, match="must be finite"):
        planner.update(actions, np.full((4, 3), np.nan))
    nan_actions = actions.copy()
    nan_actions[1, 0, 0] = np.nan
    with pytest.raises(PlannerInputError, match="must be finite"):
        planner.update(nan_actions, np.zeros((4, 3)))
    with pytest.raises(PlannerInputError, match=r"N >= 1"):
        planner.update(np.zeros((0, 3, 2), np.float32), np.zeros((0, 3)))
    with pytest.raises(PlannerInputError, match=r"one value per candidate and step \(4, 3\)"):
        planner.update(actions, np.zeros((4, 2)))
    with pytest.raises(PlannerInputError, match=f"candidates must be 2..{MAX_CANDIDATES}"):
        MpcConfig(candidates=MAX_CANDIDATES + 1)
    with pytest.raises(PlannerInputError, match="candidates must be"):
        MpcConfig(candidates=1)
    with pytest.raises(PlannerInputError, match="velocity limits"):
        VelocityLimits(float("nan"), 0.2, 1.5)
    with pytest.raises(PlannerInputError, match="horizon must be"):
        MpcConfig(horizon=0)
    for weight in (MAX_WEIGHT * 1.01, 1e39):  # float32 costs: a weight near 3.4e38 would make them Inf/NaN
        with pytest.raises(PlannerInputError, match=f"weights at most {MAX_WEIGHT:g}"):
            MpcConfig(risk_weight=weight)
