"""What the three world-model roles share: the lifecycle node that loads the model into a
WorldModelPipeline, the parameters, the worker threads and /diagnostics. The roles add
their inputs, outputs and loops through the hooks below (cooperatively, so `world_model`
is simply `encoder` + `predictor` in one process): sora_ros/nodes/encoder.py,
predictor.py and world_model.py.

~/model_info (std_msgs/String, JSON; latched: transient local, reliable) describes the
loaded model for late subscribers.

Lifecycle: configure loads and checks the model (a bad one fails the transition with the
reason), activate subscribes and starts the worker threads, deactivate stops them and
forgets the context; with `autostart` (the default) the node does both at start-up and
exits 1 if configure fails, so a launch names it.
"""

from __future__ import annotations

from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import String

from sora_ros.core.paths import default_model_dir
from sora_ros.core.requests import MAX_HORIZON, MAX_SAMPLER_STEPS, MAX_SAMPLES
from sora_ros.core.scheduling import Workers
from sora_ros.core.stats import CounterWindow, Counters, InputBounds, LatencyWindow, RateMeter, Throttle, \
    node_entries
from sora_ros.core.units import NS_PER_S
from sora_ros.core.twist import AUTO
from sora_ros.nodes import messages as m
from sora_ros.nodes.parameters import IntegersForDoubles
from sora_ros.runtime.engine import ModelDirError, WorldModelEngine
from sora_ros.runtime.latents import model_id
from sora_ros.runtime.pipeline import RolloutSettings, WorldModelPipeline

WORKER_POLL_S = 0.2  # worker threads wake at least this often to notice a stop request
RELIABLE_DEPTH = 5  # ~/futures and ~/latents for a subscriber that needs every message
WARNING_THROTTLE_S = 5.0
# The camera subscription's reliability parameter -> the QoS policy.
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
ROLLOUT_TRIGGERS = ("newest", "arrival")  # sora_ros.core.scheduling.RolloutGate's on_arrival False / True
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


