"""The `planner` node: a sampling MPC (CEM, sora_ros/core/mpc.py) on the world model's what-if.

Every 1/plan_rate s it proposes `candidates` cmd_vel sequences of `horizon` steps within the
robot's velocity limits, asks `rollout` (the world model's ~/rollout) about all of them in one
latents-only call, scores each by its predicted risk (FutureFrames.risk, the model's risk head),
its forward progress and its smoothness, and follows the best: cmd_vel at `command_rate` steps
through the plan (step k from k * dt after the request), warm-starting the next decision from it.
A model without a risk head answers with an empty `risk`: the node then asks for decoded images
(slower, and ~/rollout decodes at most MAX_IMAGE_CANDIDATES candidates a call) and scores the obstacle share ahead of the
robot in them (sora_ros/core/planner.py), and says so once.

Subscribes `odom` (nav_msgs/Odometry, any QoS; stamped when measured, by its header, unless that is
over a second from this node's clock): after a step commanded forward in which the odometry
position made almost no progress, against what the base could cover accelerating at `max_accel` (the
risk head's label rule, sora_ros/core/risk.py), no candidate drives forward for the next
`escape_steps` steps, and none in reverse after a step commanded in reverse without progress
(sora_ros/core/contact.py: the camera does not see behind; a bound on the sampled commands, not a
cost), so the robot turns or drives away from what it is pressed against instead of pushing on.
Without odometry the planner trusts the predicted risk alone.

Subscribes `goal_pose` (geometry_msgs/PoseStamped, as RViz's "2D Goal Pose" sends it; its position
in the odometry's frame): until the first goal the planner explores (progress is forward speed);
with a goal, progress is how fast a candidate brings the robot nearer it (sora_ros/core/goal.py;
5 s without coming 0.2 m nearer, it explores for 3 s, out of a local minimum), and within
`goal_tolerance` m of it the robot stops and waits for the next goal. A goal in another
frame is refused with a warning (the node looks up no transforms).

Publishes `cmd_vel` (Twist), `~/plan` (the chosen candidate's FutureFrames as the world model
returned it) and `~/plan/path` (nav_msgs/Path of the poses the plan drives through, in the robot's
frame at the decision, `base_frame`), for RViz/Foxglove. A plan older than STALE_PLAN_PERIODS
decision periods (the world model stopped answering) stops the robot; an answer that comes later
than that is logged with what to lower. Settings ~/rollout would refuse (candidates x samples over
its cap) and an empty `base_frame` end the node at start with one line.

Every time here is the node's clock, as its timers' (sim time under use_sim_time): plan ages, the
request timeout and the contact monitor's stamps, so that a plan's steps last the model's dt of the
robot's time when a simulation runs slower than the wall clock or pauses.

    python -m sora_ros.nodes.planner --ros-args -r rollout:=/world_model/rollout -r image:=/camera/image_raw
"""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from sora_ros.core import planner as image_cost
from sora_ros.core.contact import ContactMonitor, Forbidden
from sora_ros.core.goal import GOAL_TOLERANCE_M, Goal, GoalPursuit, approach_bounds, unicycle_poses
from sora_ros.core.image import ImageConversionError, image_to_numpy, image_to_rgb
from sora_ros.core.mpc import MAX_WEIGHT, CemPlanner, MpcConfig, PlannerInputError, Progress, VelocityLimits, \
    command_at
from sora_ros.core.requests import MAX_CANDIDATES, MAX_HORIZON, MAX_IMAGE_CANDIDATES, MAX_SAMPLER_STEPS, MAX_SAMPLES, \
    RequestError, check_caps
from sora_ros.core.risk import BlockedRule
from sora_ros.core.stamps import RECEIVE_TOLERANCE_NS
from sora_ros.core.units import NS_PER_S
from sora_ros.msg import FutureFrames
from sora_ros.nodes import messages as lm
from sora_ros.nodes import spin
from sora_ros.nodes.parameters import IntegersForDoubles
from sora_ros.sim.drive import DriveLimits
from sora_ros.srv import Rollout

