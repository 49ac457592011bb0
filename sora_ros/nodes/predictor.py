"""The `predictor` role: context -> ~/futures, ~/predicted/image, ~/comparison/image, and the
what-if service ~/rollout. Alone it takes `latents` (an encoder's ~/latents); inside
`world_model` it takes the frames its own encoder encodes.

    python -m sora_ros.nodes.predictor --ros-args -p model_path:=models/default -r latents:=/encoder/latents

A rollout thread rolls out each new context as `rollout_rate` and `rollout_trigger` allow (`RolloutGate`) and
publishes ~/futures; ~/rollout runs in its own callback group (the engine serialises rollouts; with what_if_yields a live one waits for one frame of a what-if).

cmd_vel is Twist or TwistStamped (Jazzy and Kilted controllers moved to TwistStamped); a
subscription of the other type would receive nothing. With cmd_vel_type:=auto (the default)
the node looks up the type cmd_vel's publishers use (graph discovery, every
CMD_VEL_DISCOVERY_S) and subscribes with it, following a change; a fixed type warns when the
publishers use another (`sora_ros.core.twist.cmd_vel_type`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import Twist, TwistStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from sora_ros.core.context import Context, StampRangeError, Verdict
from sora_ros.core.requests import MAX_PENDING_CALLS, RequestError, check_request
from sora_ros.core.scheduling import InFlight, RolloutGate
from sora_ros.core.stats import LatencyWindow
from sora_ros.core.twist import TWIST_STAMPED, cmd_vel_type, twist_indices, twist_vector
from sora_ros.core.units import MAX_STAMP_NS
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.nodes import messages as m
from sora_ros.nodes import spin_lifecycle
from sora_ros.nodes.model_node import RELIABLE_DEPTH, WORKER_POLL_S, ModelNode
from sora_ros.runtime.engine import NonFiniteOutputError
from sora_ros.runtime.latents import LatentsError, latent_from_bytes
from sora_ros.runtime.pipeline import BusyError, NoContextError, RolloutOutcome, RolloutSettings, StaleContextError, \
    WorldModelPipeline
from sora_ros.srv import Rollout

# Executor threads: two for subscriptions, timers and lifecycle, plus one per ~/rollout call that may
# wait for the engine (the pipeline refuses more as busy), so waiting calls never starve the rest.
EXECUTOR_THREADS = 2 + MAX_PENDING_CALLS
# ~/rollout's requests are kept until taken (keep-all): with keep-last 10, the default, a burst of
# 20 calls lost 9-10 of them without an answer.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


class NotConfiguredError(RuntimeError):
    """A ~/rollout call taken after a lifecycle cleanup unloaded the model (before its service went)."""


REFUSALS = {RequestError: "bad_request", NoContextError: "no_context", StaleContextError: "stale_context",
            BusyError: "busy", NonFiniteOutputError: "nonfinite_output", StampRangeError: "future_stamp_out_of_range",
            NotConfiguredError: "not_configured"}

CMD_VEL_DISCOVERY_S = 1.0  # seconds between looks at the types of cmd_vel's publishers


class PredictorNode(ModelNode):
    """Context -> futures and what-if rollouts. See the module docstring."""

    PREDICTS = True

    def __init__(self, name: str = "predictor") -> None:
        super().__init__(name)
        self._gate = self._new_gate()
        self._command: tuple[np.ndarray, float] | None = None  # (A,) in model order, monotonic time
        self._twist_indices: list[int] = []
        self._cmd_vel_sub = None  # the cmd_vel subscription, of the type cmd_vel_type chose
        self._cmd_vel_type: str | None = None
        self._cmd_vel_warning: str | None = None  # the last one logged, so a lasting one is logged once
        self._cmd_vel_timer = None
        self._rollouts = 0
        self._frame_id: str | None = None  # of the last frame observed, to log a change
        self._calls = InFlight()  # ~/rollout calls in progress: cleanup answers them before unloading the model
        self.latency["camera_to_futures"] = LatencyWindow()

    def _apply(self, settings: RolloutSettings) -> None:
        super()._apply(settings)
        self._gate.configure(*self._gate_settings())

    def _gate_settings(self) -> tuple[float, bool]:
        return self.get_parameter("rollout_rate").value, self.get_parameter("rollout_trigger").value == "arrival"

    def _new_gate(self) -> RolloutGate:
        return RolloutGate(*self._gate_settings())

    def _create_outputs(self, reliable: QoSProfile) -> None:
        super()._create_outputs(reliable)
        self._twist_indices = twist_indices(self.pipeline.info.action_names)  # ValueError: fails configure
        cmd_vel_type(self.get_parameter("cmd_vel_type").value, (), None)  # ValueError: fails configure
        pub = self.create_lifecycle_publisher
        self._outputs["futures"] = pub(FutureFrames, "~/futures", reliable)
        self._outputs["predicted"] = pub(Image, "~/predicted/image", qos_profile_sensor_data)
        self._outputs["comparison"] = pub(Image, "~/comparison/image", qos_profile_sensor_data)
        self._servers.append(self.create_service(Rollout, "~/rollout", self._serve_rollout, qos_profile=SERVICE_QOS,
                                                  callback_group=ReentrantCallbackGroup()))

    def _create_inputs(self, sensor: QoSProfile) -> None:
        super()._create_inputs(sensor)
        if not self.ENCODES:
            self._inputs.append(self.create_subscription(PatchLatents, "latents", self._on_latents_msg,
                                                         QoSProfile(depth=RELIABLE_DEPTH)))
        self._cmd_vel_type, self._cmd_vel_warning = None, None
        self._follow_cmd_vel_type()
        self._cmd_vel_timer = self.create_timer(CMD_VEL_DISCOVERY_S, self._follow_cmd_vel_type,
                                                clock=self.steady_clock)  # also while sim time stands still
        self._gate = self._new_gate()

    def on_deactivate(self, state):
        if self._cmd_vel_timer is not None:
            self.destroy_timer(self._cmd_vel_timer)
            self._cmd_vel_timer = None
        self._cmd_vel_sub = None  # destroyed with the other inputs
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        """Wait for the ~/rollout calls in progress (the executor runs them beside this transition),
        so each is answered before the service that sends the answer is destroyed."""
        self._calls.wait_idle()
        return super().on_cleanup(state)

    def _follow_cmd_vel_type(self) -> None:
        """Subscribe cmd_vel with the type its publishers use (or the fixed cmd_vel_type); warn once per problem."""
        topic = self.resolve_topic_name("cmd_vel")
        publishers = {info.topic_type for info in self.get_publishers_info_by_topic(topic)}
        wanted, warning = cmd_vel_type(self.get_parameter("cmd_vel_type").value, publishers, self._cmd_vel_type)
        if warning != self._cmd_vel_warning:
            self._cmd_vel_warning = warning
            if warning:
                self.counters.add("warning/cmd_vel_type")
                self.get_logger().warning(f"{topic}: {warning}")
        if wanted is None or wanted == self._cmd_vel_type:
            return
        if self._cmd_vel_sub is not None:
            self._inputs.remove(self._cmd_vel_sub)
            self.destroy_subscription(self._cmd_vel_sub)
        self._cmd_vel_sub = self.create_subscription(TwistStamped if wanted == TWIST_STAMPED else Twist, "cmd_vel",
                                                     self._on_cmd_vel, 10)
        self._inputs.append(self._cmd_vel_sub)
        self._cmd_vel_type = wanted
        self.get_logger().info(f"{topic}: subscribed as {wanted}" + (" (the type its publishers use)" if publishers
                                                                      else ""))

    def _loops(self) -> list[Callable[[], None]]:
        return [*super()._loops(), self._rollout_loop]

    def _wake_workers(self) -> None:
        super()._wake_workers()
        self._gate.close()

    # --- inputs -------------------------------------------------------------------------------

    def _on_cmd_vel(self, msg: Twist | TwistStamped) -> None:
        vector = twist_vector(msg.twist if isinstance(msg, TwistStamped) else msg)
        if not np.isfinite(vector).all():
            return self._drop("nonfinite_cmd_vel", f"cmd_vel with NaN or Inf: {vector.tolist()}")
        self._command = (vector[self._twist_indices], time.monotonic())

    def _on_latents_msg(self, msg: PatchLatents) -> None:
        self.frames_in.tick(value=self._stamp_age_s(m.stamp_ns(msg.header)))
        if self._malformed_stamp(msg.header):
            return
        try:
            latent = latent_from_bytes(bytes(msg.data), msg.dtype, (msg.channels, msg.height, msg.width),
                                       msg.model_id, self.pipeline.info, self.model)
        except LatentsError as error:
            return self._drop("foreign_latents", str(error))
        self._encoded(m.stamp_ns(msg.header), msg.header.frame_id, latent, time.monotonic(), None)

    def _encoded(self, stamp: int, frame_id: str, latent: np.ndarray, receipt_s: float,
                 real: np.ndarray | None, fitted: np.ndarray | None = None) -> None:
        """Add a frame to the context; publish what an earlier rollout predicted for it."""
        previous_frame_id, self._frame_id = self._frame_id, frame_id
        if previous_frame_id not in (None, frame_id) and self._throttle.ready("frame_id"):
            self.get_logger().warning(f"frame_id changed from {previous_frame_id!r} to {frame_id!r}: context "
                                      "restarted (reset/frame_id; two cameras on one topic?)")
        verdict = self.pipeline.observe(stamp, frame_id, latent, receipt_s, image=real, fitted=fitted)
        if verdict is Verdict.STAMP_OUT_OF_RANGE:
            return self._drop(verdict.value, f"frame stamped {stamp} ns: a stamp must lie from 0 to {MAX_STAMP_NS} ns")
        if verdict in (Verdict.DUPLICATE_STAMP, Verdict.OUT_OF_ORDER_STAMP):
            return self._drop(verdict.value, f"frame stamped {stamp} ns is not newer than the newest one")
        if verdict is Verdict.RESET:
            self.counters.add("reset/clock_jump")
            self.get_logger().warning("image stamps jumped back: context restarted (bag loop or clock reset?)")
        context = self.pipeline.latest_context()
        if context is not None:
            self._gate.announce(context.version)
        self._publish_prediction_for(stamp, frame_id, latent, real)

    def _publish_prediction_for(self, stamp: int, frame_id: str, latent: np.ndarray, real: np.ndarray | None) -> None:
        """~/predicted/image and the comparison for a real frame, the camera's (real None: decode its latent)."""
        predicted_pub, comparison_pub = self._outputs["predicted"], self._outputs["comparison"]
        compare = comparison_pub.get_subscription_count() > 0
        if predicted_pub.get_subscription_count() == 0 and not compare:
            return
        shown = self.pipeline.prediction_for(stamp, real, latent, compare)
        header = m.header(stamp, frame_id)
        for publisher, image, name in zip((predicted_pub, comparison_pub), shown or (),
                                          ("predicted_image", "comparison_image")):
            if image is not None:
                publisher.publish(m.numpy_to_image(image, m.RGB8, header))
                self.counters.add(f"published/{name}")

    # --- rollouts -----------------------------------------------------------------------------

    def _rollout_loop(self) -> None:
        while self._workers.running:
            if self._gate.wait(WORKER_POLL_S) and (context := self.pipeline.latest_context()) is not None:
                self._guarded("rollout", self._rollout, context)

    def _rollout(self, context: Context) -> None:
        command, timeout_s = self._command, self.get_parameter("cmd_vel_timeout_s").value
        fresh = command is not None and time.monotonic() - command[1] <= timeout_s
        shows_now = (self._outputs["predicted"].get_subscription_count()
                     + self._outputs["comparison"].get_subscription_count()) > 0
        self._rollouts += 1
        try:
            outcome = self.pipeline.predict(context, command[0] if fresh else None, seed=self._rollouts,
                                            decode_all=self._outputs["futures"].get_subscription_count() > 0,
                                            decode_first=shows_now)
        except NonFiniteOutputError as error:
            return self._drop("nonfinite_output", str(error))
        except StampRangeError as error:  # near the end of int32 seconds: no stamp for the futures
            return self._drop("future_stamp_out_of_range", str(error))
        self._log_notes(outcome)
        latency_s = time.monotonic() - context.receipt_s
        self._outputs["futures"].publish(m.future_frames(outcome, 0, self.model, self.pipeline.info, latency_s))
        self.latency["camera_to_futures"].add(1e3 * latency_s)
        self.counters.add("published/futures")

    def _serve_rollout(self, request: Rollout.Request, response: Rollout.Response) -> Rollout.Response:
        """~/rollout: one FutureFrames per candidate, or success=False and the reason."""
        with self._calls.call():
            return self._answer_rollout(request, response, self.pipeline)

    def _answer_rollout(self, request: Rollout.Request, response: Rollout.Response,
                        pipeline: WorldModelPipeline | None) -> Rollout.Response:
        """`_serve_rollout` with the pipeline the call started with (None: the node is unconfigured)."""
        start = time.perf_counter()
        self.counters.add("service/calls")
        try:
            if pipeline is None:
                raise NotConfiguredError("the node is unconfigured (lifecycle cleanup): no model is loaded; "
                                         "configure and activate it")
            checked = check_request(np.asarray(request.actions, np.float32), request.candidates, request.horizon,
                                    request.action_dim, request.samples, request.seed, request.return_images,
                                    pipeline.info.action_dim, request.sampler_steps)
            max_age_s = self.get_parameter("max_context_age_s").value or self.get_parameter("watchdog_timeout_s").value
            outcome = pipeline.what_if(checked, max_age_s=max_age_s)
        except tuple(REFUSALS) as error:
            reason = REFUSALS[type(error)]
            self.counters.add(f"service/refused/{reason}")
            self.get_logger().warning(f"~/rollout refused: {error}")
            response.success, response.message = False, str(error)
            return response
        total_s = time.perf_counter() - start
        response.futures = [m.future_frames(outcome, n, self.model, pipeline.info, total_s)
                            for n in range(checked.candidates)]
        response.success, response.message = True, "; ".join(outcome.notes)
        response.rollout_ms, response.decode_ms, response.total_ms = outcome.rollout_ms, outcome.decode_ms, 1e3 * total_s
        return response

    def _log_notes(self, outcome: RolloutOutcome) -> None:
        if outcome.notes and self._throttle.ready("deadline"):  # one line per period, not per rollout
            self.get_logger().info(f"rollout: {'; '.join(outcome.notes)}")


def main(args: list[str] | None = None) -> int:
    """The `predictor` executable; 1 if its model fails to configure."""
    return spin_lifecycle(PredictorNode, sys.argv if args is None else args, EXECUTOR_THREADS)


if __name__ == "__main__":
    raise SystemExit(main())
