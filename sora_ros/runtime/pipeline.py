"""The world-model pipeline: camera frame -> context -> rollout planned under a deadline ->
rollout -> decode -> predictions remembered for comparison with the real frames.

The one object the live node (~/futures), its ~/rollout service and `sora-ros eval` drive,
so that a behaviour (sampler steps, deadline, caps, stamps of future frames) is written
once. Like DIAMOND's `WorldModelEnv`, it holds no ROS types: stamps are integer
nanoseconds, images uint8 RGB arrays.

    pipeline = WorldModelPipeline(WorldModelEngine("models/default"))
    fitted, latent = pipeline.encode(rgb)                  # (H, W, 3), (C, h, w)
    pipeline.observe(stamp_ns, "camera", latent, image=rgb)
    outcome = pipeline.predict(pipeline.latest_context(), command, seed=1, decode_all=True)
    outcome.forecasts[0].frames                            # (H, H0, W0, 3) stamped origin + k * dt
    outcome.forecasts[0].risk                              # (H,) P(blocked soon), None without a risk head

Decoding: with a model that has an anchored decoder and camera frames given to `observe`, every
predicted frame is the camera's last real frame warped (and filled in where the warp has no
source) at the camera's resolution, or `settings.output_size`; otherwise the VAE decoder's image
at the model's resolution. The model's input follows the camera's aspect ratio
(sora_ros.core.patch_grid); a camera outside the model's aspect range is refused
("aspect_ratio"), or with aspect_policy "crop" centre-cropped into it. A camera whose resolution
changes, or latents on another grid, restart the context ("reset/resolution"); so does a frame whose
frame_id is not the previous frame's ("reset/frame_id": two cameras on one topic must not share a context).

Thread-safe: frames are observed from one thread while rollouts run on others (the engine
serialises rollouts; with `what_if_yields` a live rollout may run between a what-if's frames);
each caller kind (live, service) learns its own costs. It counts what
the deadline cut ("deadline/*" live, "service/deadline/*"), the action values it clamped to
the model's range ("input/action_out_of_range", "service/input/action_out_of_range"), the
what-if calls answered from an older context after a lost frame ("service/older_context") and
times the live stages. At most MAX_PENDING_CALLS what-if calls run or wait at once; more are refused.
With an anchored decoder, what decoding needs from a context is computed in a worker thread
while the rollout runs (`AnchorFrames.prepare`).

Legend: N candidates, S samples, H horizon, K context frames, A action dim, C/h/w latent grid.
"""

from __future__ import annotations

import math
import numbers
import operator
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from sora_ros.core.actions import NO_COMMAND_CHOICES, assumed_actions, clamp_to_range
from sora_ros.core.comparison import FutureMemory, Prediction, comparison_image
from sora_ros.core.context import Context, ContextBuffer, Verdict, future_stamps, stamp_in_range
from sora_ros.core.deadline import CostModel, RolloutPlan, plan_rollout
from sora_ros.core.patch_grid import ASPECT_POLICIES, AspectError
from sora_ros.core.preprocess import fit_frame
from sora_ros.core.regions import centred_window
from sora_ros.core.requests import MAX_HORIZON, MAX_PENDING_CALLS, MAX_SAMPLER_STEPS, MAX_SAMPLES, RequestError, \
    RolloutRequest, as_integers, unmasked
from sora_ros.core.stats import Counters, LatencyWindow
from sora_ros.core.timegrid import max_offset_ns
from sora_ros.core.units import NS_PER_MS, NS_PER_S
from sora_ros.runtime.anchor_frames import AnchorFrames, DecodeInputs
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import ModelInfo
from sora_ros.runtime.risk import NO_RISK_HEAD

# A source image smaller than the model input by more than this factor is refused, not upscaled.
MAX_UPSCALE = 4
LIVE, SERVICE = "live", "service"
# Largest output_size side a setting may ask for.
MAX_OUTPUT_SIDE = 4096