LOG_THROTTLE_S = 5.0
# A decision older than this many plan periods is stale: the robot stops rather than keep
# driving on it (the world model stopped answering).
STALE_PLAN_PERIODS = 4
# Odometry older than this (s, on this node's clock) cannot aim at a goal: the robot may have moved.
STALE_ODOMETRY_S = 1.0


class PlannerNode(IntegersForDoubles, Node):
    """Asks ~/rollout about sampled command sequences and drives with the best one."""

    def __init__(self) -> None:
        super().__init__("planner")
        p, defaults, limits = self.declare_parameter, MpcConfig(), DriveLimits()  # the sim robot's, as the demo drives it
        plan_rate = p("plan_rate", 4.0, lm.float_descriptor("decisions per second", 0.1, 30.0, True)).value
        command_rate = p("command_rate", 10.0, lm.float_descriptor("cmd_vel messages per second", 1.0, 100.0, True)).value
        candidates = p("candidates", defaults.candidates, lm.int_descriptor(
            "command sequences per decision (one ~/rollout call)", 2, MAX_CANDIDATES, True)).value
        horizon = p("horizon", defaults.horizon, lm.int_descriptor("steps each candidate looks ahead", 1, MAX_HORIZON,
                                                                   True)).value
        elites = p("elites", defaults.elites, lm.int_descriptor("best candidates the sampling refits to", 1,
                                                                MAX_CANDIDATES, True)).value
        self._samples = p("samples", 1, lm.int_descriptor("samples per candidate", 1, MAX_SAMPLES, True)).value
        # 2 Euler steps per frame: 0.02-0.11 dB below the model's 4, 1.35x faster (README; eval --sampler-steps)
        self._sampler_steps = p("sampler_steps", 2, lm.int_descriptor(
            "Euler steps per predicted frame of the what-if (0: the world model's)", 0, MAX_SAMPLER_STEPS, True)).value
        max_forward = p("max_forward", limits.max_forward, lm.float_descriptor(
            "fastest forward command, m/s", 0.01, 10.0, True)).value
        max_reverse = p("max_reverse", limits.max_reverse, lm.float_descriptor(
            "fastest reverse command, m/s (positive; 0: never back up)", 0.0, 10.0, True)).value
        max_turn = p("max_turn", limits.max_turn, lm.float_descriptor("fastest turn either way, rad/s", 0.01, 10.0,
                                                                      True)).value
        max_accel = p("max_accel", limits.max_linear_accel, lm.float_descriptor(
            "the base's linear acceleration, m/s^2: a start from rest is no contact", 0.01, 100.0, True)).value
        weights = {name: p(name, getattr(defaults, name), lm.float_descriptor(description, 0.0, MAX_WEIGHT, True)).value
                   for name, description in (("risk_weight", "cost per unit of mean predicted risk (a blocked "
                                                            "step's price in steps of full-speed progress)"),
                                             ("progress_weight", "reward per unit of mean progress (forward "
                                                                 "speed, or towards a goal) / max_forward"),
                                             ("smoothness_weight", "cost per unit of squared command change"))}
        escape_steps = p("escape_steps", defaults.escape_steps, lm.int_descriptor(
            "after a step in which odom showed the robot blocked, steps in which no command drives in that "
            "direction (forward or reverse; 0: the predicted risk alone)", 0, 100, True)).value
        seed = p("seed", 0, lm.int_descriptor("sampling seed: same seed, same candidates", 0, 2**31 - 1, True)).value
        self._base_frame = p("base_frame", "base_link", lm.plain_descriptor("frame of ~/plan/path")).value
        if not self._base_frame:
            raise PlannerInputError("base_frame must name a frame (~/plan/path is published in it)")
        try:  # now, not in every ~/rollout answer
            check_caps(candidates, horizon, self._samples, self._sampler_steps, return_images=False)
        except RequestError as error:
            raise PlannerInputError(f"~/rollout would refuse every request: {error}; lower candidates or samples")
        self._goal_tolerance = p("goal_tolerance", GOAL_TOLERANCE_M, lm.float_descriptor(
            "distance from a goal_pose at which it counts as reached, m", 0.01, 100.0, True)).value
        config = MpcConfig(candidates=candidates, horizon=horizon, elites=elites, escape_steps=escape_steps, **weights)
        self._mpc = CemPlanner(config, VelocityLimits(max_forward, max_reverse, max_turn), seed=seed)
        self._stale_s = STALE_PLAN_PERIODS / plan_rate
        # One call in flight at a time: a call given up on still runs in the world model and
        # would only queue behind it (and push the live ~/futures back), so wait this long.
        self._timeout_s = p("rollout_timeout_s", 10.0, lm.float_descriptor(
            "seconds to wait for a ~/rollout answer before asking again (the robot stops meanwhile once "
            "the plan is stale)", 0.1, 600.0, True)).value
        self._images = False  # True once the model turned out to have no risk head
        self._floor: np.ndarray | None = None
        self._plan: np.ndarray | None = None  # (H, A) being followed
        self._dt = 0.1  # s per plan step; each response's FutureFrames.dt replaces it
        # Commands stamped with this node's clock when sent, odometry when measured (`_measured_ns`).
        self._rule = BlockedRule(max_accel=max_accel)
        self._contact = ContactMonitor(self._rule, self._dt, escape_steps, max_turn)
        self._odom_arrival_ns = None  # when the newest odometry arrived, this node's clock
        self._plan_start_ns = 0  # _now_ns() of the request the plan answered (its step 0)
        self._shifted = 0  # steps of the plan the warm start has been shifted past
        self._proposal: np.ndarray | None = None  # (N, H, A) in flight
        self._forbidden = Forbidden()  # what observed contact forbade the proposal in flight
        self._progress = None  # how the proposal in flight is scored for progress (None: forward speed)
        self._pose: tuple[float, float, float] | None = None  # newest odometry x, y (m), yaw (rad, NaN: unknown)
        self._pose_ns = 0  # when it was measured, this node's clock
        self._odom_frame = ""
        self._pursuit: GoalPursuit | None = None  # the goal being headed for
        self._goal_frame = ""  # its frame ('': the odometry's)
        self._holding = False  # a goal was reached: stand still until the next one
        self._pending = None
        self._pending_since_ns = 0
        self._seed = 0
        self.decisions = 0
        self._client = self.create_client(Rollout, "rollout")
        self._cmd_pub = self.create_publisher(Twist, "cmd_vel", 10)
        self._plan_pub = self.create_publisher(FutureFrames, "~/plan", 5)
        self._path_pub = self.create_publisher(Path, "~/plan/path", 5)
        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(Odometry, "odom", self._on_odometry, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "goal_pose", self._on_goal, 10)
        self.create_timer(1.0 / plan_rate, self._plan_step)
        self.create_timer(1.0 / command_rate, self._publish_command)
        self.get_logger().info(f"planner: CEM MPC, {candidates} candidates x {horizon} steps at {plan_rate:g} Hz, "
                               f"limits {max_forward:g}/-{max_reverse:g} m/s, +-{max_turn:g} rad/s")

    def _on_image(self, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg)
        except ImageConversionError as error:
            self.get_logger().warning(f"ignoring camera frame: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._floor = image_cost.update_floor(self._floor, frame)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_odometry(self, msg: Odometry) -> None:
        now_ns = self._now_ns()
        if self._odom_arrival_ns is not None and now_ns - self._odom_arrival_ns > self._rule.max_odom_gap_s * NS_PER_S:
            self.get_logger().warning(
                f"odometry came {(now_ns - self._odom_arrival_ns) / NS_PER_S:.2f} s after the one before: the contact "
                f"monitor judges a step only with odometry at most {self._rule.max_odom_gap_s:g} s apart (publish "
                "odom at 10 Hz or more, for room)", throttle_duration_sec=LOG_THROTTLE_S)
        self._odom_arrival_ns = now_ns
        measured_ns = self._measured_ns(msg.header, now_ns)
        position, yaw = msg.pose.pose.position, lm.yaw(msg.pose.pose.orientation)
        if not self._contact.odometry(measured_ns, position.x, position.y, yaw):
            self.get_logger().warning("ignoring odometry with a position that is not finite",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._pose, self._pose_ns, self._odom_frame = (position.x, position.y, yaw), measured_ns, msg.header.frame_id

    def _measured_ns(self, header, now_ns: int) -> int:
        """When odometry was measured, on this node's clock: its header stamp (at most now), so that
        its latency is not read as a robot that did not move; its arrival time when the stamp is
        further than RECEIVE_TOLERANCE_NS from it (unset, or another clock), with a warning."""
        stamp_ns = lm.stamp_ns(header)
        if abs(now_ns - stamp_ns) <= RECEIVE_TOLERANCE_NS:
            late_s = (now_ns - stamp_ns) / NS_PER_S
            if late_s > self._contact.escape_steps * self._dt / 2:  # the steps it judges lie mostly before it
                self.get_logger().warning(f"odometry arrives {late_s:.2f} s after it was measured: contact is noticed "
                                          "that late, or not at all", throttle_duration_sec=LOG_THROTTLE_S)
            return min(stamp_ns, now_ns)
        self.get_logger().warning(f"odometry stamped {(stamp_ns - now_ns) / NS_PER_S:+.1f} s from this node's clock "
                                  "(unset, or another clock): using arrival times", throttle_duration_sec=60.0)
        return now_ns

    def _other_frame(self, frame: str) -> bool:
        """Whether a goal in `frame` ('' for the odometry's) cannot be used: odometry came in another
        frame (warned)."""
        if frame and self._odom_frame and frame != self._odom_frame:
            self.get_logger().warning(f"ignoring a goal in frame {frame!r}: this node looks up no transforms; send "
                                      f"goals in the odometry's frame {self._odom_frame!r}")
            return True
        return False

    def _on_goal(self, msg: PoseStamped) -> None:
        frame = msg.header.frame_id
        if self._other_frame(frame):
            return
        try:
            goal = Goal(msg.pose.position.x, msg.pose.position.y, self._goal_tolerance)
        except ValueError as error:
            self.get_logger().warning(f"ignoring a goal: {error}")
            return
        self._pursuit, self._goal_frame, self._holding = GoalPursuit(goal), frame, False
        self.get_logger().info(f"goal ({goal.x:.2f}, {goal.y:.2f}) m in {frame or self._odom_frame!r}")

    def _may_plan_for_goal(self) -> bool:
        """False when a goal forbids planning now: no fresh odometry heading to aim with (the robot
        stops), the goal came in another frame than odometry since did (dropped), or the goal was just
        reached (the robot stops and holds until the next goal)."""
        if self._pursuit is None:
            return not self._holding
        if self._other_frame(self._goal_frame):  # sent before the first odometry said its frame
            self._pursuit = None
            return True
        if self._no_fresh_heading():
            self.get_logger().warning(f"a goal but no odometry with a heading in the last {STALE_ODOMETRY_S:g} s: "
                                      "stopping", throttle_duration_sec=LOG_THROTTLE_S)
            if self._plan is not None:  # not driving on blind until the plan goes stale
                self._plan = None
                self._cmd_pub.publish(lm.twist(0.0, 0.0))
            return False
        goal = self._pursuit.goal
        if goal.reached(*self._pose[:2]):
            self.get_logger().info(f"goal ({goal.x:.2f}, {goal.y:.2f}) reached: stopping")
            self._pursuit, self._holding, self._plan = None, True, None
            self._cmd_pub.publish(lm.twist(0.0, 0.0))
            return False
        return True

    def _no_fresh_heading(self) -> bool:
        """Whether the newest odometry is missing, without a heading, or older than STALE_ODOMETRY_S."""
        return self._pose is None or not math.isfinite(self._pose[2]) \
            or not 0 <= (self._now_ns() - self._pose_ns) / NS_PER_S <= STALE_ODOMETRY_S

    def _progress_scoring(self) -> Progress | None:
        """How the next proposal is scored for progress: forward speed (None) without a goal or while
        exploring out of a local minimum (`GoalPursuit`), else progress towards it from the newest
        odometry pose."""
        if self._pursuit is None:
            return None
        limits, exploring_until_ns = self._mpc.limits, self._pursuit.exploring_until_ns
        progress = self._pursuit.scoring(self._now_ns(), *self._pose, self._dt, limits.max_forward, limits.max_turn)
        if self._pursuit.exploring_until_ns != exploring_until_ns:
            pursuit = self._pursuit
            self.get_logger().info(f"no {pursuit.progress_m:g} m nearer the goal in {pursuit.window_s:g} s: exploring "
                                   f"for {pursuit.explore_s:g} s, then heading for it again")
        return progress

    def _plan_step(self) -> None:
        now_ns = self._now_ns()
        waited_s = (now_ns - self._pending_since_ns) / NS_PER_S
        if self._pending is not None and not 0 <= waited_s <= self._timeout_s:
            # The server died or hung mid-call (or the clock jumped back): give up on this request and ask again.
            self._client.remove_pending_request(self._pending)
            self._pending = None
            self.get_logger().warning("rollout request timed out", throttle_duration_sec=LOG_THROTTLE_S)
        if self._pending is not None or not self._client.service_is_ready():
            return
        if self._images and self._floor is None:
            return  # the image-space cost needs the floor colour from a camera frame
        if not self._may_plan_for_goal():
            return
        age_s = (now_ns - self._plan_start_ns) / NS_PER_S
        if self._plan is None or not 0 <= age_s <= self._stale_s:  # negative: the clock jumped back
            self._mpc.reset()  # the robot stopped: the old plan is no warm start
        else:  # the steps the robot executed since the last shift (a refused call shifted some already)
            executed = int(age_s / self._dt)
            self._mpc.shift(executed - self._shifted)
            self._shifted = executed
        limits = self._mpc.limits  # observed contact narrows them (sora_ros/core/contact.py)
        self._forbidden = self._contact.forbidden_steps(now_ns)
        bounds = self._forbidden.bounds(limits.low, limits.high, self._mpc.config.horizon)  # (H, A) each
        if self._pursuit is not None:
            bounds = approach_bounds(bounds, self._pursuit.goal.distance(*self._pose[:2]), self._rule.max_accel)
        actions = self._mpc.propose(bounds)  # (N, H, A)
        if self._images:
            actions = actions[:MAX_IMAGE_CANDIDATES]  # the warm start and the first samples: the image cap
        self._seed += 1
        request = Rollout.Request(actions=actions.reshape(-1).tolist(), candidates=actions.shape[0],
                                  horizon=actions.shape[1], action_dim=actions.shape[2], samples=self._samples,
                                  return_images=self._images, seed=self._seed, sampler_steps=self._sampler_steps)
        self._proposal, self._progress = actions, self._progress_scoring()
        self._pending = self._client.call_async(request)
        self._pending_since_ns = now_ns
        self._pending.add_done_callback(self._on_response)

    def _hazard(self, futures: list) -> np.ndarray | None:
        """(N, H) per candidate and step, or None when this response cannot be scored (no risk
        head: the next requests ask for images)."""
        risk = [np.asarray(f.risk, np.float32) for f in futures]
        if all(r.size == f.horizon for r, f in zip(risk, futures)):
            return np.stack(risk)
        if not all(len(f.frames) == f.horizon for f in futures) or self._floor is None:
            if not self._images:
                self.get_logger().warning("the world model has no risk head (FutureFrames.risk is empty): scoring "
                                          "the obstacle share of decoded predicted frames instead (slower); train "
                                          "one with `sora-ros train-risk`")
            self._images = True
            return None
        frames = np.stack([np.stack([image_to_numpy(image) for image in f.frames]) for f in futures])  # (N, H, ...)
        return image_cost.obstacle_fraction(frames, self._floor)

    def _on_response(self, future) -> None:
        if future is not self._pending:
            return  # a request given up on by _plan_step
        self._pending = None
        if self._holding or (self._pursuit is not None and self._no_fresh_heading()):
            return  # asked before the goal was reached, or before odometry went stale: the robot stays stopped
        response = future.result()
        if response is None or not response.success:
            why = "no response" if response is None else response.message
            self.get_logger().warning(f"rollout refused: {why}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        if len(response.futures) != len(self._proposal):
            self.get_logger().warning(f"rollout answered {len(response.futures)} futures for {len(self._proposal)} "
                                      "candidates: ignored", throttle_duration_sec=LOG_THROTTLE_S)
            return
        waited_s = (self._now_ns() - self._pending_since_ns) / NS_PER_S
        if waited_s > self._stale_s:
            self.get_logger().warning(
                f"~/rollout answered in {waited_s * 1e3:.0f} ms, later than a plan stays fresh ({STALE_PLAN_PERIODS} "
                f"/ plan_rate = {self._stale_s * 1e3:.0f} ms): the robot stops between decisions; lower candidates "
                "or plan_rate", throttle_duration_sec=LOG_THROTTLE_S)
        hazard = self._hazard(list(response.futures))
        if hazard is None:
            return
        try:
            decision = self._mpc.update(self._proposal, hazard, list(response.futures), self._progress)
        except PlannerInputError as error:  # e.g. NaN risk: keep the plan in force (it goes stale)
            self.get_logger().warning(f"cannot score the rollout: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        chosen = decision.forecast
        self._dt = chosen.dt if chosen.dt > 0 else self._dt
        if round(self._dt * NS_PER_S) != self._contact.dt_ns:  # the model's step, known from its first answer
            self._contact = ContactMonitor(self._rule, self._dt, self._contact.escape_steps, self._contact.max_turn)
        self._plan, self._plan_start_ns, self._shifted = decision.plan, self._pending_since_ns, 0
        self.decisions += 1
        self._plan_pub.publish(chosen)
        self._path_pub.publish(lm.path(unicycle_poses(decision.plan[None], self._dt)[0], lm.stamp_ns(chosen.header),
                                       self._dt, self._base_frame))
        v, w = decision.plan[0]
        self.get_logger().info(
            f"plan {v:+.2f} m/s {w:+.2f} rad/s (cost {decision.costs[decision.index]:.3f}, best of "
            f"{len(decision.costs)}; risk {decision.hazard.mean():.2f}; rollout {response.total_ms:.0f} ms)"
            + "".join(f"; blocked: no command {way} for {steps} steps" for way, steps in
                      (("forward", self._forbidden.forward), ("in reverse", self._forbidden.reverse)) if steps),
            throttle_duration_sec=1.0)

    def _publish_command(self) -> None:
        if self._plan is None:
            return  # nothing decided yet: leave the robot to itself
        now_ns = self._now_ns()
        age_s = (now_ns - self._plan_start_ns) / NS_PER_S
        if not 0 <= age_s <= self._stale_s:  # command_at stops the robot; the next decision plans afresh
            self.get_logger().warning("no fresh decision: stopping", throttle_duration_sec=LOG_THROTTLE_S)
        command = command_at(self._plan, age_s, self._dt, self._stale_s)
        command = self._contact.forbidden_steps(now_ns).filter(command)  # a block since the plan was made
        self._cmd_pub.publish(lm.twist(*command))
        self._contact.command(now_ns, float(command[0]))


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown."""
    return spin(PlannerNode, args, fatal=(PlannerInputError,))


if __name__ == "__main__":
    raise SystemExit(main())
