"""`sora-ros bench closed-loop` on a tiny model: an episode replays exactly for a fixed seed and
policy, the copy-last engine predicts "nothing changes", and the report is written."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("pybullet")
from model_helpers import export_tiny, export_tiny_with_risk  # noqa: E402

from sora_ros.bench import closed_loop  # noqa: E402
from sora_ros.core.mpc import MpcConfig  # noqa: E402
from sora_ros.runtime.engine import WorldModelEngine  # noqa: E402
from sora_ros.runtime.pipeline import WorldModelPipeline  # noqa: E402

CONFIG = closed_loop.ClosedLoopConfig(episodes=1, seconds=1.2, decision_every=2, width=32, height=32,
                                      mpc=MpcConfig(candidates=4, horizon=2))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return WorldModelEngine(export_tiny(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def risk_engine(tmp_path_factory):
    return WorldModelEngine(export_tiny_with_risk(tmp_path_factory.mktemp("risk_model")))


@pytest.mark.parametrize("policy, head", [("model", False), ("model", True), ("shuffled", True), ("copy_last", True),
                                          ("wander", False)])
def test_an_episode_replays_exactly_for_a_seed_and_policy(engine, risk_engine, policy, head):
    model = risk_engine if head else engine
    assert closed_loop.has_risk_head(model) == head
    if policy == "copy_last":
        model = closed_loop.CopyLastEngine(model)

    def run(seed):
        pipeline = None if policy == "wander" else WorldModelPipeline(model)
        return closed_loop.run_episode(pipeline, policy, seed, CONFIG)

    first, again, other = run(5), run(5), run(6)
    assert first.poses.shape == (13, 3) and first.decisions > 0
    assert np.array_equal(first.poses, again.poses) and first.collisions == again.collisions
    assert not np.array_equal(first.poses, other.poses), "another seed is another world"
    assert np.abs(np.diff(first.poses[:, :2], axis=0)).sum() > 0, "the robot never moved"


def test_copy_last_predicts_the_last_latent_and_the_report_is_written(engine, tmp_path):
    copy = closed_loop.CopyLastEngine(engine)
    context = np.random.default_rng(0).standard_normal((3, engine.info.context_frames, *engine.info.latent_shape))
    result = copy.rollout(context.astype(np.float32), np.zeros((3, 4, 2), np.float32), horizon=4, samples=2)
    assert result.latents.shape == (3, 2, 4, *engine.info.latent_shape)
    assert np.array_equal(result.latents[1, 1, 3], context[1, -1].astype(np.float32))
    assert copy.info is engine.info, "everything else is the model's"
    args = argparse.Namespace(policies="model,copy_last,shuffled,wander", candidates=4, horizon=2, iterations=1, episodes=2,
                              seconds=0.6, first_seed=closed_loop.FIRST_SEED, decision_every=2, escape_steps=8,
                              risk_weight=6.0, model=str(engine.info.path), out=str(tmp_path / "out"),
                              dynamics_precision="float32", thread_pool="per-session", goals=True)
    assert closed_loop.run(args, CONFIG) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["policies"]) == set(closed_loop.POLICIES)
    rate = metrics["policies"]["model"]["collisions_per_min"]
    assert rate["n"] == 2 and rate["low"] <= rate["mean"] <= rate["high"]
    assert len(metrics["target"]) == 3 and metrics["machine"]
    assert set(metrics["paired"]) == {"copy_last", "shuffled", "wander"}
    assert metrics["policies"]["model"]["goals_per_min"]["n"] == 2, "the MPC policies had goals"
    assert metrics["policies"]["wander"]["goals_per_min"]["mean"] is None, "wander has none: NaN, written null"
    assert metrics["paired"]["copy_last"]["difference"]["n"] == 2
    assert metrics["config"]["mpc"]["risk_weight"] == 6.0, "--risk-weight reaches the MPC and its record"
    assert metrics["thread_pool"] == "per-session"
    lines = (tmp_path / "out" / closed_loop.EPISODES_FILE).read_text().splitlines()
    assert len(lines) == 2 * len(closed_loop.POLICIES), "one line per finished episode"
    assert (tmp_path / "out" / "closed_loop.png").stat().st_size > 0
    assert (tmp_path / "out" / "trajectories.png").stat().st_size > 0


def test_an_episode_too_short_for_a_decision_is_reported_not_a_crash(engine, tmp_path, capsys):
    args = argparse.Namespace(policies="copy_last", candidates=4, horizon=2, iterations=1, episodes=1, seconds=0.1,
                              first_seed=closed_loop.FIRST_SEED, decision_every=2, escape_steps=8, risk_weight=4.0,
                              goals=False, model=str(engine.info.path), out=str(tmp_path / "out"), dynamics_precision="float32",
                              thread_pool="per-session")
    assert closed_loop.run(args, CONFIG) == 0  # 1 frame, fewer than the context: no decision, no latency
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("copy_last"))
    assert row.split()[-1] == "-"
    strict = json.loads((tmp_path / "out" / "metrics.json").read_text(),
                                      parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert strict["policies"]["copy_last"]["collisions_per_min"]["low"] is None, "one episode: no interval"


def test_bootstrap_interval_and_unknown_policies(capsys):
    summary = closed_loop.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5 and 1.0 <= summary["low"] < 2.5 < summary["high"] <= 4.0
    assert np.isnan(closed_loop.mean_ci95([1.0])["low"]) and closed_loop.mean_ci95([])["n"] == 0
    args = argparse.Namespace(policies="model,teleport")
    assert closed_loop.run(args) == 2
    assert "unknown policies ['teleport']" in capsys.readouterr().err
    args = argparse.Namespace(policies="model,copy_last,model")
    assert closed_loop.run(args) == 2
    assert "a policy named twice" in capsys.readouterr().err, "its seeds would count twice in the intervals"
    args = argparse.Namespace(policies="model", candidates=65, horizon=8, iterations=1, escape_steps=8, risk_weight=4.0)
    assert closed_loop.run(args) == 2
    assert "candidates must be 2..64" in capsys.readouterr().err, "above the ~/rollout cap: refused, with the cap"


def test_paired_comparison_counts_seeds_and_tests_the_signs():
    def episode(seed: int, policy: str, collisions: int) -> closed_loop.Episode:
        poses = np.zeros((601, 3))  # 60 s at 10 Hz: collisions/min = collisions
        refused = dict.fromkeys(closed_loop.DIRECTIONS, 0)
        return closed_loop.Episode(seed, policy, collisions, 60.0, poses, [], 0, refused)

    model = [3, 0, 5, 2, 7, 1, 4, 0, 6, 2, 9]
    baseline = [5, 1, 8, 4, 9, 3, 4, 2, 8, 5, 1]  # the model collides less on 9 seeds, as often on 1, more on 1
    episodes = [episode(seed, p, n) for seed, (a, b) in enumerate(zip(model, baseline))
                for p, n in (("model", a), ("copy_last", b))]
    episodes.append(episode(99, "wander", 0))  # a seed the model did not run: not compared
    comparisons = closed_loop.paired(episodes)
    copy = comparisons["copy_last"]
    assert (copy["fewer"], copy["more"], copy["equal"]) == (9, 1, 1)
    assert copy["difference"]["n"] == 11 and copy["difference"]["mean"] == pytest.approx(
        np.mean(np.subtract(model, baseline)))
    assert copy["sign_test_p"] == pytest.approx(22 / 1024), "two-sided: 2 * P(X <= 1), X ~ Binomial(10, 1/2)"
    assert "wander" not in comparisons, "no seed in common"
    assert closed_loop.sign_test_p(3, 3) == 1.0 and closed_loop.sign_test_p(0, 0) == 1.0
    assert closed_loop.sign_test_p(20, 0) == pytest.approx(2 / 2**20)
    assert closed_loop.paired(episodes, "shuffled") == {}, "a policy that did not run compares with nothing"


def test_the_target_is_judged_against_the_baselines_that_ran():
    def stats(rate: float, distance: float) -> dict:
        return {"collisions_per_min": {"mean": rate}, "distance_m": {"mean": distance}}

    two = closed_loop.verdict({"model": stats(3.0, 10.0), "copy_last": stats(12.0, 9.0)})
    assert two == ["met: collisions/min model 3.00 <= 4.00 (1/3 of copy_last's 12.00)",
                   "met: distance model 10.00 m >= copy_last 9.00 m"]
    three = closed_loop.verdict({"model": stats(5.0, 10.0), "copy_last": stats(12.0, 9.0),
                                 "shuffled": stats(4.0, 11.0)})
    assert [line.split(":")[0] for line in three] == ["MISSED", "MISSED", "MISSED"]
    assert closed_loop.verdict({"model": stats(1.0, 1.0), "wander": stats(2.0, 2.0)})[0].startswith("target not judged")
    none = closed_loop.verdict({"model": stats(0.0, 10.0), "copy_last": stats(0.0, 9.0)})
    assert none == ["not judged: collisions/min against copy_last, which had none (run longer or more episodes)",
                    "met: distance model 10.00 m >= copy_last 9.00 m"]


def test_a_shuffled_baseline_without_collisions_is_not_judged_and_a_short_miss_shows():
    def stats(rate: float, distance: float) -> dict:
        return {"collisions_per_min": {"mean": rate}, "distance_m": {"mean": distance}}

    lines = closed_loop.verdict({"model": stats(0.0, 0.22), "copy_last": stats(3.0, 0.24), "shuffled": stats(0.0, 0.2)})
    assert lines == ["not judged: collisions/min against shuffled, which had none (run longer or more episodes)",
                     "met: collisions/min model 0.00 <= 1.00 (1/3 of copy_last's 3.00)",
                     "MISSED: distance model 0.22 m >= copy_last 0.24 m and shuffled 0.20 m"], "not 0.2 m >= 0.2 m"


def _closed_loop_args(model, out, **options) -> argparse.Namespace:
    """bench closed-loop's parsed arguments: one short copy_last episode unless `options` say otherwise."""
    return argparse.Namespace(**{"policies": "copy_last", "candidates": 4, "horizon": 2, "iterations": 1, "episodes": 1,
                                 "seconds": 0.1, "first_seed": closed_loop.FIRST_SEED, "decision_every": 2,
                                 "escape_steps": 8, "risk_weight": 4.0, "goals": False, "model": str(model),
                                 "out": str(out), "dynamics_precision": "float32", "thread_pool": "per-session",
                                 **options})


