"""The world-model engine: ONNX Runtime sessions for a model directory, without torch.

    engine = WorldModelEngine("models/default", providers=["TensorRT", "CUDA", "CPU"])
    latents = engine.encode(frames)                     # uint8 (B, H, W, 3) -> (B, C, h, w)
    result = engine.rollout(latents[-K:], cmd_vel_plan, samples=4, seed=0)
    images = engine.decode(result.latents[0, 0])        # (H, C, h, w) -> uint8 (H, H_img, W_img, 3)

A process whose one thread runs the graphs back to back (an in-process planner) may call
`share_thread_pool()` before its first engine: see there.

Nothing here unpickles: model.json is JSON, the graphs are ONNX protobufs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sora_ros.core.scheduling import Turns
from sora_ros.runtime import sampler
from sora_ros.runtime.anchor import ANCHOR_GRAPH, AnchoredDecoder, anchor_signature
from sora_ros.runtime.int8_parity import RELATIVE_TOLERANCE, int8_parity
from sora_ros.runtime.model_dir import AUTO_PRECISION, GRAPH_FILES, INT8_GRAPH_FILES, ModelDirError, ModelInfo, \
    check_session, concrete_shape, expected_signatures, layer_kv_names, read_model_info
from sora_ros.runtime.risk import RISK_GRAPH, RiskHead, risk_signature

log = logging.getLogger(__name__)

# Short provider names accepted beside ONNX Runtime's own.
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CPU_PROVIDER = PROVIDER_ALIASES["cpu"]
DEFAULT_PROVIDERS = ("CPU",)
PIXEL_MAX = 255.0
# Batch sizes (candidates x samples, per latent grid) whose rollout buffers are kept at once.
MAX_BOUND_BATCHES = 4


class NonFiniteOutputError(RuntimeError):
    """A graph produced NaN or Inf; the result is withheld."""


@dataclass(frozen=True)
class RolloutResult:
    """Predicted latents and their spread.

    Attributes:
        latents: float32 (N, S, H, C, h, w): candidates, samples, horizon.
        uncertainty: float32 (N, H): standard deviation between samples, averaged over the
            latent cells of each predicted frame (0 when S = 1).
        seconds: wall time of the rollout.
    """

    latents: np.ndarray
    uncertainty: np.ndarray
    seconds: float


# What ONNX Runtime raises when a graph cannot run on its inputs (none derives from another).
ORT_ERRORS = tuple(getattr(ort.capi.onnxruntime_pybind11_state, name)
                   for name in ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph"))


def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Requested execution providers in order, keeping those this onnxruntime build has.

    Args:
        requested: names like "TensorRT", "CUDA", "CPU" or ONNX Runtime's full names.

    Returns:
        The available ones, in the requested order; CPU if none is (each drop is logged as a warning).

    Raises:
        ValueError: a name is not an execution provider ONNX Runtime knows.
    """
    available = ort.get_available_providers()
    known = set(ort.get_all_providers())
    chosen = []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in known:
            raise ValueError(f"unknown execution provider {name!r}; use one of {sorted(PROVIDER_ALIASES)} "
                             f"or an ONNX Runtime provider name")
        if full in available:
            chosen.append(full)
        else:
            log.warning("execution provider %s is not available in this onnxruntime (has %s); skipping it",
                        full, ", ".join(available))
    if not chosen:
        log.warning("none of the requested execution providers %s is available; falling back to %s",
                    list(requested), CPU_PROVIDER)
        chosen = [CPU_PROVIDER]
    return chosen