class ModelNode(IntegersForDoubles, LifecycleNode):
    """The shared part of every role; `name` is the default node name.

    Hooks a role extends (calling super()): `_declare_role_parameters`, `_create_outputs`,
    `_create_inputs`, `_loops`, `_wake_workers`, `_counters`, `_encoded`.
    """

    ENCODES = False  # subscribes to the camera and publishes ~/latents
    PREDICTS = False  # rolls out: ~/futures, ~/rollout

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(lambda _params: self._apply(self._read_settings()))
        self.pipeline: WorldModelPipeline | None = None
        window_s = self.get_parameter("diagnostics_window_s").value
        self.model, self.counters, self.frames_in = "", Counters(), RateMeter(window_s)
        self._recent = CounterWindow(window_s)
        self.latency: dict[str, LatencyWindow] = {}
        self._throttle, self._workers = Throttle(WARNING_THROTTLE_S), Workers()
        self._inputs, self._outputs, self._servers = [], {}, []
        self._model_info = None  # a plain publisher: latched at configure, readable while inactive
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Housekeeping runs on the steady clock, as the watchdog measures silence: under use_sim_time a
        # node clock without /clock (none yet, or a bag that ended) would stop the timer, and with it
        # every /diagnostics message, the "no camera frame" ERROR included.
        self.steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.get_parameter("diagnostics_period_s").value, self._publish_diagnostics,
                          clock=self.steady_clock)
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
        p("dynamics_precision", "auto", plain("dynamics graphs: auto (int8 where the model has them and the CPU "
                                              "runs them, else float32), float32, or int8 (the model's quantized "
                                              "ones, `sora-ros quantize`: faster on a CPU)", read_only=True))
        p("qos_depth", 1, i("keep-last depth of the camera subscription (sensor-data QoS)", 1, 100, True))
        p("autostart", True, plain("configure and activate at start-up; exit 1 if configure fails"))
        p("diagnostics_period_s", 1.0, f("seconds between /diagnostics messages", 0.1, 60.0, True))
        p("watchdog_timeout_s", 1.0, f("camera silence (s) that turns diagnostics to ERROR", 0.05, 600.0))
        p("diagnostics_window_s", 5.0, f("window (s) of the input rate, stamp age and recent drops in diagnostics; "
                                         "a WARN for drops clears after a clean window", 0.5, 600.0, True))
        p("expected_rate_min_hz", 0.0, f("camera rate (Hz) below which diagnostics warn; 0 = no bound", 0.0, 1000.0))
        p("expected_rate_max_hz", 0.0, f("camera rate (Hz) above which diagnostics warn; 0 = no bound", 0.0, 1000.0))
        p("max_stamp_age_s", 1.0, f("|node clock - header stamp| (s) above which diagnostics warn", 0.001, 1e6))
        p("image_reliability", "best_effort", plain("camera subscription reliability: best_effort (sensor data; "
                                                    "matches every camera) or reliable (matches only reliable "
                                                    "cameras, recovers lost fragments)", read_only=True))
        p("jump_back_s", 1.0, f("a stamp (or clock) this far behind the newest one is a clock jump: the context "
                                "restarts", 0.01, 3600.0, True))
        p("aspect_policy", "refuse", plain("a camera whose aspect ratio lies outside the model's range: refuse "
                                           "(drop its frames, counted as drop/aspect_ratio) or crop (centre-crop "
                                           "it into the range)", read_only=True))
        # The predictor's parameters, declared in every role so one params file serves all three.
        p("horizon", 0, i("predicted frames per live rollout; 0 = the model's default", 0, MAX_HORIZON))
        p("rollout_rate", 10.0, f("most live rollouts per second", 0.1, 60.0))
        p("rollout_trigger", "arrival", plain("when a live rollout starts: arrival (on each frame that arrives while "
                                              "no rollout runs, once the rate allows; one that came during a rollout "
                                              "waits for the next frame, and is rolled out if none comes within 1.5 "
                                              "camera periods) or newest (on the newest frame as soon as the last "
                                              "rollout ends: more futures per second, each older)", read_only=False))
        p("what_if_yields", False, plain("a ~/rollout call lets live rollouts run between its frames: ~/futures "
                                         "wait for one what-if frame, not a whole what-if, and what-ifs take longer",
                                         read_only=False))
        p("samples", 1, i("samples per live rollout; > 1 gives per-frame uncertainty", 1, MAX_SAMPLES))
        p("sampler_steps", 0, i("sampler steps per frame, live and ~/rollout; 0 = the model's default",
                                0, MAX_SAMPLER_STEPS))
        p("deadline_ms", 0.0, f("time budget of a live rollout or a ~/rollout call, decoding included; over it, "
                                "fewer steps / fewer decoded frames; 0 = none", 0.0, 10000.0))
        p("cmd_vel_type", AUTO, plain("cmd_vel message type: auto (the type its publishers use, found by discovery), "
                                      "twist or twist_stamped"))
        p("max_context_age_s", 0.0, f("~/rollout refuses (stale_context) when the newest camera frame is older; "
                                      "0 = watchdog_timeout_s", 0.0, 600.0))
        p("cmd_vel_timeout_s", 0.5, f("a cmd_vel older than this no longer counts", 0.0, 600.0))
        p("no_command_action", "zero", plain("action assumed without a fresh cmd_vel: zero (stand still) or "
                                             "unknown (footage without commands)", read_only=False))
        p("output_size", [0, 0], plain("[height, width] of predicted frames; [0, 0] = the camera's own (with an "
                                       "anchored decoder; else the model's input size)", read_only=False))
        self._declare_role_parameters()

    def _check_parameters(self, parameters: list) -> SetParametersResult:
        """Refuse what the descriptors cannot express (rclpy checks the ranges itself)."""
        changes = {parameter.name: parameter.value for parameter in parameters}
        try:
            self._check_choices(changes)
            self._read_settings(changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _check_choices(self, changes: dict | None = None) -> None:
        """Raise ValueError when a parameter with a fixed set of values has another (`changes`
        applied; configure checks the values given at start-up, which no set-callback sees)."""
        for name, choices in (("image_reliability", tuple(RELIABILITY)), ("rollout_trigger", ROLLOUT_TRIGGERS)):
            value = (changes or {}).get(name, self.get_parameter(name).value)
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")

    def _read_settings(self, changes: dict | None = None) -> RolloutSettings:
        """The rollout settings with `changes` applied. Raises ValueError on bad values."""
        value = lambda name: (changes or {}).get(name, self.get_parameter(name).value)  # noqa: E731
        return RolloutSettings(value("horizon"), value("samples"), value("sampler_steps"), value("deadline_ms"),
                               value("no_command_action"), tuple(int(v) for v in value("output_size")),
                               value("what_if_yields"))

    def _apply(self, settings: RolloutSettings) -> None:
        if self.pipeline is not None:
            self.pipeline.settings = settings

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._check_choices()  # from the command line or a params file: no set-callback saw them
        except ValueError as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        path = self.get_parameter("model_path").value
        try:
            if not path:
                raise ValueError("model_path is empty and the package has no models/default")
            settings = self._read_settings()  # from a params file: rclpy's ranges cannot check every rule
            engine = WorldModelEngine(path, self.get_parameter("providers").value,
                                      self.get_parameter("dynamics_precision").value)
            if engine.risk is not None:  # a camera grid the head never trained on: said in this node's log
                engine.risk.warn = self.get_logger().warning
            self.pipeline = WorldModelPipeline(engine, self.get_parameter("jump_back_s").value,
                                               self.get_parameter("aspect_policy").value)
            self._create_outputs(QoSProfile(depth=RELIABLE_DEPTH))
            self._model_info = self.create_publisher(String, "~/model_info", LATCHED)
            self._model_info.publish(m.model_info(model_id(engine.info), engine.info, engine.providers, engine.precision))
        except (ModelDirError, ValueError) as error:
            self.get_logger().error(f"configure failed: model {path}: {error}")
            self.on_cleanup(state)
            return TransitionCallbackReturn.FAILURE
        self.model, info = model_id(engine.info), engine.info
        self._apply(settings)
        low, high = info.patch_grid.aspect_range
        self.get_logger().info(f"configured: model {self.model} from {path} ({info.image_size[1]}x{info.image_size[0]} "
                               f"pixel budget, camera aspect ratios {low:.3g} to {high:.3g}, "
                               f"K={info.context_frames}, dt={info.dt:g} s, actions {list(info.action_names)}) "
                               f"on {engine.providers}, {engine.precision} dynamics")
        if engine.precision_note:
            self.get_logger().warning(engine.precision_note)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        sensor = QoSProfile(depth=self.get_parameter("qos_depth").value,
                            reliability=RELIABILITY[self.get_parameter("image_reliability").value],
                            durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)
        self._create_inputs(sensor)
        self._workers.start(self._loops())
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
        for service in self._servers:
            self.destroy_service(service)
        if self._model_info is not None:
            self.destroy_publisher(self._model_info)
            self._model_info = None
        self._outputs.clear()
        self._servers.clear()
        self.pipeline = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.stop_workers()
        return TransitionCallbackReturn.SUCCESS

    def stop_workers(self) -> None:
        self._wake_workers()
        self._workers.stop()

    # --- hooks a role extends ---------------------------------------------------------------

    def _declare_role_parameters(self) -> None:
        pass

    def _create_outputs(self, reliable: QoSProfile) -> None:
        """Publishers and services, at configure (they need the model)."""

    def _create_inputs(self, sensor: QoSProfile) -> None:
        """Subscriptions, at activate; `sensor` is the camera QoS."""

    def _loops(self) -> list[Callable[[], None]]:
        """The worker loops to run while active."""
        return []

    def _wake_workers(self) -> None:
        """Wake loops blocked on a hand-off, so a stop takes effect at once."""

    def _counters(self) -> dict[str, int]:
        """The counters to report, the pipeline's included."""
        counters = self.counters.snapshot()
        if self.pipeline is not None:
            counters.update(self.pipeline.counters.snapshot())
        return counters

    def _encoded(self, stamp_ns: int, frame_id: str, latent, receipt_s: float, real, fitted=None) -> None:
        """A frame was encoded (a predictor in the same process adds it to its context); `real`
        is the camera's frame, `fitted` the same as the model saw it (both None for latents from
        another node)."""

    # --- shared work --------------------------------------------------------------------------

    def _stamp_age_s(self, stamp_ns: int) -> float:
        """Node clock (sim time under use_sim_time) minus a header stamp, in seconds."""
        return (self.get_clock().now().nanoseconds - stamp_ns) / NS_PER_S

    def _guarded(self, stage: str, work, *args) -> None:
        """Run one unit of work; an unexpected error is counted and logged, and the thread goes on."""
        try:
            work(*args)
        except Exception as error:  # a bug or a surprise must not stop the node's inference
            self.counters.add(f"error/{stage}")
            self.get_logger().error(f"{stage} failed: {type(error).__name__}: {error}")

    def _malformed_stamp(self, msg_header) -> bool:
        """Whether a header's stamp is no time (nanosec not below 10^9): dropped as stamp_out_of_range,
        since the outputs' stamps, normalised, would not equal it."""
        stamp = msg_header.stamp
        if stamp.nanosec < NS_PER_S:
            return False
        self._drop("stamp_out_of_range", f"frame stamped {stamp.sec} s + {stamp.nanosec} ns: nanosec must be "
                                         f"below {NS_PER_S}")
        return True

    def _drop(self, reason: str, detail: str) -> None:
        self.counters.add(f"drop/{reason}")
        if self._throttle.ready(reason):  # the first of each reason, then one per period
            self.get_logger().warning(f"dropped ({reason}): {detail}")

    def _reset_context(self, why: str) -> None:
        if self.pipeline is not None:
            self.pipeline.reset()
            self.counters.add("reset/clock_jump" if "clock" in why else "reset/other")
            self.get_logger().info(f"context reset: {why}")

    def _publish_diagnostics(self) -> None:
        pipeline = self.pipeline
        latency = {**self.latency, **(pipeline.latency if pipeline is not None else {})}
        step_ms = pipeline.costs["live"].step_ms if pipeline is not None else 0.0
        value = lambda name: self.get_parameter(name).value  # noqa: E731
        bounds = InputBounds(value("watchdog_timeout_s"), value("expected_rate_min_hz"), value("expected_rate_max_hz"),
                             value("max_stamp_age_s"))
        counters = self._counters()
        entries = node_entries(self.get_name(), self._state_machine.current_state[1], self.frames_in, bounds,
                               counters, self._recent.update(counters), latency,
                               {"model": self.model or "(none)", "sampler_steps_estimate_ms": f"{step_ms:.2f}"})
        self._diagnostics.publish(m.diagnostic_array(entries, self.model, self.get_clock().now().nanoseconds))
