"""The world-model lifecycle node in three roles: `world_model` (encode and predict),
`encoder` (camera -> ~/latents), `predictor` (latents -> ~/futures, ~/rollout). An adapter
around sora_ros.runtime.pipeline.WorldModelPipeline, which does the work.

    python -m sora_ros.nodes.world_model --ros-args -p model_path:=models/default -r image:=/camera/image_raw

Threads: the image callback puts the frame in a one-slot mailbox (`LatestSlot`); an encoder
thread encodes the newest frame, publishes ~/latents and adds it to the context; a rollout
thread rolls out each new context as the rate allows (`RolloutGate`) and publishes
~/futures. ~/rollout has its own callback group. Lifecycle: configure loads the model (a bad
one fails the transition with the reason), activate subscribes and starts the threads,
deactivate stops them and forgets the context; autostart does both at start-up.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from sora_ros.core.context import Context, Verdict
from sora_ros.core.image import DEFAULT_MAX_PIXELS, ImageConversionError, compressed_to_rgb, image_to_rgb
from sora_ros.core.paths import default_model_dir
from sora_ros.core.requests import MAX_HORIZON, MAX_PENDING_CALLS, MAX_SAMPLER_STEPS, MAX_SAMPLES, RequestError, \
    check_request
from sora_ros.core.scheduling import LatestSlot, RolloutGate, Workers
from sora_ros.core.stats import Counters, LatencyWindow, RateMeter, Throttle, node_entries
from sora_ros.core.twist import twist_indices, twist_vector
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.nodes import messages as m
from sora_ros.nodes import spin_lifecycle
from sora_ros.runtime.engine import ModelDirError, NonFiniteOutputError, WorldModelEngine
from sora_ros.runtime.latents import LatentsError, latent_from_bytes, model_id
from sora_ros.runtime.pipeline import BusyError, FrameRefusedError, NoContextError, RolloutOutcome, \
    RolloutSettings, StaleContextError, WorldModelPipeline
from sora_ros.srv import Rollout

ROLES = ("world_model", "encoder", "predictor")
WORKER_POLL_S = 0.2  # worker threads wake at least this often to notice a stop request
RELIABLE_DEPTH = 5  # ~/futures and ~/latents for a subscriber that needs every message
WARNING_THROTTLE_S = 5.0
STAGES = ("convert", "encode", "camera_to_futures")
MAX_IMAGE_PIXELS_LIMIT = 1 << 28  # the largest pixel budget the parameter accepts (16384 x 16384)
# Executor threads: two for subscriptions, timers and lifecycle, plus one per ~/rollout call that may
# wait for the engine (the pipeline refuses more as busy), so waiting calls never starve the rest.
EXECUTOR_THREADS = 2 + MAX_PENDING_CALLS
# ~/rollout's requests are kept until taken (keep-all): with keep-last 10, the default, a burst of
# 20 calls lost 9-10 of them without an answer.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
REFUSALS = {RequestError: "bad_request", NoContextError: "no_context", StaleContextError: "stale_context",
            BusyError: "busy", NonFiniteOutputError: "nonfinite_output"}  # the pipeline times rollout, step and decode


class WorldModelNode(LifecycleNode):
    """See the module docstring. `role` is one of ROLES and the default node name."""

    def __init__(self, role: str = "world_model") -> None:
        super().__init__(role)
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.role, self.encodes, self.predicts = role, role != "predictor", role != "encoder"
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(lambda _params: self._apply(self._read_settings()))
        self.pipeline: WorldModelPipeline | None = None
        self.model, self.counters, self.frames_in = "", Counters(), RateMeter()
        self.latency = {stage: LatencyWindow() for stage in STAGES}
        self._throttle, self._workers = Throttle(WARNING_THROTTLE_S), Workers()
        self._slot, self._gate = LatestSlot(), RolloutGate(self.get_parameter("rollout_rate").value)
        self._command: tuple[np.ndarray, float] | None = None  # (A,) in model order, monotonic time
        self._twist_indices: list[int] = []
        self._inputs, self._outputs, self._service, self._rollouts = [], {}, None, 0
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.get_parameter("diagnostics_period_s").value, self._publish_diagnostics)
        # A clock that jumps back (a bag replayed in a loop under use_sim_time) starts a new context;
        # switching to sim time is not a jump (the stamps check handles it).
        self._jump_handler = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-self.get_parameter("jump_back_s").value),
                          on_clock_change=False),
            post_callback=lambda _jump: self._reset_context("the node clock jumped back"))

    def _declare_parameters(self) -> None:
        p, f, i, plain = self.declare_parameter, m.float_descriptor, m.int_descriptor, m.plain_descriptor
        p("model_path", str(default_model_dir() or ""), plain("model directory (model.json + ONNX graphs)"))
        p("providers", ["CPU"], plain("ONNX Runtime execution providers in order: TensorRT, CUDA, CPU"))
        p("qos_depth", 1, i("keep-last depth of the camera subscription (sensor-data QoS)", 1, 100, True))
        p("autostart", True, plain("configure and activate at start-up; exit 1 if configure fails"))
        p("diagnostics_period_s", 1.0, f("seconds between /diagnostics messages", 0.1, 60.0, True))
        p("watchdog_timeout_s", 1.0, f("camera silence (s) that turns diagnostics to ERROR", 0.05, 600.0))
        p("max_context_age_s", 0.0, f("~/rollout refuses (stale_context) when the newest camera frame is older; "
                                      "0 = watchdog_timeout_s", 0.0, 600.0))
        p("jump_back_s", 1.0, f("a stamp (or clock) this far behind the newest one is a clock jump: the context "
                                "restarts", 0.01, 3600.0, True))
        if self.encodes:
            p("compressed", False, plain("subscribe image/compressed (JPEG/PNG) instead of image"))
            p("max_image_pixels", DEFAULT_MAX_PIXELS, i("pixel budget (width x height) of a camera image, checked "
                                                        "on its header before decoding; over it: "
                                                        "drop/image_too_large", 1, MAX_IMAGE_PIXELS_LIMIT))
        # The predictor's parameters, declared in every role so one params file serves all three.
        p("horizon", 0, i("predicted frames per live rollout; 0 = the model's default", 0, MAX_HORIZON))
        p("rollout_rate", 10.0, f("most live rollouts per second", 0.1, 60.0))
        p("samples", 1, i("samples per live rollout; > 1 gives per-frame uncertainty", 1, MAX_SAMPLES))
        p("sampler_steps", 0, i("sampler steps per frame, live and ~/rollout; 0 = the model's default",
                                0, MAX_SAMPLER_STEPS))
        p("deadline_ms", 0.0, f("time budget of a live rollout or a ~/rollout call, decoding included; over it, "
                                "fewer steps / fewer decoded frames; 0 = none", 0.0, 10000.0))
        p("cmd_vel_stamped", False, plain("cmd_vel is geometry_msgs/TwistStamped (else Twist)"))
        p("cmd_vel_timeout_s", 0.5, f("a cmd_vel older than this no longer counts", 0.0, 600.0))
        p("no_command_action", "zero", plain("action assumed without a fresh cmd_vel: zero (stand still) or "
                                             "unknown (footage without commands)", read_only=False))

    def _check_parameters(self, parameters: list) -> SetParametersResult:
        """Refuse what the descriptors cannot express (rclpy checks the ranges itself)."""
        try:
            self._read_settings({parameter.name: parameter.value for parameter in parameters})
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _read_settings(self, changes: dict | None = None) -> RolloutSettings:
        """The rollout settings with `changes` applied. Raises ValueError on bad values."""
        value = lambda name: (changes or {}).get(name, self.get_parameter(name).value)  # noqa: E731
        return RolloutSettings(value("horizon"), value("samples"), value("sampler_steps"), value("deadline_ms"),
                               value("no_command_action"))

    def _apply(self, settings: RolloutSettings) -> None:
        self._gate.set_rate(self.get_parameter("rollout_rate").value)
        if self.pipeline is not None:
            self.pipeline.settings = settings

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        path = self.get_parameter("model_path").value
        if not path:
            self.get_logger().error("configure failed: model_path is empty and the package has no models/default")
            return TransitionCallbackReturn.FAILURE
        try:
            settings = self._read_settings()
        except ValueError as error:  # from a params file: rclpy's ranges cannot check every rule
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        try:
            engine = WorldModelEngine(path, self.get_parameter("providers").value)
            self._twist_indices = twist_indices(engine.info.action_names)
            self.pipeline = WorldModelPipeline(engine, self.get_parameter("jump_back_s").value)
        except (ModelDirError, ValueError) as error:
            self.get_logger().error(f"configure failed: model {path}: {error}")
            return TransitionCallbackReturn.FAILURE
        self.model, info = model_id(engine.info), engine.info
        self._apply(settings)
        pub, reliable = self.create_lifecycle_publisher, QoSProfile(depth=RELIABLE_DEPTH)
        if self.encodes:
            self._outputs["latents"] = pub(PatchLatents, "~/latents", reliable)
        if self.predicts:
            self._outputs["futures"] = pub(FutureFrames, "~/futures", reliable)
            self._outputs["predicted"] = pub(Image, "~/predicted/image", qos_profile_sensor_data)
            self._outputs["comparison"] = pub(Image, "~/comparison/image", qos_profile_sensor_data)
            self._service = self.create_service(Rollout, "~/rollout", self._serve_rollout, qos_profile=SERVICE_QOS,
                                                callback_group=ReentrantCallbackGroup())
        self.get_logger().info(f"configured: model {self.model} from {path} ({info.image_size[1]}x{info.image_size[0]}, "
                               f"K={info.context_frames}, dt={info.dt:g} s, actions {list(info.action_names)}) "
                               f"on {engine.providers}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        sensor = QoSProfile(depth=self.get_parameter("qos_depth").value,
                            reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)
        sub = self.create_subscription
        if self.encodes:
            kind, topic = (CompressedImage, "image/compressed") if self.get_parameter("compressed").value \
                else (Image, "image")
            self._inputs.append(sub(kind, topic, self._on_image, sensor))
        if self.role == "predictor":
            self._inputs.append(sub(PatchLatents, "latents", self._on_latents_msg, QoSProfile(depth=RELIABLE_DEPTH)))
        if self.predicts:
            stamped = self.get_parameter("cmd_vel_stamped").value
            self._inputs.append(sub(TwistStamped if stamped else Twist, "cmd_vel", self._on_cmd_vel, 10))
        self._gate = RolloutGate(self.get_parameter("rollout_rate").value)
        self._workers.start(([self._encode_loop] if self.encodes else []) + ([self._rollout_loop] if self.predicts else []))
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.stop_workers()
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs.clear()
        self._reset_context("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs.clear()
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        self.pipeline = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.stop_workers()
        return TransitionCallbackReturn.SUCCESS

    def stop_workers(self) -> None:
        self._slot.close()
        self._gate.close()
        self._workers.stop()
        self.counters.add("drop/superseded", self._slot.superseded)  # the next activation gets a new slot
        self._slot = LatestSlot()

    # --- inputs (executor thread: store and return) -----------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.frames_in.tick()
        self._slot.put((msg, time.monotonic()))

    def _on_cmd_vel(self, msg: Twist | TwistStamped) -> None:
        vector = twist_vector(msg.twist if isinstance(msg, TwistStamped) else msg)
        if not np.isfinite(vector).all():
            self.counters.add("drop/nonfinite_cmd_vel")
            return
        self._command = (vector[self._twist_indices], time.monotonic())

    def _on_latents_msg(self, msg: PatchLatents) -> None:
        self.frames_in.tick()
        try:
            latent = latent_from_bytes(bytes(msg.data), msg.dtype, (msg.channels, msg.height, msg.width),
                                       msg.model_id, self.pipeline.info, self.model)
        except LatentsError as error:
            self._drop("foreign_latents", str(error))
            return
        self._add_frame(m.stamp_ns(msg.header), msg.header.frame_id, latent, time.monotonic(), real=None)

    # --- encoder thread ---------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while self._workers.running:
            if (item := self._slot.take(WORKER_POLL_S)) is not None:
                self._guarded("encode", self._encode, *item)

    def _encode(self, msg: Image | CompressedImage, receipt_s: float) -> None:
        start = time.perf_counter()
        budget = self.get_parameter("max_image_pixels").value
        try:
            convert = compressed_to_rgb if isinstance(msg, CompressedImage) else image_to_rgb
            rgb = convert(msg, budget)  # (H0, W0, 3)
            converted = time.perf_counter()
            fitted, latent = self.pipeline.encode(rgb)  # (H, W, 3), (C, h, w)
        except ImageConversionError as error:
            return self._drop(error.reason, str(error))
        except FrameRefusedError as error:
            return self._drop("image_too_small", str(error))
        except NonFiniteOutputError as error:
            return self._drop("nonfinite_output", str(error))
        self.latency["convert"].add(1e3 * (converted - start))
        self.latency["encode"].add(1e3 * (time.perf_counter() - converted))
        stamp, frame_id = m.stamp_ns(msg.header), msg.header.frame_id
        self._outputs["latents"].publish(m.patch_latents(latent, stamp, frame_id, self.model, self.pipeline.info))
        self.counters.add("published/latents")
        if self.predicts:
            self._add_frame(stamp, frame_id, latent, receipt_s, real=fitted)

    # --- context (encoder thread or executor) -----------------------------------------------

    def _add_frame(self, stamp: int, frame_id: str, latent: np.ndarray, receipt_s: float,
                   real: np.ndarray | None) -> None:
        verdict = self.pipeline.observe(stamp, frame_id, latent, receipt_s)
        if verdict in (Verdict.DUPLICATE_STAMP, Verdict.OUT_OF_ORDER_STAMP):
            return self._drop(verdict.value, f"frame stamped {stamp} ns is not newer than the newest one")
        if verdict is Verdict.RESET:
            self.counters.add("reset/clock_jump")
            self.get_logger().warning("image stamps jumped back: context restarted (bag loop or clock reset?)")
        context = self.pipeline.latest_context()
        if context is not None:
            self._gate.announce(context.version)
        self._publish_prediction_for(stamp, frame_id, latent, real)

    def _reset_context(self, why: str) -> None:
        if self.pipeline is not None:
            self.pipeline.reset()
            self.counters.add("reset/clock_jump" if "clock" in why else "reset/other")
            self.get_logger().info(f"context reset: {why}")

    def _publish_prediction_for(self, stamp: int, frame_id: str, latent: np.ndarray, real: np.ndarray | None) -> None:
        """~/predicted/image and the comparison for a real frame, from an earlier rollout's prediction of it."""
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

    # --- rollouts: the live thread and ~/rollout ----------------------------------------------

    def _rollout_loop(self) -> None:
        while self._workers.running:
            if self._gate.wait(WORKER_POLL_S) and (context := self.pipeline.latest_context()) is not None:
                self._guarded("rollout", self._rollout, context)

    def _guarded(self, stage: str, work, *args) -> None:
        """Run one unit of work; an unexpected error is counted and logged, and the thread goes on."""
        try:
            work(*args)
        except Exception as error:  # a bug or a surprise must not stop the node's inference
            self.counters.add(f"error/{stage}")
            self.get_logger().error(f"{stage} failed: {type(error).__name__}: {error}")

    def _rollout(self, context: Context) -> None:
        command = self._command
        timeout_s = self.get_parameter("cmd_vel_timeout_s").value
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
        self._log_notes(outcome)
        latency_s = time.monotonic() - context.receipt_s
        self._outputs["futures"].publish(m.future_frames(outcome, 0, self.model, self.pipeline.info, latency_s))
        self.latency["camera_to_futures"].add(1e3 * latency_s)
        self.counters.add("published/futures")

    def _serve_rollout(self, request: Rollout.Request, response: Rollout.Response) -> Rollout.Response:
        """~/rollout: one FutureFrames per candidate, or success=False and the reason."""
        start = time.perf_counter()
        self.counters.add("service/calls")
        try:
            checked = check_request(np.asarray(request.actions, np.float32), request.candidates, request.horizon,
                                    request.action_dim, request.samples, request.seed, request.return_images,
                                    self.pipeline.info.action_dim)
            max_age_s = self.get_parameter("max_context_age_s").value or self.get_parameter("watchdog_timeout_s").value
            outcome = self.pipeline.what_if(checked, max_age_s=max_age_s)
        except tuple(REFUSALS) as error:
            reason = REFUSALS[type(error)]
            self.counters.add(f"service/refused/{reason}")
            self.get_logger().warning(f"~/rollout refused: {error}")
            response.success, response.message = False, str(error)
            return response
        total_s = time.perf_counter() - start
        response.futures = [m.future_frames(outcome, n, self.model, self.pipeline.info, total_s)
                            for n in range(checked.candidates)]
        response.success, response.message = True, "; ".join(outcome.notes)
        response.rollout_ms, response.decode_ms, response.total_ms = outcome.rollout_ms, outcome.decode_ms, 1e3 * total_s
        return response

    def _log_notes(self, outcome: RolloutOutcome) -> None:
        if outcome.notes and self._throttle.ready("deadline"):  # one line per period, not per rollout
            self.get_logger().info(f"rollout: {'; '.join(outcome.notes)}")

    # --- diagnostics ------------------------------------------------------------------------

    def _drop(self, reason: str, detail: str) -> None:
        self.counters.add(f"drop/{reason}")
        if self._throttle.ready(reason):  # the first of each reason, then one per period
            self.get_logger().warning(f"dropped ({reason}): {detail}")

    def _publish_diagnostics(self) -> None:
        counters, latency, pipeline = self.counters.snapshot(), dict(self.latency), self.pipeline
        counters["drop/superseded"] = counters.get("drop/superseded", 0) + self._slot.superseded
        if pipeline is not None:
            counters.update(pipeline.counters.snapshot())
            latency.update(pipeline.latency)
        step_ms = pipeline.costs["live"].step_ms if pipeline is not None else 0.0
        entries = node_entries(self.get_name(), self._state_machine.current_state[1], self.frames_in,
                               self.get_parameter("watchdog_timeout_s").value, counters, latency,
                               {"model": self.model or "(none)", "sampler_steps_estimate_ms": f"{step_ms:.2f}"})
        self._diagnostics.publish(m.diagnostic_array(entries, self.model, self.get_clock().now().nanoseconds))


def run(role: str, args: list[str] | None = None) -> int:
    """Run a node of `role` until Ctrl-C, SIGTERM or shutdown; 1 if autostart's configure failed."""
    return spin_lifecycle(lambda: WorldModelNode(role), args, EXECUTOR_THREADS)


def main(args: list[str] | None = None) -> int:
    """The `world_model` executable."""
    return run("world_model", sys.argv if args is None else args)


if __name__ == "__main__":
    raise SystemExit(main())