# No graph's thread pool spins between calls. Each session has its own pool; the rollout alternates
# between the two dynamics sessions call by call, the live node runs the encoder and decoder between
# rollout steps from other threads, and a robot's (or this shared machine's) other processes want the
# same cores: a spinning pool takes cores from whoever has work. Only the two dynamics graphs use ONNX
# Runtime's CPU memory arena: without it every call allocates, faults in and frees its intermediate
# buffers afresh (megabytes per call from batch 8 up). Measured together (both levers were needed:
# either alone gained 10-25 %), N candidates x 8 frames x 1 sample, latents only, p50 of 5, one
# process, 2 shared cores at load average 10-14: N = 1: 478 -> 364 ms, N = 8: 1977 -> 705 ms, N = 32:
# 7924 -> 3632 ms. `sora-ros bench nodes` earlier: camera-to-futures p50 158-185 ms -> 117-118 ms with
# the encoder and decoder no longer spinning.
#
# An arena grows to the largest call ever run and never gives memory back, which is why the image
# graphs (encoder, decoder, anchor) keep it off: three ~/rollout calls at the caps with images took
# the default model's process from 159 to 1109 MiB for good with every arena on, +9 MiB without. A
# dynamics call is one frame of the batch (candidates x samples) whatever the horizon: rollouts of
# 1, 8, 16 and 32 rows left the process 15 to 31 MiB larger with the arena than without.
ARENA_GRAPHS = ("dynamics_context", "dynamics")


def resolve_precision(precision: str, info: ModelInfo, providers: list[str]) -> str:
    """The dynamics precision `precision` ("float32", "int8" or "auto") stands for: auto is int8
    where the model directory has int8 graphs and the CPU provider comes first (integer products
    pay on a CPU; a GPU provider runs float32), else float32.

    Raises:
        ModelDirError: an unknown precision, or int8 of a directory without int8 graphs."""
    if precision != AUTO_PRECISION:
        info.graph_path("dynamics", precision)  # refuses an unknown precision, or int8 without the graphs
        return precision
    return "int8" if info.int8_graphs is not None and providers[0] == CPU_PROVIDER else "float32"


# Whether share_thread_pool() put this process on ONNX Runtime's global thread pool, and whether
# session_options() has made options already (after which it is too late to).
_pool = {"shared": False, "sessions": False}


def share_thread_pool() -> None:
    """Run every ONNX Runtime session this process opens from now on on one global thread pool (a
    worker per core, spinning between operators) instead of a non-spinning pool per session.

    For a process whose one thread calls the graphs back to back, such as an in-process planner's
    what-if: the context and step graphs alternate, and one pool never waits for a worker to wake
    between them (32 candidates x 8 frames x 1 sample, int8, 1 Euler step: 304 -> 241 ms, Intel Xeon
    2-CPU, README "The planner's what-if"). Not for the world_model node, whose live loop and
    ~/rollout run graphs from several threads: a spinning pool takes the cores they share (see
    above), nor beside other busy processes, whose cores the spinning workers take (the what-if then
    took 2x as long: README).

    Process-wide and for good (ONNX Runtime's rule): every session opened afterwards must use
    `session_options`, as all of this package's do; one opened with options of its own fails.

    Raises:
        RuntimeError: this process already opened a session through `session_options`.
    """
    if _pool["shared"]:
        return
    if _pool["sessions"]:
        raise RuntimeError("share_thread_pool() must come before this process opens its first ONNX Runtime "
                           "session (the pool is process-wide)")
    ort.set_global_thread_pool_sizes(0, 1)  # intra-op: a thread per physical core; graphs run their nodes in order
    _pool["shared"] = True


def session_options(graph: str = "") -> ort.SessionOptions:
    """ONNX Runtime options for a session of `graph` (a GRAPH_FILES key; "" for any other graph):
    its own non-spinning thread pool, or the global one after `share_thread_pool`; a CPU memory
    arena for the dynamics graphs only (see above)."""
    _pool["sessions"] = True
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = graph in ARENA_GRAPHS
    if _pool["shared"]:
        options.use_per_session_threads = False
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _open_session(graph: str, path: Path, providers: list[str]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), session_options(graph), providers=providers)
    except Exception as error:  # onnxruntime raises several unrelated types for a bad file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelDirError(f"{path}: not a loadable ONNX model: {first_line}") from None


def _check_finite(graph: str, array: np.ndarray) -> np.ndarray:
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise NonFiniteOutputError(f"{graph}: {bad} of {array.size} output values are NaN or Inf")
    return array