def camera_view(info: ModelInfo, rgb: np.ndarray, aspect_policy: str) -> np.ndarray:
    """The part of a camera frame (H0, W0, 3) a model sees: all of it when its aspect ratio lies in
    the model's range (or the model's grid is fixed: fit_frame centre-crops every camera to it, as
    such models always did), else under aspect_policy "crop" its centred window in the range, a view.

    Raises:
        AspectError: outside the range under aspect_policy "refuse"."""
    height, width = rgb.shape[:2]
    grid = info.patch_grid
    if not info.grid_follows_camera or grid.admits(height, width):
        return rgb
    if aspect_policy == "refuse":
        grid.tokens(height, width)  # raises, saying why and what to do
    top, left, crop_h, crop_w = centred_window(height, width, grid.clamp(height, width))
    return rgb[top : top + crop_h, left : left + crop_w]


def as_predicted(info: ModelInfo, rgb: np.ndarray, aspect_policy: str) -> np.ndarray:
    """A real camera frame (H0, W0, 3) as the model's prediction of it comes: its `camera_view`, at
    the camera's resolution with an anchored decoder, else fitted to the model input of its grid;
    what eval and the live reports score predictions against.

    Raises:
        AspectError: as `camera_view`."""
    view = camera_view(info, rgb, aspect_policy)
    size = info.prediction_size(view.shape[:2])
    return view if size is None else fit_frame(view, size)


class FrameRefusedError(ValueError):
    """A camera frame the pipeline will not encode; the message says why.

    Attributes:
        reason: the drop counter's name: "image_too_small" or "aspect_ratio".
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NoContextError(RuntimeError):
    """No complete context yet (too few frames dt apart since start or the last reset)."""


class StaleContextError(RuntimeError):
    """The newest context frame is older than the caller's limit: a prediction from it would be stale."""


class BusyError(RuntimeError):
    """MAX_PENDING_CALLS ~/rollout calls are already running or waiting; this one is refused now."""


@dataclass(frozen=True)
class RolloutSettings:
    """What a rollout may cost, the same for live rollouts and ~/rollout calls.

    Attributes:
        horizon: predicted frames of a live rollout, 1..MAX_HORIZON; 0 = the model's default.
        samples: samples of a live rollout, 1..MAX_SAMPLES (> 1 gives per-frame uncertainty).
        sampler_steps: per predicted frame, 1..MAX_SAMPLER_STEPS; 0 = the model's default.
        deadline_ms: time budget of one rollout, decoding included; 0 = none.
        no_command_action: live action without a fresh command: "zero" or "unknown" (NaN).
        output_size: (H, W) of predicted frames; (0, 0) = the camera's own resolution (with an
            anchored decoder; else the model's).
        what_if_yields: a what-if lets live rollouts run between its frames (a live rollout then
            waits for one frame of it, not all of it; the what-if takes longer). README, "When a
            rollout starts".

    Raises:
        ValueError: a value outside its range.
    """

    horizon: int = 0
    samples: int = 1
    sampler_steps: int = 0
    deadline_ms: float = 0.0
    no_command_action: str = "zero"
    output_size: tuple[int, int] = (0, 0)
    what_if_yields: bool = False

    def __post_init__(self) -> None:
        as_integers(self, ("horizon", "samples", "sampler_steps"), ValueError)
        try:
            object.__setattr__(self, "output_size", tuple(operator.index(side) for side in self.output_size))
        except TypeError:
            raise ValueError(f"output_size must be two integers (H, W), got {self.output_size!r}") from None
        if len(self.output_size) != 2 or not (all(0 < v <= MAX_OUTPUT_SIDE for v in self.output_size)
                                              or tuple(self.output_size) == (0, 0)):
            raise ValueError(f"output_size must be (0, 0) (the camera's) or (H, W) in 1..{MAX_OUTPUT_SIDE}, "
                             f"got {self.output_size}")
        if not (0 <= self.horizon <= MAX_HORIZON and 1 <= self.samples <= MAX_SAMPLES
                and 0 <= self.sampler_steps <= MAX_SAMPLER_STEPS and 0 <= self.deadline_ms < float("inf")):
            raise ValueError(f"rollout settings out of range: {self} (horizon 0..{MAX_HORIZON}, samples "
                             f"1..{MAX_SAMPLES}, sampler_steps 0..{MAX_SAMPLER_STEPS}, deadline_ms >= 0)")
        if self.no_command_action not in NO_COMMAND_CHOICES:
            raise ValueError(f"no_command_action must be one of {NO_COMMAND_CHOICES}, got {self.no_command_action!r}")