def test_a_model_whose_dt_is_not_the_frame_period_is_refused_before_any_episode(engine, tmp_path, capsys):
    model = shutil.copytree(engine.info.path, tmp_path / "model_dt02")
    meta = json.loads((model / "model.json").read_text())
    meta["dt"] = meta["config"]["dt"] = 0.2  # both places, as the model loader checks
    (model / "model.json").write_text(json.dumps(meta))
    assert closed_loop.run(_closed_loop_args(model, tmp_path / "out"), CONFIG) == 2
    out, err = capsys.readouterr()
    assert err == (f"sora-ros bench closed-loop: --model {model}: the model's dt (0.2 s) must equal the sim's frame "
                   "period (0.1 s)\n")
    assert out == "" and not (tmp_path / "out").exists(), "refused before the header and the output folder"


def test_two_candidates_plan_with_elites_cut_to_them(engine, tmp_path):
    assert closed_loop.run(_closed_loop_args(engine.info.path, tmp_path / "out", candidates=2), CONFIG) == 0
    mpc = json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]["mpc"]
    assert (mpc["candidates"], mpc["elites"]) == (2, 2), "as the planner node clamps elites to candidates"


def test_command_line_options():
    from sora_ros.cli import build_parser
    from sora_ros.cli.bench import apply_defaults

    parser = build_parser()
    args = apply_defaults(parser.parse_args(["bench", "closed-loop", "--episodes", "3", "--seconds", "10", "--policies",
                                             "model,wander"]))  # fmt: skip
    assert (args.episodes, args.seconds, args.policies, args.candidates, args.first_seed) == \
        (3, 10.0, "model,wander", 32, closed_loop.FIRST_SEED)
    assert args.risk_weight == MpcConfig().risk_weight, "the planner node's default"
    for bad in (["--episodes", "0"], ["--candidates", "-1"], ["--decision-every", "x"], ["--risk-weight", "-1"],
                ["--risk-weight", "nan"], ["--risk-weight", "101"], ["--risk-weight", "1e308"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", "closed-loop", *bad])


def test_refused_moves_are_counted_under_the_direction_driven():
    """In the real sim: backing up for 30 s with slow turns runs into things behind the robot; each
    refused move counts as reverse, none as forward or turning, and the counts add up. A robot
    commanded to back up while still rolling forward into a wall hits it forward."""
    import math

    from sora_ros.sim.world import SimWorld, WorldConfig

    refused = dict.fromkeys(closed_loop.DIRECTIONS, 0)
    with SimWorld(WorldConfig(width=16, height=16, num_balls=0, other_robot=False), seed=3) as world:
        for k in range(300):
            closed_loop._step(world, refused, -0.2, 0.8 * math.sin(k / 15.0))
        assert refused["reverse"] == world.collisions >= 5, "it should back into something (else this proves nothing)"
    assert refused["forward"] == refused["turning"] == 0
    refused = dict.fromkeys(closed_loop.DIRECTIONS, 0)
    with SimWorld(WorldConfig(width=16, height=16, num_balls=0, other_robot=False), seed=3) as world:
        while world.collisions == 0 and world.step_count < 600:  # full speed ahead until something refuses
            closed_loop._step(world, refused, world.config.limits.max_forward, 0.0)
        assert world.collisions == 1 and world.pose.v == 0.0
        world.pose = dataclasses.replace(world.pose, v=world.config.limits.max_forward)  # still rolling on
        closed_loop._step(world, refused, -0.2, 0.0)  # braking: one step cannot turn the speed round
    assert refused == {"forward": 2, "reverse": 0, "turning": 0}


def test_goals_lie_on_free_floor_apart_and_are_the_same_for_every_policy():
    from sora_ros.sim.geometry import clearance
    from sora_ros.sim.world import ROBOT_RADIUS, SimWorld, WorldConfig

    config = WorldConfig(width=8, height=8)
    with SimWorld(config, closed_loop.FIRST_SEED + 3) as world:
        goals = closed_loop.goal_sequence(world, closed_loop.FIRST_SEED + 3, 12)
        again = closed_loop.goal_sequence(world, closed_loop.FIRST_SEED + 3, 12)
        start = (world.pose.x, world.pose.y)
        footprints = world.obstacles(moving=False)
    np.testing.assert_array_equal(goals, again)
    hops = np.linalg.norm(np.diff(np.vstack([start, goals]), axis=0), axis=1)  # (12,)
    assert hops.min() >= closed_loop.MIN_GOAL_SPACING_M
    half = config.world_size / 2
    assert all(clearance(x, y, ROBOT_RADIUS + closed_loop.GOAL_MARGIN_M, half, footprints) > 0 for x, y in goals)


def test_an_episode_with_goals_counts_the_goals_reached(engine, monkeypatch):
    """A goal placed where the robot stands is reached at the first step; the next one 2 m on is
    not within 1.2 s."""
    def at_the_start(world, seed, count):
        first = (world.pose.x, world.pose.y)
        return np.array([first, (first[0] + 2.0, first[1])] + [(first[0], first[1] + 2.0)] * (count - 2))

    monkeypatch.setattr(closed_loop, "goal_sequence", at_the_start)

    episode = closed_loop.run_episode(WorldModelPipeline(engine), "model", closed_loop.FIRST_SEED,
                                      dataclasses.replace(CONFIG, goals=True))
    assert episode.reached == 1 and episode.metrics()["goals_per_min"] == pytest.approx(60.0 / CONFIG.seconds)
    assert np.isnan(closed_loop.run_episode(WorldModelPipeline(engine), "model", closed_loop.FIRST_SEED,
                                            CONFIG).metrics()["goals_per_min"]), "no goals: not measured"