class _BoundGraph:
    """A session with its inputs and output bound to preallocated arrays for one batch size and
    grid (`sizes`: the values of the signature's symbolic dimensions)."""

    def __init__(self, session: ort.InferenceSession, signature: dict, batch: int, sizes: dict[str, int],
                 shared: dict[str, np.ndarray]) -> None:
        def allocate(spec: dict) -> np.ndarray:
            return np.empty(concrete_shape(spec, batch, sizes), np.dtype(spec["dtype"]))

        self.session = session
        self.inputs = {name: shared[name] if name in shared else allocate(spec)
                       for name, spec in signature["inputs"].items()}
        (out_name, out_spec), = signature["outputs"].items()
        self.output = shared[out_name] if out_name in shared else allocate(out_spec)
        self.binding = session.io_binding()
        for name, array in self.inputs.items():
            self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        self.binding.bind_ortvalue_output(out_name, ort.OrtValue.ortvalue_from_numpy(self.output))

    def __call__(self, *arrays: np.ndarray | None) -> np.ndarray:
        """Copy inputs (in signature order, None for absent ones) into the buffers, run; returns the
        output buffer, valid until the next call."""
        for buffer, array in zip(self.inputs.values(), arrays):
            if array is not buffer:
                np.copyto(buffer, array)
        self.session.run_with_iobinding(self.binding)
        return self.output


