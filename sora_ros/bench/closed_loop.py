"""`sora-ros bench closed-loop`: does the world model help a planner? Seeded sim episodes never
used in training, in one process without DDS (fast, deterministic), the same seeds for every policy:

    model      the sampling MPC (sora_ros/core/mpc.py) on the world model's rollouts
    copy_last  the same MPC fed "predictions" that repeat the last latent (no dynamics model)
    shuffled   the same MPC with the model, but each candidate's actions swapped for another's
               before the rollout (core/action_shuffle.py): does action conditioning matter?
    wander     the sim's wander policy with its privileged range sensor (an upper reference)

Each step the sim renders the camera, the frame goes through WorldModelPipeline (encode, observe)
and every `decision_every` steps the MPC decides (one `what_if` call of N candidates per CEM
iteration, latents only); between decisions the robot follows the plan. As in the planner node,
the contact monitor (sora_ros/core/contact.py, fed the sim's true pose as odometry) bounds the
candidates and filters each command sent. Simulated time waits
for the planner, so the outcome does not depend on the machine's load; the planner's wall time
is measured and reported beside it.

With `goals` (`--goals`) each episode also hands the MPC policies a sequence of goals on free floor
(the same for every policy on a seed: `goal_sequence`), scored as the planner node scores a
goal_pose (sora_ros/core/goal.py: `GoalPursuit`, exploring a while when it stops getting nearer);
the next follows as soon as one is reached, and goals reached per minute is a metric. Without goals
the MPC explores (progress is forward speed), and distance counts the circles it drives in open
floor.

Hazard per predicted step: the model directory's risk head (`Forecast.risk`); a model without
one falls back, as the planner node does, to the image-space obstacle share of
sora_ros/core/planner.py on the decoded predicted frames of at most MAX_IMAGE_CANDIDATES
candidates (64x64 VAE decodes here), and metrics.json says which.

Per policy, mean and 95% bootstrap interval over episodes: collisions (refused moves) per minute,
distance travelled, time stuck (seconds in which the robot was less than STUCK_DISTANCE_M from
where it was STUCK_WINDOW_S before), decisions per simulated second, planner latency (wall ms per
decision) and the decision rate that latency allows; and the model against each other policy seed by
seed (`paired`). Writes metrics.json, closed_loop.png and
trajectories.png (the first few episodes on the room map), and episodes.jsonl as it goes (one
line per finished episode: a run cut short still says what it measured).

Legend: N candidates, H horizon, A action dim, E episodes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sora_ros.core import planner as image_cost
from sora_ros.core.action_shuffle import ActionShuffler
from sora_ros.core.contact import ContactMonitor
from sora_ros.core.goal import GOAL_TOLERANCE_M, Goal, GoalPursuit, approach_bounds
from sora_ros.core.machine import machine_description
from sora_ros.core.mpc import CemPlanner, MpcConfig, PlannerInputError, VelocityLimits
from sora_ros.core.requests import MAX_IMAGE_CANDIDATES, RolloutRequest
from sora_ros.core.risk import BlockedRule

if TYPE_CHECKING:  # the runtime (onnxruntime) is imported where used: `sora-ros --help` stays instant
    from sora_ros.runtime.engine import RolloutResult, WorldModelEngine
    from sora_ros.runtime.pipeline import Forecast, WorldModelPipeline
    from sora_ros.sim.world import WorldConfig

POLICIES = ("model", "copy_last", "shuffled", "wander")
# Seeds `sora-ros sim record` gave to training (scripts/train_default.sh records seeds 0..99,
# split 8:1:1); the benchmark's start far above any seed a training run here has used.
FIRST_SEED = 1_000_000
STUCK_WINDOW_S = 2.0
STUCK_DISTANCE_M = 0.1
BOOTSTRAP_RESAMPLES = 2000
TRAJECTORY_EPISODES = 3
EPISODES_FILE = "episodes.jsonl"
# Refused moves are counted by the linear speed the sim applied in the refused step (the command,
# reached within the acceleration limit: a robot still braking from forward motion hits forward):
# above MIN_COMMAND m/s forward, below -MIN_COMMAND reverse, else turning on the spot (the contact
# monitor's threshold).
DIRECTIONS = ("forward", "reverse", "turning")
MIN_COMMAND = BlockedRule().min_command
METRICS = (("collisions_per_min", "collisions (refused moves) / min"), ("distance_m", "distance travelled, m"),
           ("stuck_s", "time stuck, s"), ("planner_ms", "planner latency p50, ms / decision"))
# Goals (--goals): drawn from their own random stream, each this far from the one before (the
# first from the start), on floor with this much room around the robot.
GOAL_SEED_OFFSET = 7_919
MIN_GOAL_SPACING_M = 2.0
GOAL_MARGIN_M = 0.1
GOAL_DRAWS = 10_000
GOALS_METRIC = ("goals_per_min", "goals reached / min")


@dataclass(frozen=True)
class ClosedLoopConfig:
    """One benchmark run.

    Attributes:
        episodes: E seeds, FIRST_SEED.. unless first_seed says otherwise.
        seconds: simulated seconds per episode.
        decision_every: sim steps (the model's dt each) between MPC decisions.
        mpc: the planner's settings (its horizon is the rollout horizon).
        samples: rollout samples per candidate.
        width, height: camera pixels.
        goals: give the MPC policies goals (module docstring); without, they explore.
    """

    episodes: int = 20
    seconds: float = 60.0
    first_seed: int = FIRST_SEED
    decision_every: int = 2
    mpc: MpcConfig = field(default_factory=MpcConfig)
    samples: int = 1
    width: int = 128
    height: int = 128
    goals: bool = False

    def world(self) -> WorldConfig:
        """The sim's settings for these episodes (its frame rate WorldConfig's default)."""
        from sora_ros.sim.world import WorldConfig

        return WorldConfig(width=self.width, height=self.height)


def frame_period_problem(dt: float, world: WorldConfig) -> str | None:
    """Why a model of `dt` s per predicted step cannot plan in `world` (the MPC steps it once per
    rendered frame, so dt must be the frame period), or None."""
    if abs(dt * world.rate_hz - 1) > 1e-6:
        return f"the model's dt ({dt:g} s) must equal the sim's frame period ({1 / world.rate_hz:g} s)"
    return None


@dataclass
class Episode:
    """What one policy did on one seed. poses: (T + 1, 3) x, y, yaw; planner_ms: one per decision;
    refused: the collisions by the direction driven (DIRECTIONS); goals: (G, 2) the goals given, m,
    of which the first `reached` were reached (None: no goals)."""

    seed: int
    policy: str
    collisions: int
    seconds: float
    poses: np.ndarray
    planner_ms: list[float]
    decisions: int
    refused: dict[str, int]
    goals: np.ndarray | None = None
    reached: int = 0

    def metrics(self) -> dict[str, float]:
        steps = np.linalg.norm(np.diff(self.poses[:, :2], axis=0), axis=1)  # (T,)
        dt = self.seconds / max(1, len(steps))
        window = max(1, round(STUCK_WINDOW_S / dt))
        net = np.linalg.norm(self.poses[window:, :2] - self.poses[:-window, :2], axis=1)
        return {"collisions_per_min": 60.0 * self.collisions / self.seconds, "distance_m": float(steps.sum()),
                "stuck_s": float(np.count_nonzero(net < STUCK_DISTANCE_M) * dt),
                "planner_ms": float(np.median(self.planner_ms)) if self.planner_ms else float("nan"),
                "decisions_per_s": self.decisions / self.seconds,
                "goals_per_min": float("nan") if self.goals is None else 60.0 * self.reached / self.seconds,
                **{f"{d}_collisions_per_min": 60.0 * self.refused[d] / self.seconds for d in DIRECTIONS}}


class CopyLastEngine:
    """The engine with its dynamics replaced by "nothing changes": every predicted latent is the
    context's last one (all else, the risk head and the decoder included, is the model's)."""

    def __init__(self, engine: WorldModelEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def rollout(self, context: np.ndarray, actions: np.ndarray | None = None, *, horizon: int | None = None,
                samples: int = 1, **_ignored) -> RolloutResult:
        """RolloutResult of latents (N, S, H, C, h, w) = the last context latent, uncertainty 0."""
        from sora_ros.runtime.engine import RolloutResult

        start = time.perf_counter()
        context = np.asarray(context, np.float32)
        context = context if context.ndim == 5 else context[None]  # (N, K, C, h, w)
        horizon = horizon or (self.info.default_horizon if actions is None else np.shape(actions)[-2])
        latents = np.broadcast_to(context[:, None, None, -1], (len(context), samples, horizon, *context.shape[2:]))
        return RolloutResult(latents.copy(), np.zeros((len(context), horizon), np.float32),
                             time.perf_counter() - start)


def _step(world, refused: dict[str, int], linear_x: float, angular_z: float) -> None:
    """world.step, counting a refused move in `refused` under the direction the robot was driving."""
    from sora_ros.sim.drive import limited_velocity

    speed, _ = limited_velocity(world.pose, linear_x, angular_z, world.config.limits, 1 / world.config.rate_hz)
    before = world.collisions
    world.step(linear_x, angular_z)
    if world.collisions > before:
        refused[DIRECTIONS[0 if speed > MIN_COMMAND else 1 if speed < -MIN_COMMAND else 2]] += 1


def _hazard(forecasts: list[Forecast], floor: np.ndarray | None) -> np.ndarray:
    """(N, H) per candidate and step: the risk head's probability, else the obstacle share of the
    decoded frames."""
    if all(f.risk is not None for f in forecasts):
        return np.stack([f.risk for f in forecasts])
    return np.stack([image_cost.obstacle_fraction(f.frames, floor) for f in forecasts])


def _forecaster(pipeline: WorldModelPipeline, context, floor, samples: int, seed: int, images: bool,
                shuffle: ActionShuffler | None) -> Callable:
    """actions (N, H, A) -> (hazard (N, H), forecasts) for one decision from `context`."""

    def evaluate(actions: np.ndarray):
        sent = actions if shuffle is None else np.stack([shuffle(a, first_future=0) for a in actions])
        request = RolloutRequest(sent, len(actions), actions.shape[1], samples, seed, images)
        forecasts = pipeline.what_if(request, context).forecasts
        return _hazard(forecasts, floor), forecasts

    return evaluate


def has_risk_head(engine: WorldModelEngine) -> bool:
    """Whether rollouts of this model carry `Forecast.risk` (a risk head in the model directory)."""
    return engine.risk is not None


def planner_config(mpc: MpcConfig, images: bool) -> MpcConfig:
    """The MPC as the planner node runs it: without a risk head (images) ~/rollout decodes at most
    MAX_IMAGE_CANDIDATES candidates a call."""
    return replace(mpc, candidates=min(mpc.candidates, MAX_IMAGE_CANDIDATES)) if images else mpc


def goal_sequence(world, seed: int, count: int) -> np.ndarray:
    """float64 (count, 2): goals on the static floor plan of `world`, m, each MIN_GOAL_SPACING_M or
    more from the one before (the first from the robot's start), with GOAL_MARGIN_M of room around
    the robot; from their own random stream, so every policy on a seed gets the same ones.

    Raises:
        ValueError: no free spot that far in GOAL_DRAWS draws (a room too small or too full).
    """
    from sora_ros.sim.geometry import clearance
    from sora_ros.sim.world import ROBOT_RADIUS

    rng = np.random.default_rng(seed + GOAL_SEED_OFFSET)
    half, footprints = world.config.world_size / 2, world.obstacles(moving=False)
    goals, last = [], (world.pose.x, world.pose.y)
    for _ in range(count):
        for _ in range(GOAL_DRAWS):
            x, y = rng.uniform(-half, half, 2)
            if math.hypot(x - last[0], y - last[1]) >= MIN_GOAL_SPACING_M and \
                    clearance(x, y, ROBOT_RADIUS + GOAL_MARGIN_M, half, footprints) > 0:
                break
        else:
            raise ValueError(f"no free goal {MIN_GOAL_SPACING_M:g} m from ({last[0]:.2f}, {last[1]:.2f}) in the room "
                             f"of seed {seed}")
        goals.append(last := (x, y))
    return np.array(goals, np.float64)


def run_episode(pipeline: WorldModelPipeline | None, policy: str, seed: int, config: ClosedLoopConfig) -> Episode:
    """One episode of `policy` on the world of `seed` (pipeline None only for "wander")."""
    from sora_ros.sim.recorder import POLICY_SEED_OFFSET
    from sora_ros.sim.wander import WanderPolicy
    from sora_ros.sim.world import SimWorld

    world_config = config.world()
    rate = world_config.rate_hz
    steps = max(1, round(config.seconds * rate))
    poses, planner_ms, refused = [], [], dict.fromkeys(DIRECTIONS, 0)
    with SimWorld(world_config, seed) as world:
        poses.append((world.pose.x, world.pose.y, world.pose.yaw))
        if policy == "wander":
            wander = WanderPolicy(np.random.default_rng(seed + POLICY_SEED_OFFSET), world_config.limits)
            for _ in range(steps):
                start = time.perf_counter()
                command = wander.act(world.ranges(), 1 / rate)
                planner_ms.append(1e3 * (time.perf_counter() - start))
                _step(world, refused, *command)
                poses.append((world.pose.x, world.pose.y, world.pose.yaw))
            return Episode(seed, policy, world.collisions, steps / rate, np.array(poses), planner_ms, steps, refused)
        if problem := frame_period_problem(pipeline.info.dt, world_config):  # `run` refuses it before any episode
            raise ValueError(problem)
        limits = world_config.limits
        robot = VelocityLimits(limits.max_forward, limits.max_reverse, limits.max_turn)
        images = not has_risk_head(pipeline.engine)
        planner = CemPlanner(planner_config(config.mpc, images), robot.within(*pipeline.info.action_range), seed=seed)
        shuffle = ActionShuffler(seed) if policy == "shuffled" else None
        # Odometry is the sim's true pose (heading included), as the sim node publishes it on /odom.
        contact = ContactMonitor(BlockedRule(max_accel=limits.max_linear_accel), pipeline.info.dt,
                                 config.mpc.escape_steps, planner.limits.max_turn)
        contact.odometry(world.stamp_ns, world.pose.x, world.pose.y, world.pose.yaw)
        # More goals than the robot can reach at full speed: each lies >= the spacing less two tolerances on.
        goals = goal_sequence(world, seed, math.ceil(config.seconds * planner.limits.max_forward / (
            MIN_GOAL_SPACING_M - 2 * GOAL_TOLERANCE_M)) + 1) if config.goals else None
        pipeline.reset()
        floor, plan, plan_age, decisions, reached = None, None, 0, 0, 0
        pursuit = None if goals is None else GoalPursuit(Goal(*goals[0]))
        for index in range(steps):
            rgb = world.render()
            floor = image_cost.update_floor(floor, rgb)
            _, latent = pipeline.encode(rgb)
            pipeline.observe(world.stamp_ns, "camera", latent)
            context = pipeline.latest_context()
            forbidden = contact.forbidden_steps(world.stamp_ns)  # once a step: for the decision and the command
            if context is not None and (plan is None or index % config.decision_every == 0):
                start = time.perf_counter()
                bounds = forbidden.bounds(planner.limits.low, planner.limits.high, planner.config.horizon)  # (H, A)
                if pursuit is not None:  # as the planner node
                    bounds = approach_bounds(bounds, pursuit.goal.distance(world.pose.x, world.pose.y),
                                             limits.max_linear_accel)
                progress = None if pursuit is None else pursuit.scoring(
                    world.stamp_ns, world.pose.x, world.pose.y, world.pose.yaw, pipeline.info.dt,
                    planner.limits.max_forward, planner.limits.max_turn)
                decision = planner.decide(_forecaster(pipeline, context, floor, config.samples,
                                                      seed * 100_003 + index, images, shuffle),
                                          elapsed_steps=0 if plan is None else plan_age, bounds=bounds,
                                          progress=progress)
                planner_ms.append(1e3 * (time.perf_counter() - start))
                plan, plan_age, decisions = decision.plan, 0, decisions + 1
            command = (0.0, 0.0) if plan is None else plan[min(plan_age, len(plan) - 1)]
            command = forbidden.filter(command)  # a block since the decision
            contact.command(world.stamp_ns, float(command[0]))
            _step(world, refused, float(command[0]), float(command[1]))
            contact.odometry(world.stamp_ns, world.pose.x, world.pose.y, world.pose.yaw)
            plan_age += 1
            poses.append((world.pose.x, world.pose.y, world.pose.yaw))
            if pursuit is not None and pursuit.goal.reached(world.pose.x, world.pose.y):
                reached += 1  # the next decision heads for the next goal (after the last: explore)
                pursuit = GoalPursuit(Goal(*goals[reached])) if reached < len(goals) else None
        return Episode(seed, policy, world.collisions, steps / rate, np.array(poses), planner_ms, decisions, refused,
                       goals, reached)


def mean_ci95(values: list[float], seed: int = 0) -> dict[str, float]:
    """Mean and 95% percentile-bootstrap interval over episodes ({"mean", "low", "high", "n"});
    NaN bounds with fewer than 2 values."""
    values = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    if values.size < 2:
        return {"mean": float(values.mean()), "low": float("nan"), "high": float("nan"), "n": 1}
    draws = np.random.default_rng(seed).choice(values, (BOOTSTRAP_RESAMPLES, values.size)).mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "n": int(values.size)}


def summarise(episodes: list[Episode]) -> dict[str, dict]:
    """Per policy: every metric's mean and 95% interval over its episodes, plus the decision rate
    its median latency allows on this machine."""
    summary = {}
    for policy in dict.fromkeys(e.policy for e in episodes):
        rows = [e.metrics() for e in episodes if e.policy == policy]
        stats = {name: mean_ci95([row[name] for row in rows]) for name in rows[0]}
        latency = [ms for e in episodes if e.policy == policy for ms in e.planner_ms]
        stats["planner_ms_all"] = {"p50": float(np.median(latency)), "p95": float(np.percentile(latency, 95)),
                                   "n": len(latency)} if latency else None
        stats["achievable_decisions_per_s"] = 1e3 / stats["planner_ms_all"]["p50"] if latency else None
        summary[policy] = stats
    return summary


def sign_test_p(fewer: int, more: int) -> float:
    """Two-sided exact sign test: the chance, were both outcomes equally likely on every seed that
    differs, of a split at least as uneven as `fewer` : `more` (twice the smaller binomial tail,
    at most 1; 1.0 when no seed differs)."""
    n = fewer + more
    tail = sum(math.comb(n, i) for i in range(min(fewer, more) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(episodes: list[Episode], policy: str = "model") -> dict[str, dict]:
    """`policy` against every other policy on the seeds both ran, seed by seed: the collisions per
    minute of `policy` minus the other's (mean and 95% bootstrap interval of the differences), the
    seeds on which `policy` collided less, more or as often, and the two-sided sign test's p-value
    over the seeds that differ (`sign_test_p`). Paired by seed, since the room and its obstacles
    vary far more between seeds than between policies on one seed.

    Returns {other policy: {"difference": mean_ci95, "fewer", "more", "equal", "sign_test_p"}};
    empty when `policy` did not run."""
    rates = {(e.policy, e.seed): e.metrics()["collisions_per_min"] for e in episodes}
    comparisons = {}
    for other in dict.fromkeys(e.policy for e in episodes if e.policy != policy):
        seeds = [seed for p, seed in rates if p == policy and (other, seed) in rates]
        if not seeds:
            continue
        differences = np.array([rates[policy, seed] - rates[other, seed] for seed in seeds])  # (E,)
        fewer, more = int(np.count_nonzero(differences < 0)), int(np.count_nonzero(differences > 0))
        comparisons[other] = {"difference": mean_ci95(list(differences)), "fewer": fewer, "more": more,
                              "equal": len(seeds) - fewer - more,
                              "sign_test_p": sign_test_p(fewer, more)}
    return comparisons


def verdict(summary: dict[str, dict]) -> list[str]:
    """The issue's closed-loop target, line by line, as far as the policies run allow: model
    collisions/min <= 1/3 of copy_last's and below shuffled's, at equal or greater distance
    travelled than both."""
    baselines = [p for p in ("copy_last", "shuffled") if p in summary]
    if "model" not in summary or not baselines:
        return ["target not judged: it needs the model policy and copy_last or shuffled"]
    rate = {p: summary[p]["collisions_per_min"]["mean"] for p in ("model", *baselines)}
    distance = {p: summary[p]["distance_m"]["mean"] for p in ("model", *baselines)}
    # A baseline without collisions cannot be beaten (0 < 0 would read as missed, 0 <= 0 as met).
    unjudged = [f"not judged: collisions/min against {p}, which had none (run longer or more episodes)"
                for p in baselines if rate[p] == 0]
    checks = []
    if rate.get("copy_last"):
        checks.append((rate["model"] <= rate["copy_last"] / 3, f"collisions/min model {rate['model']:.2f} <= "
                       f"{rate['copy_last'] / 3:.2f} (1/3 of copy_last's {rate['copy_last']:.2f})"))
    if rate.get("shuffled"):
        checks.append((rate["model"] < rate["shuffled"], f"collisions/min model {rate['model']:.2f} < shuffled "
                       f"{rate['shuffled']:.2f}"))
    # Centimetres: at 0.1 m a miss by less than 5 cm would read "0.2 m >= 0.2 m".
    checks.append((distance["model"] >= max(distance[p] for p in baselines), f"distance model "
                   f"{distance['model']:.2f} m >= " + " and ".join(f"{p} {distance[p]:.2f} m" for p in baselines)))
    return unjudged + [f"{'met' if ok else 'MISSED'}: {text}" for ok, text in checks]


def plot(summary: dict[str, dict], path: Path, goals: bool = False) -> None:
    """closed_loop.png: one panel per metric (goals reached too with `goals`), a bar per policy
    with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(summary)
    panels = METRICS + ((GOALS_METRIC,) if goals else ())
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for axis, (name, title) in zip(axes, panels):
        means = np.array([summary[p][name]["mean"] for p in policies])
        lows = np.array([summary[p][name]["low"] for p in policies])
        highs = np.array([summary[p][name]["high"] for p in policies])
        errors = np.nan_to_num(np.vstack([means - lows, highs - means]))
        axis.bar(policies, np.nan_to_num(means), yerr=errors, capsize=4,
                 color=["tab:blue", "tab:gray", "tab:orange", "tab:green"][: len(policies)])
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", rotation=20)
    figure.suptitle("closed loop in the sim: mean over episodes, 95% bootstrap interval")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_trajectories(episodes: list[Episode], config: ClosedLoopConfig, path: Path) -> None:
    """trajectories.png: the first TRAJECTORY_EPISODES seeds, each on its room map (walls, the
    static footprints; the balls and the other robot move, so a refusal may lie in open floor), one
    line per policy from the start (dot) to the end (cross)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sora_ros.sim.world import SimWorld, WorldConfig

    seeds = list(dict.fromkeys(e.seed for e in episodes))[:TRAJECTORY_EPISODES]
    colours = dict(zip(POLICIES, ["tab:blue", "tab:gray", "tab:orange", "tab:green"]))
    figure, axes = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 5), squeeze=False)
    for axis, seed in zip(axes[0], seeds):
        world_config = WorldConfig(width=8, height=8)
        with SimWorld(world_config, seed) as world:
            footprints = world.obstacles(moving=False)
        half = world_config.world_size / 2
        axis.add_patch(plt.Rectangle((-half, -half), 2 * half, 2 * half, fill=False, lw=2))
        for x, y, r in footprints.circles:
            axis.add_patch(plt.Circle((x, y), r, color="0.6"))
        for x, y, yaw, half_x, half_y in footprints.boxes:  # anchored at a corner, turned about the centre
            axis.add_patch(plt.Rectangle((x - half_x, y - half_y), 2 * half_x, 2 * half_y, angle=np.degrees(yaw),
                                         rotation_point="center", color="0.6"))
        for episode in (e for e in episodes if e.seed == seed):
            axis.plot(episode.poses[:, 0], episode.poses[:, 1], color=colours[episode.policy], lw=1.2,
                      label=f"{episode.policy}: {episode.collisions} refused")
            axis.plot(*episode.poses[-1, :2], "x", color=colours[episode.policy])
        goals = next((e.goals for e in episodes if e.seed == seed and e.goals is not None), None)
        for number, (x, y) in enumerate([] if goals is None else goals[:max(e.reached for e in episodes) + 1]):
            axis.plot(x, y, "*", color="gold", mec="k", ms=11)  # the goals some policy reached, and the next
            axis.annotate(str(number + 1), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
        axis.plot(*episodes[0].poses[0, :2], "ko", ms=5)
        axis.set(xlim=(-half - 0.2, half + 0.2), ylim=(-half - 0.2, half + 0.2), aspect="equal",
                 title=f"seed {seed}, {config.seconds:g} s")
        axis.legend(fontsize=7, loc="upper right")
    figure.suptitle(("stars: the goals reached, in order, and the next; " if config.goals else "")
                    + "the moving balls and the robot are not drawn", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(args: argparse.Namespace, base: ClosedLoopConfig = ClosedLoopConfig()) -> int:
    """The command: `args` from `sora-ros bench`; `base` holds what the command line does not
    set (camera size, the MPC's other settings)."""
    from tqdm import tqdm

    from sora_ros.core.paths import default_model_dir
    from sora_ros.evaluation.report import json_safe
    from sora_ros.runtime.engine import WorldModelEngine
    from sora_ros.runtime.model_dir import ModelDirError
    from sora_ros.runtime.pipeline import WorldModelPipeline

    policies = tuple(args.policies.split(","))
    unknown = set(policies) - set(POLICIES)
    if unknown or len(set(policies)) < len(policies):  # a policy twice would count its seeds twice
        problem = f"unknown policies {sorted(unknown)}" if unknown else f"a policy named twice in {args.policies!r}"
        print(f"sora-ros bench closed-loop: {problem}; choose from {','.join(POLICIES)}, each once", file=sys.stderr)
        return 2
    try:
        mpc = replace(base.mpc, candidates=args.candidates, horizon=args.horizon, iterations=args.iterations,
                      escape_steps=args.escape_steps, risk_weight=args.risk_weight,
                      elites=min(base.mpc.elites, args.candidates))  # no --elites: 2 or 3 candidates take all
    except PlannerInputError as error:
        print(f"sora-ros bench closed-loop: {error}", file=sys.stderr)
        return 2
    config = replace(base, episodes=args.episodes, seconds=args.seconds, first_seed=args.first_seed,
                     decision_every=args.decision_every, mpc=mpc, goals=args.goals)
    model_dir = Path(args.model) if args.model else default_model_dir()
    try:
        engine = WorldModelEngine(model_dir, precision=args.dynamics_precision)
    except ModelDirError as error:
        print(f"sora-ros bench closed-loop: {error}", file=sys.stderr)
        return 2
    if problem := frame_period_problem(engine.info.dt, config.world()):  # before the header and --out are written
        print(f"sora-ros bench closed-loop: --model {model_dir}: {problem}", file=sys.stderr)
        return 2
    images = not has_risk_head(engine)
    hazard_source = "image-space obstacle share of decoded frames (the model directory has no risk head)" \
        if images else "risk head (Forecast.risk)"
    mpc = planner_config(mpc, images)
    config = replace(config, mpc=mpc)  # metrics.json: the candidates the MPC used
    pipelines = {"model": WorldModelPipeline(engine), "shuffled": WorldModelPipeline(engine),
                 "copy_last": WorldModelPipeline(CopyLastEngine(engine)), "wander": None}
    seeds = range(config.first_seed, config.first_seed + config.episodes)
    print(f"machine: {machine_description()}")
    print(f"model: {engine.info.name} ({model_dir}), {engine.precision} dynamics, ONNX Runtime thread pool: "
          f"{args.thread_pool}; hazard: {hazard_source}")
    print(f"{config.episodes} episodes x {config.seconds:g} s, seeds {seeds.start}..{seeds.stop - 1}; MPC "
          f"{mpc.candidates} candidates x {mpc.horizon} steps, {mpc.iterations} CEM iteration(s), escape steps "
          f"{mpc.escape_steps}, risk weight {mpc.risk_weight:g}, a decision every "
          f"{config.decision_every} steps ({engine.info.dt * config.decision_every:g} s simulated); "
          + ("goals on free floor, the next once one is reached" if config.goals else "no goals: the MPC explores"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    episodes = []
    with tqdm(total=len(seeds) * len(policies), unit="episode", desc="closed loop", disable=None) as bar, \
            open(out / EPISODES_FILE, "w") as lines:
        for seed in seeds:
            for policy in policies:
                episodes.append(run_episode(pipelines[policy], policy, seed, config))
                lines.write(json.dumps(json_safe({"seed": seed, "policy": policy, **episodes[-1].metrics()}),
                                       allow_nan=False) + "\n")
                lines.flush()
                bar.update()
    summary = summarise(episodes)
    comparisons = paired(episodes)
    lines = verdict(summary)
    metrics = {"machine": machine_description(), "model": str(model_dir), "dynamics_precision": engine.precision,
               "thread_pool": args.thread_pool, "hazard": hazard_source,
               "config": asdict(config), "policies": summary, "paired": comparisons, "target": lines,
               "episodes": [{"seed": e.seed, "policy": e.policy, **e.metrics()} for e in episodes],
               "command": " ".join(["sora-ros", *sys.argv[1:]])}
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False))  # NaN: null
    plot(summary, out / "closed_loop.png", config.goals)
    plot_trajectories(episodes, config, out / "trajectories.png")
    print(f"{'policy':10s} {'collisions/min':>22s} {'distance m':>20s} {'stuck s':>18s} {'planner ms p50':>15s}")
    for policy, stats in summary.items():
        cells = [f"{stats[n]['mean']:7.2f} [{stats[n]['low']:6.2f}, {stats[n]['high']:6.2f}]"
                 for n in ("collisions_per_min", "distance_m", "stuck_s")]
        latency = "-" if stats["planner_ms_all"] is None else f"{stats['planner_ms_all']['p50']:.1f}"  # no decision yet
        print(f"{policy:10s} {cells[0]:>22s} {cells[1]:>20s} {cells[2]:>18s} {latency:>15s}")
    if config.goals:
        print("goals reached / min: " + "; ".join(
            f"{policy} {stats['goals_per_min']['mean']:.2f} [{stats['goals_per_min']['low']:.2f}, "
            f"{stats['goals_per_min']['high']:.2f}]" for policy, stats in summary.items() if policy != "wander"))
    print("collisions / min by the direction driven: " + "; ".join(
        f"{policy} " + ", ".join(f"{stats[f'{d}_collisions_per_min']['mean']:.1f} {d}" for d in DIRECTIONS)
        for policy, stats in summary.items()))
    for other, comparison in comparisons.items():
        difference = comparison["difference"]
        print(f"paired by seed, model - {other}: {difference['mean']:+.2f} [{difference['low']:+.2f}, "
              f"{difference['high']:+.2f}] collisions/min; fewer on {comparison['fewer']}, more on "
              f"{comparison['more']}, as many on {comparison['equal']} of {difference['n']} seeds (sign test p = "
              f"{comparison['sign_test_p']:.2f})")
    for line in lines:
        print(line)
    print(f"wrote {out / 'metrics.json'}, {out / 'closed_loop.png'}, {out / 'trajectories.png'}")
    return 0
