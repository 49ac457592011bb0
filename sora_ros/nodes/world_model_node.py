"""The world-model lifecycle node, in three roles: `world_model` (encode and predict in one
process), `encoder` (camera -> ~/latents) and `predictor` (latents -> ~/futures, ~/rollout).

Threads: the executor only converts nothing and queues nothing: the image callback drops
the frame into a one-slot mailbox (`LatestSlot`) and returns. An encoder thread takes the
newest frame, converts, fits and encodes it, publishes ~/latents and adds it to the context.
A rollout thread starts a rollout whenever the context has a new frame and the rollout rate
allows (`RolloutGate`), plans it against the deadline, decodes what has subscribers and
publishes ~/futures. ~/rollout runs in its own callback group on the multi-threaded executor;
the engine serialises rollouts, so a service call and a live rollout never share buffers.

Lifecycle: configure loads and checks the model (a bad one fails the transition with the
reason); activate subscribes and starts the threads; deactivate stops them and forgets the
context. With autostart (the default) the node configures and activates itself, and exits
with code 1 if configure fails, so a launch names it.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from diagnostic_msgs.msg import DiagnosticArray

from sora_ros.image_conversion import FORMATS, ImageConversionError, compressed_to_rgb, image_to_rgb, numpy_to_image
from sora_ros.launch_file import LaunchFileError, package_share
from sora_ros.live import actions as live_actions
from sora_ros.live.comparison import FutureMemory, Prediction, comparison_image
from sora_ros.live.context import GRID_TOLERANCE, Context, ContextBuffer, Verdict
from sora_ros.live.deadline import CostModel, plan_rollout
from sora_ros.live.latents import LatentsError, latent_from_bytes, model_id
from sora_ros.live.scheduling import LatestSlot, RolloutGate
from sora_ros.live.stats import OK, WARN, Counters, LatencyWindow, RateMeter, StatusEntry, Throttle, \
    latency_values, watchdog_entry
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.nodes import live_messages as lm
from sora_ros.nodes.rollout_service import RolloutServer
from sora_ros.preprocess import fit_frame
from sora_ros.runtime.engine import ModelDirError, NonFiniteOutputError, WorldModelEngine
from sora_ros.srv import Rollout
from sora_ros.twist import twist_indices, twist_vector

ROLES = ("world_model", "encoder", "predictor")
# A source image smaller than the model input by more than this factor is refused, not upscaled.
MAX_UPSCALE = 4
# Worker threads wake at least this often to notice a stop request.
WORKER_POLL_S = 0.2
# Horizon 0 means the model's default; the cap keeps one rollout's cost bounded.
MAX_LIVE_HORIZON = 32
MAX_LIVE_SAMPLES = 8
MAX_SAMPLER_STEPS = 16
RELIABLE_DEPTH = 5  # ~/futures and ~/latents for a subscriber that needs every message
WARNING_THROTTLE_S = 5.0
INPUT_COUNTERS = ("drop/", "reset/")


@dataclass(frozen=True)
class LiveSettings:
    """The run-time changeable parameters, read by the worker threads as one snapshot."""

    horizon: int
    rollout_rate: float
    samples: int
    sampler_steps: int
    deadline_ms: float
    cmd_vel_timeout_s: float
    no_command_action: str
    watchdog_timeout_s: float


def default_model_path() -> str:
    """models/default of the installed package (or the source tree), '' when there is none."""
    try:
        return str(package_share("sora_ros") / "models" / "default")
    except LaunchFileError:
        return ""


class WorldModelNode(LifecycleNode):
    """See the module docstring.

    Args:
        role: one of ROLES; the default node name is the role.
    """

    def __init__(self, role: str = "world_model") -> None:
        super().__init__(role)
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.role = role
        self.encodes = role in ("world_model", "encoder")
        self.predicts = role in ("world_model", "predictor")
        self._declare_parameters()
        self.settings = self._read_settings()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(lambda _params: setattr(self, "settings", self._read_settings()))

        self.engine: WorldModelEngine | None = None
        self.model = ""
        self.counters = Counters()
        self.frames_in = RateMeter()
        self.latency = {stage: LatencyWindow() for stage in ("convert", "encode", "rollout", "step", "decode",
                                                             "camera_to_futures")}
        self.cost = CostModel()
        self._throttle = Throttle(WARNING_THROTTLE_S)
        self._slot: LatestSlot = LatestSlot()
        self._gate = RolloutGate(self.settings.rollout_rate)
        self._buffer: ContextBuffer | None = None
        self._buffer_lock = threading.Lock()
        self._memory: FutureMemory | None = None
        self._command: tuple[np.ndarray, float] | None = None  # (A,) in model order, monotonic time
        self._twist_indices: list[int] = []
        self._threads: list[threading.Thread] = []
        self._running = threading.Event()
        self._inputs: list = []
        self._service = None
        self._outputs: dict[str, object] = {}
        self._rollouts = 0

        self._service_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.get_parameter("diagnostics_period_s").value, self._publish_diagnostics)
        # A clock that jumps back (a bag replayed in a loop under use_sim_time) starts a new context.
        self._jump_handler = self.get_clock().create_jump_callback(
            # on_clock_change=False: switching to sim time is not a jump (the stamps check handles it).
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-self.get_parameter("jump_back_s").value),
                          on_clock_change=False),
            post_callback=lambda _jump: self._reset_context("the node clock jumped back"),
        )

    # --- parameters -------------------------------------------------------------------------

    def _declare_parameters(self) -> None:
        p = self.declare_parameter
        p("model_path", default_model_path(), lm.plain_descriptor("model directory (model.json + ONNX graphs)"))
        p("providers", ["CPU"], lm.plain_descriptor("ONNX Runtime execution providers in order: TensorRT, CUDA, CPU"))
        p("qos_depth", 1, lm.int_descriptor("keep-last depth of the camera subscription (sensor-data QoS)",
                                            1, 100, True))
        p("autostart", True, lm.plain_descriptor("configure and activate at start-up; exit 1 if configure fails"))
        p("diagnostics_period_s", 1.0, lm.float_descriptor("seconds between /diagnostics messages", 0.1, 60.0, True))
        p("watchdog_timeout_s", 1.0, lm.float_descriptor("camera silence (s) that turns diagnostics to ERROR",
                                                         0.05, 600.0))
        p("jump_back_s", 1.0, lm.float_descriptor(
            "a stamp (or clock) this far behind the newest one is a clock jump: the context restarts",
            0.01, 3600.0, True))
        if self.encodes:
            p("compressed", False, lm.plain_descriptor("subscribe image/compressed (JPEG/PNG) instead of image"))
        # The predictor's parameters, declared in every role so one params file serves all three.
        p("horizon", 0, lm.int_descriptor("predicted frames per live rollout; 0 = the model's default",
                                          0, MAX_LIVE_HORIZON))
        p("rollout_rate", 10.0, lm.float_descriptor("most live rollouts per second", 0.1, 60.0))
        p("samples", 1, lm.int_descriptor("samples per live rollout; > 1 gives per-frame uncertainty",
                                          1, MAX_LIVE_SAMPLES))
        p("sampler_steps", 0, lm.int_descriptor("sampler steps per frame; 0 = the model's default",
                                                0, MAX_SAMPLER_STEPS))
        p("deadline_ms", 0.0, lm.float_descriptor(
            "time budget of a live rollout or a ~/rollout call, decoding included; over it, fewer steps / fewer decoded frames; 0 = none",
            0.0, 10000.0))
        p("cmd_vel_stamped", False, lm.plain_descriptor("cmd_vel is geometry_msgs/TwistStamped (else Twist)"))
        p("cmd_vel_timeout_s", 0.5, lm.float_descriptor("a cmd_vel older than this no longer counts", 0.0, 600.0))
        p("no_command_action", "zero", lm.plain_descriptor(
            "action assumed without a fresh cmd_vel: zero (stand still) or unknown (footage without commands)",
            read_only=False))

    @staticmethod
    def _check_parameters(parameters: list) -> SetParametersResult:
        """Refuse values the descriptors cannot express (ranges are checked by rclpy itself)."""
        for parameter in parameters:
            if parameter.name == "no_command_action" and parameter.value not in live_actions.NO_COMMAND_CHOICES:
                return SetParametersResult(successful=False, reason=f"no_command_action must be one of "
                                                                    f"{live_actions.NO_COMMAND_CHOICES}")
        return SetParametersResult(successful=True)

    def _read_settings(self) -> LiveSettings:
        value = lambda name: self.get_parameter(name).value  # noqa: E731
        no_command = value("no_command_action")
        if no_command not in live_actions.NO_COMMAND_CHOICES:
            self.get_logger().error(f"no_command_action {no_command!r} is not one of "
                                    f"{live_actions.NO_COMMAND_CHOICES}; using 'zero'")
            no_command = "zero"
        settings = LiveSettings(value("horizon"), value("rollout_rate"), value("samples"), value("sampler_steps"),
                                value("deadline_ms"), value("cmd_vel_timeout_s"), no_command,
                                value("watchdog_timeout_s"))
        if hasattr(self, "_gate"):
            self._gate.set_rate(settings.rollout_rate)
        return settings

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        path = self.get_parameter("model_path").value
        if not path:
            self.get_logger().error("configure failed: model_path is empty and the package has no models/default")
            return TransitionCallbackReturn.FAILURE
        try:
            engine = WorldModelEngine(path, self.get_parameter("providers").value)
            self._twist_indices = twist_indices(engine.info.action_names)
        except (ModelDirError, ValueError) as error:
            self.get_logger().error(f"configure failed: model {path}: {error}")
            return TransitionCallbackReturn.FAILURE
        self.engine, self.model = engine, model_id(engine.info)
        info = engine.info
        self._buffer = ContextBuffer(info.context_frames, info.dt, self.get_parameter("jump_back_s").value)
        self._memory = FutureMemory(round(GRID_TOLERANCE * info.dt * 1e9))
        reliable = QoSProfile(depth=RELIABLE_DEPTH)
        pub = self.create_lifecycle_publisher
        if self.encodes:
            self._outputs["latents"] = pub(PatchLatents, "~/latents", reliable)
        if self.predicts:
            self._outputs["futures"] = pub(FutureFrames, "~/futures", reliable)
            self._outputs["predicted"] = pub(Image, "~/predicted/image", qos_profile_sensor_data)
            self._outputs["comparison"] = pub(Image, "~/comparison/image", qos_profile_sensor_data)
            server = RolloutServer(engine, self.model, self._latest_context, self.counters, self.get_logger(),
                                   budget_ms=lambda: self.settings.deadline_ms)
            self._service = self.create_service(Rollout, "~/rollout", server.handle, callback_group=self._service_group)
        self.get_logger().info(f"configured: model {self.model} from {path} ({info.image_size[1]}x{info.image_size[0]}, "
                               f"K={info.context_frames}, dt={info.dt:g} s, actions {list(info.action_names)}) "
                               f"on {engine.providers}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        depth = self.get_parameter("qos_depth").value
        sensor = QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)
        if self.encodes:
            compressed = self.get_parameter("compressed").value
            kind, topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
            self._inputs.append(self.create_subscription(kind, topic, self._on_image, sensor))
        if self.role == "predictor":
            self._inputs.append(self.create_subscription(PatchLatents, "latents", self._on_latents_msg,
                                                                QoSProfile(depth=RELIABLE_DEPTH)))
        if self.predicts:
            stamped = self.get_parameter("cmd_vel_stamped").value
            self._inputs.append(self.create_subscription(
                TwistStamped if stamped else Twist, "cmd_vel", self._on_cmd_vel, 10))
        self._gate = RolloutGate(self.settings.rollout_rate)
        self._running.set()
        workers = ([self._encode_loop] if self.encodes else []) + ([self._rollout_loop] if self.predicts else [])
        self._threads = [threading.Thread(target=w, name=w.__name__, daemon=True) for w in workers]
        for thread in self._threads:
            thread.start()
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
        self.engine = self._buffer = self._memory = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.stop_workers()
        return TransitionCallbackReturn.SUCCESS

    def stop_workers(self) -> None:
        self._running.clear()
        self._slot.close()
        self.counters.add("drop/superseded", self._slot.superseded)  # the next activation gets a new slot
        self._slot = LatestSlot()
        self._gate.close()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    # --- inputs (executor thread: store and return) -----------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.frames_in.tick()
        self._slot.put((msg, time.monotonic()))

    def _on_cmd_vel(self, msg: Twist | TwistStamped) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        vector = twist_vector(twist)
        if not np.isfinite(vector).all():
            self.counters.add("drop/nonfinite_cmd_vel")
            return
        self._command = (vector[self._twist_indices], time.monotonic())

    def _on_latents_msg(self, msg: PatchLatents) -> None:
        self.frames_in.tick()
        try:
            latent = latent_from_bytes(bytes(msg.data), msg.dtype, (msg.channels, msg.height, msg.width),
                                       msg.model_id, self.engine.info, self.model)
        except LatentsError as error:
            self._drop("foreign_latents", str(error))
            return
        self._add_frame(lm.stamp_ns(msg.header), msg.header.frame_id, latent, time.monotonic(), real=None)

    # --- encoder thread ---------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while self._running.is_set():
            item = self._slot.take(WORKER_POLL_S)
            if item is not None:
                self._guarded("encode", self._encode, *item)

    def _encode(self, msg: Image | CompressedImage, receipt_s: float) -> None:
        info = self.engine.info
        start = time.perf_counter()
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)  # (H0, W0, 3)
        except ImageConversionError as error:
            unknown = isinstance(msg, Image) and msg.encoding not in FORMATS
            self._drop("unknown_encoding" if unknown else "malformed_image", str(error))
            return
        height, width = info.image_size
        if rgb.shape[0] * MAX_UPSCALE < height or rgb.shape[1] * MAX_UPSCALE < width:
            self._drop("image_too_small", f"{rgb.shape[1]}x{rgb.shape[0]} image; the model takes {width}x{height} "
                       f"and upscales at most {MAX_UPSCALE}x")
            return
        fitted = fit_frame(rgb, info.image_size)  # (H, W, 3)
        converted = time.perf_counter()
        try:
            latent = self.engine.encode(fitted[None])[0]  # (C, h, w)
        except NonFiniteOutputError as error:
            self._drop("nonfinite_output", str(error))
            return
        self.latency["convert"].add(1e3 * (converted - start))
        self.latency["encode"].add(1e3 * (time.perf_counter() - converted))
        stamp, frame_id = lm.stamp_ns(msg.header), msg.header.frame_id
        self._outputs["latents"].publish(lm.patch_latents(latent, stamp, frame_id, self.model, info))
        self.counters.add("published/latents")
        if self.predicts:
            self._add_frame(stamp, frame_id, latent, receipt_s, real=fitted)

    # --- context (encoder thread or executor) -----------------------------------------------

    def _add_frame(self, stamp: int, frame_id: str, latent: np.ndarray, receipt_s: float,
                   real: np.ndarray | None) -> None:
        with self._buffer_lock:
            verdict = self._buffer.add(stamp, latent, frame_id, receipt_s)
            context = self._buffer.latest()
        if verdict in (Verdict.DUPLICATE_STAMP, Verdict.OUT_OF_ORDER_STAMP):
            self._drop(verdict.value, f"frame stamped {stamp} ns is not newer than the newest one")
            return
        if verdict is Verdict.RESET:
            self._memory.clear()
            self.counters.add("reset/clock_jump")
            self.get_logger().warning("image stamps jumped back: context restarted (bag loop or clock reset?)")
        if context is not None:
            self._gate.announce(context.version)
        self._publish_prediction_for(stamp, frame_id, latent, real)

    def _latest_context(self) -> Context | None:
        if self._buffer is None:
            return None
        with self._buffer_lock:
            return self._buffer.latest()

    def _reset_context(self, why: str) -> None:
        if self._buffer is not None:
            with self._buffer_lock:
                self._buffer.reset()
            self._memory.clear()
            self.counters.add("reset/clock_jump" if "clock" in why else "reset/other")
            self.get_logger().info(f"context reset: {why}")

    def _publish_prediction_for(self, stamp: int, frame_id: str, latent: np.ndarray, real: np.ndarray | None) -> None:
        """~/predicted/image and the comparison for a real frame, from an earlier rollout's prediction of it."""
        predicted_pub, comparison_pub = self._outputs["predicted"], self._outputs["comparison"]
        wants_comparison = comparison_pub.get_subscription_count() > 0
        if predicted_pub.get_subscription_count() == 0 and not wants_comparison:
            return
        prediction = self._memory.match(stamp)
        if prediction is None:
            return
        header = lm.header(stamp, frame_id)
        predicted_pub.publish(numpy_to_image(prediction.frame, lm.RGB8, header))
        self.counters.add("published/predicted_image")
        if wants_comparison:
            if real is None:  # predictor role: the real frame as the model saw it
                real = self.engine.decode(latent[None])[0]
            comparison_pub.publish(numpy_to_image(comparison_image(real, prediction.frame), lm.RGB8, header))
            self.counters.add("published/comparison_image")

    # --- rollout thread ---------------------------------------------------------------------

    def _rollout_loop(self) -> None:
        while self._running.is_set():
            if not self._gate.wait(WORKER_POLL_S):
                continue
            context = self._latest_context()
            if context is not None:
                self._guarded("rollout", self._rollout, context, self.settings)

    def _guarded(self, stage: str, work, *args) -> None:
        """Run one unit of work; an unexpected error is counted and logged, and the thread goes on."""
        try:
            work(*args)
        except Exception as error:  # a bug or a surprise must not stop the node's inference
            self.counters.add(f"error/{stage}")
            self.get_logger().error(f"{stage} failed: {type(error).__name__}: {error}")

    def _assumed_command(self, settings: LiveSettings) -> np.ndarray | None:
        command = self._command
        if command is None or time.monotonic() - command[1] > settings.cmd_vel_timeout_s:
            return None
        return command[0]

    def _rollout(self, context: Context, settings: LiveSettings) -> None:
        info = self.engine.info
        horizon = settings.horizon or info.default_horizon
        steps = settings.sampler_steps or info.sampler_steps
        actions = live_actions.assumed_actions(self._assumed_command(settings), horizon, info.action_dim,
                                               settings.no_command_action)
        futures_pub = self._outputs["futures"]
        wants_frames = futures_pub.get_subscription_count() > 0
        shows_now = (self._outputs["predicted"].get_subscription_count()
                     + self._outputs["comparison"].get_subscription_count()) > 0
        essential = (0,) if shows_now else ()
        wanted = tuple(range(horizon)) if wants_frames else essential
        plan = plan_rollout(self.cost, horizon, steps, wanted, essential, settings.deadline_ms)
        self._rollouts += 1
        try:
            result = self.engine.rollout(context.latents, actions, horizon=horizon, samples=settings.samples,
                                         seed=self._rollouts, steps=plan.steps)
            mean = result.latents[0].mean(axis=0)  # (H, C, h, w)
            decode_start = time.perf_counter()
            decoded = self.engine.decode(mean[list(plan.decode)]) if plan.decode else None  # (D, Hi, Wi, 3)
        except NonFiniteOutputError as error:
            self._drop("nonfinite_output", str(error))
            return
        decode_ms = 1e3 * (time.perf_counter() - decode_start)
        rollout_ms = 1e3 * result.seconds
        self.cost.observe_rollout(rollout_ms, horizon, plan.steps)
        self.cost.observe_decode(decode_ms, len(plan.decode))
        self.latency["rollout"].add(rollout_ms)
        self.latency["step"].add(rollout_ms / (horizon * plan.steps))
        if plan.decode:
            self.latency["decode"].add(decode_ms)
        for note in plan.notes:
            if self._throttle.ready(note):
                self.get_logger().info(f"deadline: {note}")
        if plan.reduced_steps:
            self.counters.add("deadline/reduced_steps")
        if plan.skipped_decode:
            self.counters.add("deadline/skipped_decode")
        if settings.deadline_ms > 0 and rollout_ms + decode_ms > settings.deadline_ms:
            self.counters.add("deadline/missed")
        dt_ns = round(info.dt * 1e9)
        if decoded is not None:
            origin = context.newest_stamp_ns
            self._memory.add([Prediction(origin + (k + 1) * dt_ns, origin, k + 1, frame)
                              for k, frame in zip(plan.decode, decoded)])
        all_frames = decoded if decoded is not None and len(plan.decode) == horizon else None
        latency_s = time.monotonic() - context.receipt_s
        futures_pub.publish(lm.future_frames(
            origin_ns=context.newest_stamp_ns, frame_id=context.frame_id, model=self.model, info=info,
            latents=mean, frames=all_frames, uncertainty=result.uncertainty[0], actions=actions,
            samples=settings.samples, steps=plan.steps, latency_s=latency_s))
        self.latency["camera_to_futures"].add(1e3 * latency_s)
        self.counters.add("published/futures")

    # --- diagnostics ------------------------------------------------------------------------

    def _drop(self, reason: str, detail: str) -> None:
        self.counters.add(f"drop/{reason}")
        if self._throttle.ready(reason):  # the first of each reason, then one per period
            self.get_logger().warning(f"dropped ({reason}): {detail}")

    def _publish_diagnostics(self) -> None:
        name = self.get_name()
        counters = self.counters.snapshot()
        counters["drop/superseded"] = counters.get("drop/superseded", 0) + self._slot.superseded
        state = self._state_machine.current_state[1]
        # Input problems (drops, resets) beside the watchdog; outputs, deadline and service counts beside the latencies.
        inputs = {key: count for key, count in counters.items() if key.startswith(INPUT_COUNTERS)}
        entries = [watchdog_entry(f"{name}: input", self.frames_in, self.settings.watchdog_timeout_s, inputs)]
        values = latency_values(self.latency)
        values.update({key: str(count) for key, count in sorted(counters.items()) if key not in inputs})
        values.update(lifecycle_state=state, model=self.model or "(none)",
                      sampler_steps_estimate_ms=f"{self.cost.step_ms:.2f}")
        level, message = (OK, "active") if state == "active" else (WARN, f"lifecycle state {state}")
        entries.append(StatusEntry(f"{name}: inference", level, message, values))
        self._diagnostics.publish(lm.diagnostic_array(entries, self.model, self.get_clock().now().nanoseconds))


def run(role: str, args: list[str] | None = None) -> int:
    """Run a node of `role` until Ctrl-C or shutdown.

    Returns:
        0, or 1 when autostart is on and configure failed (the reason is logged).
    """
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # Ctrl-C as KeyboardInterrupt rather than rclpy's handler, which would invalidate the context
    # while the worker threads still publish: stop them first, then shut down.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, _interrupt)
    node = executor = None
    try:
        node = WorldModelNode(role)
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return 1
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop_workers()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _interrupt(_signum: int, _frame) -> None:
    """SIGTERM stops the node like Ctrl-C."""
    raise KeyboardInterrupt