class WorldModelEngine:
    """Encode, roll forward and decode with a model directory's ONNX graphs.

    Safe to share between threads: `encode` and `decode` run concurrently, rollouts one at a
    time (they reuse preallocated buffers, one set per batch size), except that a rollout asked
    with `yields` (a what-if) lets the others run between its frames.

    Args:
        model_dir: directory with model.json and the graphs.
        providers: execution providers in order of preference (see `resolve_providers`).
        precision: of the two dynamics graphs: "float32"; "int8", the directory's quantized
            versions (sora_ros/model/quantize.py: faster on a CPU, PSNR within 0.002 dB on the
            default's held-out sim episodes); or "auto", int8 where the directory has them, the
            CPU provider runs them and, measured at load on this CPU, they stay within
            RELATIVE_TOLERANCE of float32 (sora_ros.runtime.int8_parity), else float32.
            `self.precision` is the one in use; `self.precision_note` says what that check
            found when int8 graphs failed it, else None.

    Raises:
        ModelDirError: the directory is incomplete, a hash or shape does not match, a file is not
            ONNX, or int8 is asked of a directory without int8 graphs; the message names the file
            and the problem.
    """

    def __init__(self, model_dir: str | Path, providers: Sequence[str] = DEFAULT_PROVIDERS,
                 precision: str = "float32") -> None:
        self.info: ModelInfo = read_model_info(model_dir)
        self.providers = resolve_providers(providers)
        self.precision = resolve_precision(precision, self.info, self.providers)
        self.signatures = expected_signatures(self.info)
        self.sessions: dict[str, ort.InferenceSession] = {}
        for graph in GRAPH_FILES:
            self.sessions[graph] = self._checked_session(graph, self.precision if graph in INT8_GRAPH_FILES
                                                         else "float32")
        self._check_sizes()
        self.precision_note: str | None = None
        if self.precision == "int8":
            self._check_int8(fall_back=precision == AUTO_PRECISION)
        self.anchor: AnchoredDecoder | None = None
        if self.info.anchor is None:
            log.info("%s has no anchored decoder: predicted frames are the VAE decoder's %dx%d images",
                     self.info.path, self.info.image_size[1], self.info.image_size[0])
        else:
            path = self.info.path / self.info.anchor["file"]
            session = _open_session(ANCHOR_GRAPH, path, self.providers)
            config = self.info.anchor["config"]
            image_size, latent_shape, _ = self.info.signature_sizes()
            check_session(path, session, anchor_signature(image_size, latent_shape, config["plan_features"]))
            self.sessions[ANCHOR_GRAPH] = session
            self.anchor = AnchoredDecoder(session, config["horizon"], self.info.action_dim, config["plan_features"])
        self.risk: RiskHead | None = None  # the optional risk head (model.json "risk"; older models have none)
        if self.info.risk is not None:
            path = self.info.path / self.info.risk["graph"]
            session = _open_session(RISK_GRAPH, path, self.providers)
            risk = self.info.risk
            check_session(path, session, risk_signature(self.info.latent_shape, self.info.action_dim, risk["frames"]))
            self.sessions[RISK_GRAPH] = session
            self.risk = RiskHead(session, self.info.action_dim, risk["horizon_steps"], risk["frames"],
                                 self.info.latent_shape[1:], risk.get("grids"))
            if "calibration" not in risk:
                log.warning("%s's risk head predates calibrated heads: its risk is a class-balanced score, far above "
                            "the probability of being blocked where blocks are rare (about 10x with 8%% of the "
                            "training frames blocked); `sora-ros train-risk --resume --force` with its run's --out "
                            "and --data re-exports it calibrated without training", self.info.path)
        self._bound: dict[tuple[int, int, int, bool], tuple[_BoundGraph, ...]] = {}
        # The dynamics' bound buffers serve one rollout at a time: a live one holds the turn for its
        # whole rollout, a what-if (`yields`) one frame at a time, and what-ifs exclude each other.
        self._turns = Turns()
        self._what_ifs = threading.Lock()
        self._bound_graphs(1, self.info.latent_shape[1:])  # one candidate, one sample: allocated up front

    def _checked_session(self, graph: str, precision: str) -> ort.InferenceSession:
        """A graph role's session, its inputs and outputs checked against the contract.

        Raises:
            ModelDirError: another signature; for a dynamics graph the message also names
                model.json's dynamics.context_attention, which decides the dynamics signatures."""
        path = self.info.graph_path(graph, precision)
        session = _open_session(graph, path, self.providers)
        try:
            check_session(path, session, self.signatures[graph])
        except ModelDirError as error:
            if graph not in INT8_GRAPH_FILES:
                raise
            attention = "frame" if self.info.per_frame_context else "window"
            raise ModelDirError(f"{error} (model.json's dynamics.context_attention is {attention!r}: a 'frame' model's "
                                "context graph takes any number of frames and its step graph per-layer keys/values; "
                                "re-export the directory if its graphs and model.json disagree)") from None
        return session

    def _check_sizes(self) -> None:
        """Raises ModelDirError unless the encoder turns the reference input into latent_shape and the
        context graph turns K such latents into context_kv_shape, with the token count patch_size
        gives: where the graphs take any size, their signatures cannot tell a model.json whose input
        size, latent shape or patch size disagrees with them (such a directory loaded and failed at
        the first rollout)."""
        info = self.info
        height, width = info.image_size
        try:
            (latent,) = self.sessions["encoder"].run(None, {"image": np.zeros((1, height, width, 3), np.uint8)})
            (kv,) = self.sessions["dynamics_context"].run(None, {
                "context": np.zeros((1, info.context_frames, *info.latent_shape), np.float32),
                "context_noise": np.zeros(1, np.float32)})
            latent_shape, kv_shape = latent.shape[1:], kv.shape[1:]
        except ORT_ERRORS as error:  # e.g. a latent grid the patches do not tile
            latent_shape = kv_shape = f"an error ({str(error).splitlines()[0][:160]})"
        layers, pair, _, width_kv = info.context_kv_shape
        tokens = info.grid_sizes(info.image_size)["context_tokens"]  # K x (h / patch) x (w / patch)
        if (latent_shape != info.latent_shape or kv_shape != info.context_kv_shape
                or info.context_kv_shape != (layers, pair, tokens, width_kv)):
            raise ModelDirError(f"{info.path}: the graphs turn the {width}x{height} input model.json names into "
                                f"latents {latent_shape} and context keys/values {kv_shape}, but model.json "
                                f"says latent_shape {info.latent_shape} and dynamics.context_kv_shape "
                                f"{info.context_kv_shape}, with {tokens} tokens by its patch_size {info.patch_size}: "
                                "model.json does not match its graphs (re-export the model)")

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Latents of camera frames.

        Args:
            images: uint8 (B, H, W, 3) RGB in [0, 255], H x W = an input size of the model's
                (`info.input_size` of the camera).

        Returns:
            float32 (B, C, h, w), (h, w) = (H, W) / the VAE's downsample factor.

        Raises:
            ValueError: wrong shape or dtype. NonFiniteOutputError: NaN/Inf in the latents.
        """
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"encode expects uint8 (B, H, W, 3) RGB, got {images.dtype} {images.shape}")
        f = self.info.downsample
        height, width = images.shape[1:3]
        if height % f or width % f:
            raise ValueError(f"encode expects an input size of the model's, got {height}x{width} "
                             f"(not a multiple of {f}: use info.input_size)")
        self.info.check_latent_grid((height // f, width // f))
        (latents,) = self.sessions["encoder"].run(None, {"image": np.ascontiguousarray(images)})
        return _check_finite("encoder", latents)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Images of latents.

        Args:
            latents: float32 (B, C, h, w) on a grid the model encodes to.

        Returns:
            uint8 (B, H, W, 3) RGB in [0, 255], (H, W) = (h, w) x the VAE's downsample factor.

        Raises:
            ValueError: wrong shape. NonFiniteOutputError: NaN/Inf in the decoded images.
        """
        self.check_latents("decode", latents.shape, 4)
        (images,) = self.sessions["decoder"].run(None, {"latent": np.ascontiguousarray(latents, np.float32)})
        _check_finite("decoder", images)
        return np.rint(images * PIXEL_MAX).astype(np.uint8)

    def anchor_fields(self, previous: np.ndarray, last: np.ndarray, flow: np.ndarray, latents: np.ndarray,
                      context_latent: np.ndarray, steps: np.ndarray, reconstruction: np.ndarray | None = None,
                      actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Motion (B, 2, H, W) and mask (B, 1, H, W) of the anchored decoder (see
        sora_ros.runtime.anchor.AnchoredDecoder.fields).

        `reconstruction` (the decoder's image of `context_latent`) is decoded here when not given.
        `actions`: float32 (B, L, A) each row's planned actions in physical units (as `rollout`
        takes them), NaN rows unknown; None = unknown.

        Raises:
            RuntimeError: the model has no anchored decoder. NonFiniteOutputError: NaN/Inf.
            ValueError: actions of the wrong shape, with Inf or partly NaN rows.
        """
        if self.anchor is None:
            raise RuntimeError(f"{self.info.path} has no anchored decoder")
        if reconstruction is None:
            reconstruction = self.decode(np.asarray(context_latent, np.float32)[None])[0]
        normalised = None if actions is None or self.info.action_dim == 0 else self._normalised_actions(actions, None)[0]
        motion, mask = self.anchor.fields(previous, last, flow, latents, context_latent, steps, reconstruction,
                                          normalised)
        return _check_finite("anchor", motion), _check_finite("anchor", mask)

    def rollout(self, context: np.ndarray, actions: np.ndarray | None = None, *, horizon: int | None = None,
                samples: int = 1, seed: int = 0, steps: int | None = None,
                context_noise: float | None = None, yields: bool = False) -> RolloutResult:
        """Predict future latents autoregressively, all candidates and samples in one batch.

        Args:
            context: float32 (K, C, h, w) latents, oldest first, or (N, K, C, h, w) one per candidate.
            actions: float32 (H, A) or (N, H, A) in the model's physical units (model.json "action"),
                actions[..., i, :] applied at the frame before predicted frame i; a row of NaN
                means "unknown" (the model then predicts without that command); None when the
                model is unconditioned (action dim 0).
            horizon: frames to predict; default the actions' length, else model.json's default_horizon.
            samples: S, samples per candidate (the uncertainty is their spread).
            seed: same seed, same inputs -> same output.
            steps, context_noise: sampler overrides (default: model.json "sampler").
            yields: let rollouts without it run between this one's frames (a what-if yields to
                the live loop, whose rollout then waits for one frame of it, not all of it).

        Returns:
            RolloutResult with latents (N, S, H, C, h, w) and uncertainty (N, H).

        Raises:
            ValueError: inconsistent shapes or arguments. NonFiniteOutputError: NaN/Inf predicted.
        """
        start = time.perf_counter()
        info = self.info
        context = np.asarray(context, np.float32)
        if context.ndim not in (4, 5) or context.shape[-4] != info.context_frames:
            raise ValueError(f"rollout context must be ([N,] {info.context_frames}, C, h, w), got {context.shape}")
        self.check_latents("rollout context", context.shape, context.ndim)
        per_item = context.shape[-4:]
        if context.ndim == 4:
            context = context[None]  # (1, K, C, h, w)
        actions, horizon = self._normalised_actions(actions, horizon)
        if samples < 1 or horizon < 1 or (steps is not None and steps < 1):
            raise ValueError(f"samples, horizon and steps must be at least 1, got {samples}, {horizon} and {steps}")
        counts = {context.shape[0], 1 if actions is None else actions.shape[0]}
        if len(counts - {1}) > 1:
            raise ValueError(f"{context.shape[0]} contexts but {actions.shape[0]} action candidates")
        candidates = max(counts)
        batch = candidates * samples
        shared = bool((context == context[:1]).all())  # one context for all candidates (a what-if)
        context = np.repeat(np.broadcast_to(context, (candidates, *per_item)), samples, axis=0)  # (N * S, K, C, h, w)
        if actions is not None:
            actions = np.repeat(np.broadcast_to(actions, (candidates, *actions.shape[1:])), samples, axis=0)
        grid = per_item[-2:]

        def graphs() -> tuple[dict[tuple[int, int], _BoundGraph], _BoundGraph]:
            # From a shared context the first frame's keys/values are computed for S rows, not N * S;
            # the S-row graphs are fetched first so that the batch's stay the newest in the cache.
            context_fns = {}
            if shared:
                context_fns[samples, info.context_frames] = self._bound_graphs(samples, grid, yields)[0]
            *batch_context, velocity_fn = self._bound_graphs(batch, grid, yields)
            context_fns.update(zip([(batch, info.context_frames), (batch, 1)], batch_context))
            return context_fns, velocity_fn

        def sample(context_fns: dict[tuple[int, int], _BoundGraph], step: _BoundGraph, turn) -> np.ndarray:
            cache, velocity_fn = None, step
            if info.per_frame_context:  # the step graph's per-layer inputs hold the window's keys/values
                cache = [step.inputs[name] for name in layer_kv_names(info.context_kv_shape[0])]

                def velocity_fn(kv: list[np.ndarray], *rest: np.ndarray | None) -> np.ndarray:
                    return step(*kv, *rest)

            # Every candidate sees the same noise: their futures differ by their actions alone.
            return sampler.rollout(
                lambda window, level: context_fns[window.shape[:2]](window, level), velocity_fn, context, actions,
                horizon, info.sampler_steps if steps is None else steps,
                info.context_noise if context_noise is None else context_noise, np.random.default_rng(seed),
                noise_period=samples, shared_context=shared, cached_context=info.per_frame_context, cache=cache,
                turn=turn,
            )  # (N * S, H, C, h, w)

        if yields:  # a turn per frame, after any live rollout that waits
            with self._what_ifs:
                with self._turns.hold(urgent=False):
                    bound = graphs()
                latents = sample(*bound, lambda: self._turns.hold(urgent=False))
        else:
            with self._turns.hold(urgent=True):
                latents = sample(*graphs(), nullcontext)
        _check_finite("dynamics", latents)
        latents = latents.reshape(candidates, samples, *latents.shape[1:])  # (N, S, H, C, h, w)
        uncertainty = latents.std(axis=1).mean(axis=(-3, -2, -1)).astype(np.float32)  # (N, H)
        return RolloutResult(latents, uncertainty, time.perf_counter() - start)

    def _check_int8(self, fall_back: bool) -> None:
        """Measure the int8 dynamics against float32 on this CPU (one run of each graph at the
        model's own grid); beyond RELATIVE_TOLERANCE, say so in `precision_note` and the log,
        and with `fall_back` ("auto") run float32 instead."""
        float32 = {graph: self._checked_session(graph, "float32") for graph in INT8_GRAPH_FILES}
        parity = int8_parity(self.info, float32, self.sessions, [self.info.image_size], 1, np.random.default_rng(0))
        drift = {graph: round(figures["relative_error"], 3) for graph, figures in parity.items()}
        if max(drift.values()) <= RELATIVE_TOLERANCE:
            return
        self.precision_note = (f"int8 dynamics graphs differ from float32 by {drift} (mean relative) on this CPU, "
                               f"above {RELATIVE_TOLERANCE}: "
                               + ("running float32" if fall_back else "running them as asked; predictions are off")
                               + " (re-quantize with `sora-ros quantize`: its 7-bit weights do not saturate this "
                               "CPU's int8 kernel)")
        log.warning("%s: %s", self.info.path, self.precision_note)
        if fall_back:
            self.sessions.update(float32)
            self.precision = "float32"

    def _normalised_actions(self, actions: np.ndarray | None, horizon: int | None) -> tuple[np.ndarray | None, int]:
        """Actions as (N, H, A) normalised for the network, and the horizon."""
        info = self.info
        if info.action_dim == 0:
            if actions is not None:
                raise ValueError("this model is unconditioned (action dim 0); pass actions=None")
            return None, info.default_horizon if horizon is None else horizon
        if actions is None:
            raise ValueError(f"this model needs actions ({info.action_dim} per step: {', '.join(info.action_names)})")
        actions = np.asarray(actions, np.float32)
        if actions.ndim == 2:
            actions = actions[None]  # (1, H, A)
        if actions.ndim != 3 or actions.shape[-1] != info.action_dim:
            raise ValueError(f"actions must be (H, {info.action_dim}) or (N, H, {info.action_dim}), got {actions.shape}")
        if horizon is not None and horizon != actions.shape[1]:
            raise ValueError(f"horizon {horizon} but {actions.shape[1]} actions per candidate")
        if np.isinf(actions).any():
            raise ValueError("actions contain Inf (a row of NaN marks an unknown action; Inf is never valid)")
        nan = np.isnan(actions)
        if (nan.any(axis=-1) != nan.all(axis=-1)).any():
            raise ValueError("an action row is partly NaN: mark an unknown action with NaN in every component")
        return info.network_actions(actions), actions.shape[1]

    def check_latents(self, what: str, shape: tuple[int, ...], ndim: int) -> None:
        """Raises ValueError unless `shape` is (..., C, h, w) of `ndim` dims on a grid of the model's."""
        if len(shape) != ndim or shape[-3] != self.info.latent_shape[0]:
            raise ValueError(f"{what} must be {ndim}-D with {self.info.latent_shape[0]} latent channels "
                             f"(..., C, h, w), got {shape}")
        try:
            self.info.check_latent_grid(shape[-2:])
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None

    def _bound_graphs(self, batch: int, grid: tuple[int, int], yields: bool = False) -> tuple[_BoundGraph, ...]:
        """The dynamics graphs bound to buffers for this batch size and (h, w) latent grid: the
        context graph over K frames, writing its keys/values straight into the step graph's input
        buffer (with a per-frame context, into its own: the sampler spreads them over the step
        graph's per-layer inputs, and a second binding takes the one frame that enters the
        window); then the step graph. A rollout that `yields` gets buffers of its own: a per-frame
        context's keys/values stay in them across its frames, while others run between them."""
        key = (batch, *grid, yields)
        if key not in self._bound:
            if len(self._bound) >= MAX_BOUND_BATCHES:
                del self._bound[next(iter(self._bound))]  # the oldest
            f = self.info.downsample
            sizes = self.info.grid_sizes((grid[0] * f, grid[1] * f))
            context = _BoundGraph(self.sessions["dynamics_context"], self.signatures["dynamics_context"], batch,
                                  sizes, {})
            shared = {} if self.info.per_frame_context else {"context_kv": context.output}
            step = _BoundGraph(self.sessions["dynamics"], self.signatures["dynamics"], batch, sizes, shared)
            entering = ()
            if self.info.per_frame_context:
                entering = (_BoundGraph(self.sessions["dynamics_context"], self.signatures["dynamics_context"], batch,
                                        self.info.one_frame_sizes(sizes), {}),)
            self._bound[key] = (context, *entering, step)
        return self._bound[key]