@dataclass(frozen=True)
class Forecast:
    """One candidate's predicted future.

    Attributes:
        stamps_ns: (H,) the time each frame predicts: origin + k * dt, k = 1..H.
        latents: float32 (H, C, h, w), the mean over samples.
        frames: uint8 (H, Hi, Wi, 3) RGB when every frame was decoded, else None.
        uncertainty: float32 (H,), the spread between samples (0 with one sample).
        actions: float32 (H, A) assumed, NaN rows unknown; None for an unconditioned model.
        risk: float32 (H,) in [0, 1]: per predicted frame k, the risk head's probability that the
            robot is blocked (commanded forward, no progress) within the next
            `info.risk["horizon_steps"]` steps, given the predicted latents up to frame k (the
            last `info.risk["frames"]`, context included) and the action applied at the frame
            before it (actions[k]); the mean over samples; NaN where
            the action is unknown. None when the model directory has no risk head (older models).
    """

    stamps_ns: tuple[int, ...]
    latents: np.ndarray
    frames: np.ndarray | None
    uncertainty: np.ndarray
    actions: np.ndarray | None
    risk: np.ndarray | None = None


@dataclass(frozen=True)
class RolloutOutcome:
    """A rollout of N candidates from one context, and what it cost.

    Attributes:
        context: the context it started from (origin stamp, frame_id, receipt time).
        forecasts: one per candidate.
        plan: the steps and decoded frames chosen under the deadline.
        decoded: uint8 (Hi, Wi, 3) RGB frames by flat index n * H + k (every frame, the
            planned subset under deadline pressure, or none).
        samples: S.
        rollout_ms, decode_ms: wall time of the two stages.
        missed_deadline: took longer than the budget despite the plan.
        notes: what was cut or missed, as sentences (empty when nothing).
        synthesised: flat index -> share of the frame's pixels taken from the synthesis rather
            than the warped last frame (anchored decoding only; empty otherwise).
    """

    context: Context
    forecasts: list[Forecast]
    plan: RolloutPlan
    decoded: dict[int, np.ndarray]
    samples: int
    rollout_ms: float
    decode_ms: float
    missed_deadline: bool
    notes: tuple[str, ...]
    synthesised: dict[int, float] = field(default_factory=dict)


class WorldModelPipeline:
    """See the module docstring.

    Args:
        engine: the loaded model.
        jump_back_s: a stamp this far behind the newest is a clock jump: the context restarts.
        aspect_policy: one of ASPECT_POLICIES, for a camera outside the model's aspect range.

    Raises:
        ValueError: an unknown aspect policy.
    """

    def __init__(self, engine: WorldModelEngine, jump_back_s: float = 1.0, aspect_policy: str = "refuse") -> None:
        if aspect_policy not in ASPECT_POLICIES:
            raise ValueError(f"aspect_policy must be one of {ASPECT_POLICIES}, got {aspect_policy!r}")
        self.aspect_policy = aspect_policy
        self.engine, self.info = engine, engine.info
        self.settings = RolloutSettings()
        self.dt_ns = round(self.info.dt * NS_PER_S)
        self.memory = FutureMemory(max_offset_ns(self.dt_ns))
        self.costs = {LIVE: CostModel(), SERVICE: CostModel()}
        self.counters = Counters()
        self.latency = {stage: LatencyWindow() for stage in ("rollout", "step", "decode")}  # live rollouts, ms
        self._buffer = ContextBuffer(self.info.context_frames, self.info.dt, jump_back_s)
        self._lock = threading.Lock()
        self._anchor = None if engine.anchor is None else AnchorFrames(engine)  # the frames predictions warp
        self._preparer = ThreadPoolExecutor(1, thread_name_prefix="anchor_prepare")
        self._pending_calls = threading.BoundedSemaphore(MAX_PENDING_CALLS)
        self._action_low, self._action_high = (np.asarray(bound, np.float32) for bound in self.info.action_range)

    # --- camera frame -> context --------------------------------------------------------------

    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fit a camera frame to its model input (the grid of its aspect ratio) and encode it.

        Args:
            rgb: uint8 (H0, W0, 3) RGB in [0, 255].

        Returns:
            The fitted frame, uint8 (H, W, 3), and its latent, float32 (C, h, w).

        Raises:
            FrameRefusedError: empty, smaller than the model input by more than MAX_UPSCALE, or an
                aspect ratio outside the model's range under aspect_policy "refuse".
            ValueError: not a uint8 (H0, W0, 3) array.
            NonFiniteOutputError: the encoder produced NaN/Inf.
        """
        view = self.camera_view(rgb)
        fitted = fit_frame(view, self.info.input_size(view.shape[:2]))  # (H, W, 3)
        return fitted, self.engine.encode(fitted[None])[0]

    def camera_view(self, rgb: np.ndarray) -> np.ndarray:
        """`camera_view` of this pipeline's model and aspect policy.

        Raises:
            FrameRefusedError: empty or smaller than its model input by more than MAX_UPSCALE
                ("image_too_small": the message gives the size needed), or outside the model's range
                under aspect_policy "refuse". ValueError: not a uint8 (H0, W0, 3) array."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"a camera frame must be a uint8 (H, W, 3) RGB array, got "
                             f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")
        if 0 in rgb.shape:
            raise FrameRefusedError("image_too_small", f"an empty {rgb.shape[1]}x{rgb.shape[0]} image")
        try:
            view = camera_view(self.info, rgb, self.aspect_policy)
        except AspectError as error:
            raise FrameRefusedError("aspect_ratio", str(error)) from None
        height, width = self.info.input_size(view.shape[:2])
        if view.shape[0] * MAX_UPSCALE < height or view.shape[1] * MAX_UPSCALE < width:
            raise FrameRefusedError("image_too_small", f"{rgb.shape[1]}x{rgb.shape[0]} image, too small for the model: "
                                    f"it takes {width}x{height} for it and upscales at most {MAX_UPSCALE}x, so it needs "
                                    f"at least {math.ceil(width / MAX_UPSCALE)}x{math.ceil(height / MAX_UPSCALE)}; "
                                    "use footage (camera, video) of that size or larger")
        return view

    def observe(self, stamp_ns: int, frame_id: str, latent: np.ndarray, receipt_s: float = 0.0,
                image: np.ndarray | None = None, fitted: np.ndarray | None = None) -> Verdict:
        """Offer an encoded frame (float32 (C, h, w)) to the context; a clock jump back also
        forgets the remembered predictions. Returns what the context did with it.

        Args:
            image: the camera frame the latent came from, uint8 (H0, W0, 3) RGB, so predictions
                can be anchored on it at its resolution (None: latents only, e.g. from another node).
                A size other than the previous frame's restarts the context (counted as
                "reset/resolution") rather than warping one camera's frame with another's motion.
            frame_id: the frame's header frame_id; one other than the previous frame's (another
                camera on the topic) restarts the context, counted as "reset/frame_id".
            fitted: `image` as `encode` fitted it, uint8 (H, W, 3), if at hand (else fitted here).

        Returns:
            What the context did with the frame; STAMP_OUT_OF_RANGE (a stamp below 0 or past
            MAX_STAMP_NS) changes nothing.

        Raises:
            TypeError: a stamp that is not an integer (bool included). ValueError: a latent that is
                not a finite float (C, h, w) on one of the model's grids, an `image` whose grid is
                not the latent's, a `fitted` that is not uint8 at the image's input size, or a
                receipt time that is not finite. FrameRefusedError: `image` as `camera_view` refuses.
        """
        if isinstance(stamp_ns, (bool, np.bool_)):
            raise TypeError(f"stamp_ns must be integer nanoseconds, got {stamp_ns!r}")
        try:
            stamp_ns = operator.index(stamp_ns)  # a Python int: numpy's uint64 wraps in stamp arithmetic
        except TypeError:
            raise TypeError(f"stamp_ns must be integer nanoseconds, got {stamp_ns!r}") from None
        if not isinstance(latent, np.ndarray) or latent.dtype.kind != "f":
            raise ValueError(f"an observed latent must be a float array, got {getattr(latent, 'dtype', type(latent))}")
        self.engine.check_latents("an observed latent", latent.shape, 3)
        latent = latent.astype(np.float32, copy=False)
        if not np.isfinite(latent).all():
            raise ValueError("an observed latent contains NaN or Inf")
        if not (isinstance(receipt_s, numbers.Real) and math.isfinite(receipt_s)):
            raise ValueError(f"receipt_s must be a finite monotonic time, got {receipt_s!r}")
        if not stamp_in_range(stamp_ns):
            return Verdict.STAMP_OUT_OF_RANGE
        if self._anchor is None:
            image = None  # nothing to anchor on: keep no frames
        if image is not None:
            image = self.camera_view(image)
            size = self.info.input_size(image.shape[:2])
            grid = tuple(side // self.info.downsample for side in size)
            if latent.shape[1:] != grid:
                raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image encodes to a {grid[1]}x{grid[0]} latent "
                                 f"grid, the latent given is {latent.shape[2]}x{latent.shape[1]}: not this image's")
            if fitted is None:
                fitted = fit_frame(image, size)
            elif not isinstance(fitted, np.ndarray) or fitted.dtype != np.uint8 or fitted.shape != (*size, 3):
                raise ValueError(f"fitted must be the image as encode fits it, uint8 {(*size, 3)}, got "
                                 f"{getattr(fitted, 'dtype', type(fitted).__name__)} {getattr(fitted, 'shape', '')}")
        other_camera = False
        with self._lock:
            newest = self._buffer.newest_latent()
            if ((image is not None and self._anchor.camera_shape() not in (None, image.shape))
                    or (newest is not None and newest.shape != latent.shape)):
                self._forget()
                self.counters.add("reset/resolution")
            elif self._buffer.newest_frame_id() not in (None, frame_id):  # another camera: never mix their frames
                self._forget()
                self.counters.add("reset/frame_id")
                other_camera = True
            verdict = self._buffer.add(stamp_ns, latent, frame_id, receipt_s)
            if verdict in (Verdict.ACCEPTED, Verdict.RESET) and self._buffer.off_grid():
                self.counters.add("context/off_grid")  # kept, but no context: diagnostics say why
            if verdict is Verdict.RESET and self._anchor is not None:
                self._anchor.clear()
            if verdict in (Verdict.ACCEPTED, Verdict.RESET) and image is not None:
                complete = self._buffer.newest_complete()
                self._anchor.keep(stamp_ns, image, fitted, () if complete is None else complete.stamps_ns[-2:])
        if verdict is Verdict.RESET or other_camera:
            self.memory.clear()
        return verdict

    def _forget(self) -> None:
        """Empty the context and the kept frames (caller holds the lock)."""
        self._buffer.reset()
        if self._anchor is not None:
            self._anchor.clear()

    def latest_context(self) -> Context | None:
        """The context ending at the newest frame, or None (see ContextBuffer.latest)."""
        with self._lock:
            return self._buffer.latest()

    def reset(self) -> None:
        """Forget the context and the remembered predictions (deactivation, clock jump)."""
        with self._lock:
            self._forget()
        self.memory.clear()

    def prediction_for(self, stamp_ns: int, real: np.ndarray | None, latent: np.ndarray,
                       compare: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
        """What an earlier live rollout predicted for a real frame, for ~/predicted/image.

        Args:
            stamp_ns: the real frame's stamp.
            real: uint8 (H0, W0, 3) the camera frame (compared in its `camera_view`), or None to decode `latent`.
            latent: float32 (C, h, w) of the real frame.
            compare: also compose the real | predicted | error image.

        Returns:
            (predicted uint8 (H, W, 3), comparison uint8 (H, 3W, 3) or None), or None when no
            rollout predicted this stamp.
        """
        prediction = self.memory.match(stamp_ns)
        if prediction is None:
            return None
        if not compare:
            return prediction.frame, None
        real = self.engine.decode(latent[None])[0] if real is None else self.camera_view(real)
        shown = prediction.frame
        if shown.shape != real.shape:  # e.g. a latents-only frame beside anchored predictions
            shown = cv2.resize(shown, (real.shape[1], real.shape[0]), interpolation=cv2.INTER_LINEAR)
        return prediction.frame, comparison_image(real, shown)

    # --- rollouts -----------------------------------------------------------------------------

    def predict(self, context: Context, command: np.ndarray | None, *, seed: int, decode_all: bool,
                decode_first: bool = False) -> RolloutOutcome:
        """The live rollout: the latest command held over the horizon, decoded frames remembered.

        Args:
            context: where to start.
            command: float32 (A,) in model order, or None without a fresh one (then the
                settings' no_command_action applies).
            seed: the sampler's noise seed.
            decode_all: decode every frame (someone wants the images).
            decode_first: decode frame 1 even under deadline pressure (it is shown now).

        Raises:
            ValueError: a command that is not (A,), or a masked array with masked values.
            StampRangeError: the predicted frames' times would pass MAX_STAMP_NS.
        """
        command = unmasked(command, "command", ValueError)
        if command is not None and np.shape(command) != (self.info.action_dim,):
            raise ValueError(f"command must be ({self.info.action_dim},) in model order "
                             f"({', '.join(self.info.action_names) or 'an unconditioned model: None'}), "
                             f"got shape {np.shape(command)}")
        horizon = self.settings.horizon or self.info.default_horizon
        actions = assumed_actions(command, horizon, self.info.action_dim, self.settings.no_command_action)
        actions, clamp_notes = self._clamped(LIVE, None if actions is None else actions[None])  # a cmd_vel of Inf too
        request = RolloutRequest(actions, 1, horizon, self.settings.samples, seed, decode_all)
        essential = (0,) if decode_first else ()
        outcome = self._run(LIVE, context, request, tuple(range(horizon)) if decode_all else essential, essential,
                            clamp_notes)
        stamps = outcome.forecasts[0].stamps_ns
        self.memory.add([Prediction(stamps[k], context.newest_stamp_ns, k + 1, frame)
                         for k, frame in outcome.decoded.items()])
        return outcome

    def what_if(self, request: RolloutRequest, context: Context | None = None,
                max_age_s: float = 0.0) -> RolloutOutcome:
        """A ~/rollout call (or an offline evaluation): every candidate from `context` (default:
        the newest complete one, `ContextBuffer.newest_complete`: after a lost camera frame, an
        older one, said in a note and counted as "service/older_context"), every frame decoded if
        images are asked for. Waits while another rollout
        runs; at most MAX_PENDING_CALLS calls run or wait at once.

        Args:
            max_age_s: refuse when the latest context's newest frame was received longer ago
                than this (seconds, monotonic clock); 0 = no limit. Not applied to a given context.

        Raises:
            RequestError: actions with another A than the model's (RolloutRequest checks the rest).
            ValueError: max_age_s negative, NaN or infinite.
            NoContextError: no complete context yet. StaleContextError: older than max_age_s.
            BusyError: MAX_PENDING_CALLS calls already running or waiting.
            StampRangeError: the predicted frames' times would pass MAX_STAMP_NS.
        """
        if not 0 <= max_age_s < float("inf"):
            raise ValueError(f"max_age_s must be a finite number of seconds >= 0, got {max_age_s!r}")
        if request.action_dim != self.info.action_dim:
            raise RequestError(f"the request has {request.action_dim} action values per step; the model takes "
                               f"{self.info.action_dim}" + (f" ({', '.join(self.info.action_names)})"
                                                             if self.info.action_dim else ": pass actions=None"))
        notes = ()
        if context is None:
            with self._lock:
                context, newest_ns = self._buffer.newest_complete(), self._buffer.newest_stamp_ns()
            if context is None:
                raise NoContextError(f"no context yet: the model needs {self.info.context_frames} camera frames "
                                     f"{self.info.dt:g} s apart before it can predict")
            if context.newest_stamp_ns != newest_ns:
                behind_ms = (newest_ns - context.newest_stamp_ns) / NS_PER_MS
                notes = (f"predicted from the context ending {behind_ms:.0f} ms before the newest camera frame: a "
                         "frame lost on the way leaves a step of the newest one's grid without a frame",)
            age_s = time.monotonic() - context.receipt_s
            if 0 < max_age_s < age_s:
                raise StaleContextError(f"the newest camera frame in the context is {age_s:.2f} s old, over the "
                                        f"{max_age_s:g} s limit (max_context_age_s): the camera has gone quiet, or "
                                        "its frames are dropped (/diagnostics drop/*); no prediction")
        if not self._pending_calls.acquire(blocking=False):
            raise BusyError(f"busy: {MAX_PENDING_CALLS} ~/rollout calls are already running or waiting; "
                            f"try again later")
        try:
            if notes:  # answered from an older context (refusals are counted by the caller)
                self.counters.add("service/older_context")
            frames = tuple(range(request.candidates * request.horizon)) if request.return_images else ()
            actions, clamp_notes = self._clamped(SERVICE, request.actions)
            outcome = self._run(SERVICE, context, replace(request, actions=actions), frames, frames, clamp_notes)
            return replace(outcome, notes=notes + outcome.notes)
        finally:
            self._pending_calls.release()

    def _clamped(self, kind: str, actions: np.ndarray | None) -> tuple[np.ndarray | None, tuple[str, ...]]:
        """Actions (N, H, A) clamped to the model's action range (NaN rows kept: unknown), the
        clamped values counted and described in a note."""
        if actions is None:
            return None, ()
        clamped, outside = clamp_to_range(actions, self._action_low, self._action_high)  # (N, H, A)
        if not outside:
            return actions, ()
        self.counters.add(f"{'' if kind == LIVE else kind + '/'}input/action_out_of_range", outside)
        ranges = ", ".join(f"{name} [{low:g}, {high:g}]" for name, low, high
                           in zip(self.info.action_names, self._action_low, self._action_high))
        return clamped, (f"{outside} action value(s) outside the model's range clamped to it: {ranges}",)

    def _run(self, kind: str, context: Context, request: RolloutRequest, wanted: tuple[int, ...],
             essential: tuple[int, ...], clamp_notes: tuple[str, ...]) -> RolloutOutcome:
        """Plan under the deadline, roll out, decode `wanted` (flat n * H + k indices), learn costs;
        `clamp_notes` say what `_clamped` changed in the request's actions."""
        settings, n, horizon, actions = self.settings, request.candidates, request.horizon, request.actions
        stamps = future_stamps(context.newest_stamp_ns, horizon, self.dt_ns)  # refused before any work
        cost, budget_ms = self.costs[kind], settings.deadline_ms
        default_steps = request.sampler_steps or settings.sampler_steps or self.info.sampler_steps
        predicted = n * request.samples * horizon  # frames the sampler produces
        plan = plan_rollout(cost, predicted, default_steps, wanted, essential, budget_ms)
        contexts = np.broadcast_to(context.latents, (n, *context.latents.shape))  # (N, K, C, h, w)
        preparing = (self._preparer.submit(self._anchor.prepare, context, max(i % horizon for i in plan.decode) + 1,
                                           self._output_hw())
                     if plan.decode and self._anchor is not None else None)  # the flows, beside the rollout
        result = self.engine.rollout(contexts, actions, horizon=horizon, samples=request.samples,
                                     seed=request.seed, steps=plan.steps,
                                     yields=kind == SERVICE and settings.what_if_yields)
        means = result.latents.mean(axis=1)  # (N, H, C, h, w)
        # One batched call over N x S x H windows (a few ms); the mean over samples, like the latents.
        risk = None if self.engine.risk is None else self.engine.risk.forecast(context.latents, result.latents,
                                                                                actions)  # (N, H)
        decode_start = time.perf_counter()
        prepared = None if preparing is None else preparing.result()  # its time beyond the rollout counts as decoding
        images, shares = (self._decode(context, means.reshape(-1, *means.shape[2:]), plan.decode, horizon, actions,
                                       prepared) if plan.decode else (None, {}))
        decode_ms = 1e3 * (time.perf_counter() - decode_start)  # images: (D, Hi, Wi, 3)
        rollout_ms = 1e3 * result.seconds
        cost.observe_rollout(rollout_ms, predicted, plan.steps)
        cost.observe_decode(decode_ms, len(plan.decode))
        missed = 0 < budget_ms < rollout_ms + decode_ms
        self._count(kind, plan, missed, rollout_ms / (predicted * plan.steps), rollout_ms, decode_ms)
        notes = clamp_notes + plan.notes + ((f"took {rollout_ms + decode_ms:.0f} ms, over the {budget_ms:g} ms budget",)
                              if missed else ())
        if risk is None and kind == SERVICE:  # a caller may expect FutureFrames.risk: say why it is empty
            notes += (NO_RISK_HEAD,)
        complete = images is not None and len(plan.decode) == n * horizon
        all_frames = images.reshape(n, horizon, *images.shape[1:]) if complete else None  # (N, H, Hi, Wi, 3)
        forecasts = [Forecast(stamps, means[i], None if all_frames is None else all_frames[i], result.uncertainty[i],
                              None if actions is None else actions[i], None if risk is None else risk[i])
                     for i in range(n)]
        decoded = {} if images is None else dict(zip(plan.decode, images))
        return RolloutOutcome(context, forecasts, plan, decoded, request.samples, rollout_ms, decode_ms, missed, notes,
                              shares)

    def _decode(self, context: Context, latents: np.ndarray, indices: tuple[int, ...], horizon: int,
                actions: np.ndarray | None, prepared: DecodeInputs | None) -> tuple[np.ndarray, dict[int, float]]:
        """uint8 (D, Ho, Wo, 3) images of latents[indices] (flat n * H + k): anchored on the last
        camera frame when the model and the kept frames allow, else the VAE decoder's; and, when
        anchored, each frame's share of synthesised (not warped) pixels by flat index. `actions`:
        float32 (N, H, A) of the rollout (NaN rows unknown) or None; `prepared`: what
        `AnchorFrames.prepare` computed beside the rollout, or None."""
        output_size = self._output_hw()
        anchored = None if self._anchor is None else self._anchor.decode(context, latents, indices, horizon, actions,
                                                                          output_size, prepared)
        # else, and for an output larger than the camera, resized here
        images, shares = anchored or (self.engine.decode(latents[list(indices)]), {})  # (D, H, W, 3) without
        if output_size is not None and images.shape[1:3] != output_size:
            images = np.stack([cv2.resize(image, output_size[::-1], interpolation=cv2.INTER_AREA) for image in images])
        return images, shares

    def _output_hw(self) -> tuple[int, int] | None:
        """settings.output_size, None for (0, 0) (the camera's)."""
        output_size = tuple(self.settings.output_size)
        return None if output_size == (0, 0) else output_size

    def _count(self, kind: str, plan: RolloutPlan, missed: bool, step_ms: float, rollout_ms: float,
               decode_ms: float) -> None:
        prefix = "" if kind == LIVE else f"{kind}/"
        for happened, name in ((plan.reduced_steps, "reduced_steps"), (plan.skipped_decode, "skipped_decode"),
                               (missed, "missed")):
            if happened:
                self.counters.add(f"{prefix}deadline/{name}")
        if kind == LIVE:
            self.latency["rollout"].add(rollout_ms)
            self.latency["step"].add(step_ms)
            if plan.decode:
                self.latency["decode"].add(decode_ms)
