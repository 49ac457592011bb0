"""The risk head without torch: predicted latents and planned actions -> the probability that the
robot is blocked (commanded forward but not moving: a collision or a refused move) within the
next `horizon_steps` steps.

The graph (model.json "risk", risk.onnx, trained by `sora-ros train-risk`, sora_ros/model/risk.py)
takes the latents of the last W frames up to frame k (W = model.json risk.frames, at most the
context length K: what just left the camera's view is often what the robot's side then hits) and
the action that drove the robot into frame k, in physical units (it normalises them itself), and
returns a probability. Per predicted frame k of a rollout, frames <= 0 being the context's:

    risk[k] = head(latents[k - W + 1 .. k], actions[k])   # actions[k]: applied at the frame before frame k

the same pairing training uses (sora_ros/core/risk.py: frame t's window, the command in force from
frame t - 1 to t, and the label "blocked in one of the steps t .. t + horizon_steps - 1").

What `forecast` publishes is the larger of that and the same head on the *held* window: the
context's last latent standing in for every predicted one (what copy-last would predict), under
the same command. The dynamics see few blocked frames in training, so under a command into a
wall they predict the view moving on, and the head on the predicted frames reads the way as free;
the held frames still show the wall close. The predicted frames add what the held ones cannot
show: where the command leads. `sora-ros bench closed-loop` measured the MPC on the model with
and without this (README, "The planner").

    head = RiskHead(session, action_dim, horizon_steps, frames, grid)
    risk = head.forecast(context, result.latents, actions)   # (K, C, h, w), (N, S, H, C, h, w), (N, H, A) -> (N, H)

For training and evaluation of a head, `collect_risk_data` turns labelled clips into encoded and
DiT-predicted latents with the engine, and `risk_metrics` scores any head on them.

Legend: N candidates, S samples, H horizon, K context frames, W head window, A action dim,
C/h/w latent grid, B batch, L clip length.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from sora_ros.core.actions import clamp_to_range
from sora_ros.core.patch_grid import AspectError
from sora_ros.core.preprocess import fit_frame
from sora_ros.core.risk import roc_auc
from sora_ros.runtime.model_dir import BATCH

log = logging.getLogger(__name__)

RISK_GRAPH = "risk"
RISK_FILE = "risk.onnx"
# What a model directory without a head answers a ~/rollout call with (FutureFrames.risk stays empty).
NO_RISK_HEAD = "no risk head in this model"
# Frames per encoder call, clips per rollout call and windows per head call when collecting and scoring.
ENGINE_BATCH = 64
SCORE_BATCH = 4096
# Frames of clips gathered before they are encoded (see collect_risk_data).
ENCODE_FRAMES = 256


def risk_signature(latent_shape: tuple[int, int, int], action_dim: int, frames: int) -> dict:
    """The risk graph's inputs and outputs in the model_dir signature format: latents float32
    (B, W, C, h, w) oldest first, action float32 (B, A) in physical units (absent when A = 0) ->
    risk float32 (B,) in [0, 1]."""

    def tensor(*dims: int) -> dict:
        return {"dtype": "float32", "shape": [BATCH, *dims]}

    inputs = {"latents": tensor(frames, *latent_shape)}
    if action_dim:
        inputs["action"] = tensor(action_dim)
    return {"inputs": inputs, "outputs": {"risk": tensor()}}


def _linear_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) bilinear interpolation weights, half-pixel centres (cv2.INTER_LINEAR's)."""
    centres = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weights = np.zeros((size_out, size_in), np.float32)
    np.add.at(weights, (np.arange(size_out), low), 1 - (centres - low))
    np.add.at(weights, (np.arange(size_out), high), centres - low)
    return weights


def resample_grid(latents: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """float32 (..., h, w) latents resampled bilinearly to (..., grid h, grid w); as they are when equal."""
    if latents.shape[-2:] == tuple(grid):
        return latents
    rows, cols = _linear_weights(latents.shape[-2], grid[0]), _linear_weights(latents.shape[-1], grid[1])
    return np.einsum("oh,...hw,pw->...op", rows, latents, cols).astype(np.float32)


def frame_windows(history: np.ndarray, frames: int, first: int) -> np.ndarray:
    """Windows of `frames` consecutive latents ending at each of the frames first .. T - 1.

    Args:
        history: float32 (..., T, C, h, w), oldest first.
        frames: W, 1 <= W <= first + 1.
        first: index of the first window's last frame.

    Returns:
        float32 (..., T - first, W, C, h, w), a read-only view.
    """
    windows = np.lib.stride_tricks.sliding_window_view(history, frames, axis=-4)  # (..., T - W + 1, C, h, w, W)
    windows = np.moveaxis(windows, -1, -4)  # (..., T - W + 1, W, C, h, w)
    return windows[..., first - frames + 1:, :, :, :, :]


def held_frames(context_frames: int, horizon: int, frames: int) -> np.ndarray:
    """int (H, W): for each predicted frame j (its window, oldest first) the context frame that
    stands in for every frame of the window: itself if observed, else the context's last (K - 1)."""
    ends = context_frames + np.arange(horizon)  # (H,) predicted frame j's index in context + rollout
    return np.minimum(ends[:, None] - np.arange(frames - 1, -1, -1), context_frames - 1)


class RiskHead:
    """The risk graph's session, and what the runtime asks of it.

    Args:
        session: onnxruntime.InferenceSession of risk.onnx (checked by the engine).
        action_dim: A of the model (0: the graph takes latents only).
        horizon_steps: k of "blocked within the next k steps" (model.json risk.horizon_steps).
        frames: W, latents per window (model.json risk.frames).
        grid: (h, w) the head takes, the model's reference latent grid: the head ends in a Linear
            over its features, so latents of another camera's grid are resampled to it (bilinear).
        trained_grids: the cameras' grids it was trained on (model.json risk.grids); None: `grid`
            alone (heads trained before other cameras could train them). Latents of another grid
            are scored all the same, with a warning once per grid (whichever thread scores it
            first): the head never saw such views.

    Attributes:
        warn: where that warning goes, a callable taking the message (default: this module's
            Python logger; a node gives its ROS logger, so the warning reaches its log and /rosout).
    """

    def __init__(self, session, action_dim: int, horizon_steps: int, frames: int, grid: tuple[int, int],
                 trained_grids: list | None = None) -> None:
        self.session, self.action_dim = session, action_dim
        self.horizon_steps, self.frames, self.grid = horizon_steps, frames, tuple(grid)
        self.trained_grids = {tuple(g) for g in trained_grids} if trained_grids else {self.grid}
        self.warn: Callable[[str], None] = log.warning
        self._warned: set[tuple[int, int]] = set()
        self._warned_lock = threading.Lock()  # live rollouts and ~/rollout calls score from several threads

    def probabilities(self, windows: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """One probability per window, in one batched call.

        Args:
            windows: float32 (B, W, C, h, w), each the latents of W consecutive frames, oldest first.
            actions: float32 (B, A) physical units, the action that led into each window's last
                frame; a NaN row (unknown) gives NaN; None when A = 0.

        Returns:
            float32 (B,) in [0, 1], NaN where the action is unknown.

        Raises:
            ValueError: actions given to a head without action input, or missing for one with it,
                or a batch size that differs from the windows'.
        """
        own = tuple(windows.shape[-2:])
        if own not in self.trained_grids and own not in self._warned and self._first_time(own):  # lock once per grid
            trained = ", ".join(f"{h}x{w}" for h, w in sorted(self.trained_grids))
            self.warn(f"the risk head was trained on latent grids {trained} only; this camera's "
                      f"{own[0]}x{own[1]} latents are resampled to {self.grid[0]}x{self.grid[1]} and scored by a "
                      f"head that never saw such views (on the 4:3 sim camera an untrained grid ranked at chance): "
                      f"`sora-ros eval BAGS --action-topic ...` scores it on your camera, `sora-ros train-risk` "
                      f"trains it on it")
        feeds = {"latents": np.ascontiguousarray(resample_grid(windows, self.grid), np.float32)}
        unknown = np.zeros(len(windows), bool)
        if self.action_dim:
            if actions is None or len(actions) != len(windows):
                raise ValueError(f"the risk head needs one action (A = {self.action_dim}) per window")
            actions = np.asarray(actions, np.float32).reshape(len(windows), self.action_dim)
            unknown = np.isnan(actions).any(axis=1)
            feeds["action"] = np.where(unknown[:, None], 0.0, actions).astype(np.float32)
        elif actions is not None and np.size(actions):
            raise ValueError("this risk head takes no actions (the model is unconditioned)")
        (risk,) = self.session.run(None, feeds)
        return np.where(unknown, np.nan, risk).astype(np.float32)

    def _first_time(self, grid: tuple[int, int]) -> bool:
        """Whether no call before this one asked about `grid` (then noted: one warning per grid)."""
        with self._warned_lock:
            first = grid not in self._warned
            self._warned.add(grid)
        return first

    def forecast(self, context: np.ndarray, latents: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """Per candidate and predicted frame, the mean over samples of the probability.

        Args:
            context: float32 (K, C, h, w) or (N, K, C, h, w), the observed latents the rollout started from.
            latents: float32 (N, S, H, C, h, w) predicted latents (every sample).
            actions: float32 (N, H, A) physical units, actions[n, k] applied at the frame before
                frame k; None when A = 0.

        Returns:
            float32 (N, H) in [0, 1] (NaN where the action is unknown): per frame the larger of the
            head on the predicted window (mean over samples) and on the held window under the same
            action (module docstring).

        Raises:
            ValueError: a context of fewer frames than the head's window.
        """
        n, s, h = latents.shape[:3]
        k = context.shape[-4]
        if k < self.frames:
            raise ValueError(f"the risk head reads {self.frames} frames: the context has only {k}")
        context = np.asarray(context)
        context = context[:, None] if context.ndim == 5 else context  # one context per candidate: (N, 1, K, ...)
        context = np.broadcast_to(context, (n, s, k, *latents.shape[3:]))  # (N, S, K, C, h, w)
        history = np.concatenate([context, latents], axis=2)  # (N, S, K + H, C, h, w)
        windows = frame_windows(history, self.frames, k)  # (N, S, H, W, C, h, w)
        held = context[:, :1, held_frames(k, h, self.frames)]  # (N, 1, H, W, C, h, w)
        windows = np.concatenate([windows, held], axis=1)  # (N, S + 1, H, W, C, h, w)
        flat_actions = None
        if actions is not None:
            flat_actions = np.broadcast_to(np.asarray(actions, np.float32)[:, None], (n, s + 1, h, actions.shape[-1]))
            flat_actions = flat_actions.reshape(n * (s + 1) * h, -1)  # (N * (S + 1) * H, A)
        risk = self.probabilities(windows.reshape(-1, *windows.shape[3:]), flat_actions).reshape(n, s + 1, h)
        return np.maximum(risk[:, :s].mean(axis=1), risk[:, s])  # (N, H); NaN (unknown) stays NaN


@dataclass
class RiskData:
    """Labelled clips of one data split as encoded and predicted latents (N clips of L = K + H frames).

    Attributes:
        latents: float32 (N, L, C, h, w) encoder latents.
        actions: float32 (N, L, A) the recorded commands, actions[:, t] in force from frame t.
        labels: float32 (N, L) 1 / 0 / NaN (unknown) per frame.
        predicted: float32 (N, H, C, h, w) the dynamics' latents of frames K .. L - 1 rolled out from
            frames 0 .. K - 1 under the recorded actions (one sample).
        grids: the cameras' own latent grids (h, w) the clips were encoded at, before the latents
            were resampled to the head's.
    """

    latents: np.ndarray
    actions: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    grids: tuple[tuple[int, int], ...] = ()

    @property
    def context_frames(self) -> int:
        return self.latents.shape[1] - self.predicted.shape[1]

    def samples(self, predicted: bool, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """The known samples of one kind, as (clip, frame) indices (M,), (M,).

        Encoded: every frame t >= max(W - 1, 1) whose label is known (its window holds encoder
        latents only). Predicted: the rolled-out frames K .. L - 1 (their windows reach back into
        the encoded context, as at run time).
        """
        first = self.context_frames if predicted else max(frames - 1, 1)
        clips, offsets = np.nonzero(~np.isnan(self.labels[:, first:]))
        return clips, offsets + first

    def gather(self, predicted: bool, frames: int, clips: np.ndarray,
               at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows (M, W, C, h, w), the actions that led into their last frames (M, A) and labels
        (M,) of the samples (clips, at) (see `samples`)."""
        k = self.context_frames
        offsets = at[:, None] - np.arange(frames - 1, -1, -1)  # (M, W) frame indices, oldest first
        windows = self.latents[clips[:, None], offsets]  # (M, W, C, h, w)
        if predicted:
            rolled = offsets >= k
            windows[rolled] = self.predicted[np.broadcast_to(clips[:, None], offsets.shape)[rolled], offsets[rolled] - k]
        return windows, self.actions[clips, at - 1], self.labels[clips, at]

    def held(self, frames: int, clips: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Windows (M, W, C, h, w) ending at frames `at` (M,) of `clips` (M,) with the context's last
        latent for every rolled-out frame: what `RiskHead.forecast` also scores a predicted frame on."""
        k = self.context_frames
        offsets = np.minimum(at[:, None] - np.arange(frames - 1, -1, -1), k - 1)  # (M, W)
        return self.latents[clips[:, None], offsets]

    def summary(self) -> dict:
        """Counts for logs and model.json."""
        known = self.labels[~np.isnan(self.labels)]
        return {"clips": len(self.latents), "frames_labelled": int(known.size),
                "positive_share": round(float(known.mean()), 4) if known.size else None,
                "grids": [list(grid) for grid in self.grids]}


def camera_views(info, labelled: Iterable[tuple[object, np.ndarray]],
                 aspect_policy: str) -> Iterable[tuple[object, np.ndarray]]:
    """(clip, labels) pairs as the node sees their cameras: under aspect_policy "crop" a camera outside
    the model's aspect range gives its centred window in the range (sora_ros.runtime.pipeline.camera_view,
    as the node's parameter of that name); under "refuse" the clips as they are (`collect_risk_data`
    then skips such a camera's, noted)."""
    if aspect_policy != "crop":
        return labelled
    from sora_ros.runtime.pipeline import camera_view  # the pipeline imports this module

    return ((replace(clip, frames=np.stack([camera_view(info, frame, aspect_policy) for frame in clip.frames])),
             labels) for clip, labels in labelled)


def collect_risk_data(engine, labelled: Iterable[tuple[object, np.ndarray]], horizon: int, *,
                      progress: Callable[[Iterable], Iterable] = iter, notes: list[str] | None = None) -> RiskData | None:
    """Encode labelled clips and roll the dynamics out over their last `horizon` frames, as the live
    node does: each clip's frames fitted to the model input size of its camera (the token grid
    nearest its aspect ratio, `fit_frame`), encoded and rolled out at that grid; then the latents of
    every grid resampled to the reference grid the head takes (`resample_grid`, as `RiskHead` does
    at run time). Actions outside the model's range (model.json "action" "range") are clamped to
    it, as the live node clamps a command, and counted in `notes`.

    Args:
        engine: the WorldModelEngine whose latents the head sees.
        labelled: (clip with frames uint8 (L, H0, W0, 3) at any camera size and actions (L, A), labels (L,))
            pairs, L = K + horizon (sora_ros.bag.motion.labelled_clips).
        horizon: H.
        progress: wraps the rollout batches (a progress bar), e.g. tqdm.
        notes: receives a line when actions were clamped, and per source and camera whose aspect
            ratio the model does not serve (its clips skipped).

    Returns:
        The data (latents on the reference grid, model.json latent_shape), or None when `labelled`
        holds no clip of a served camera or no frame with a known label.
    """
    info = engine.info
    grid = tuple(info.latent_shape[1:])
    # Per model input size: encoder latents (P, L, C, h, w) at its own grid, actions, labels; clips pending.
    groups: dict[tuple[int, int], dict[str, list]] = {}
    refused: dict[tuple[str, str], int] = {}  # (source, why its camera is not served) -> clips skipped

    def encode_pending(group: dict) -> None:
        frames = np.concatenate([clip.frames for clip, _ in group["pending"]])  # (P * L, H, W, 3)
        encoded = np.concatenate([engine.encode(frames[i:i + ENGINE_BATCH])
                                  for i in range(0, len(frames), ENGINE_BATCH)])  # (P * L, C, h, w)
        group["latents"].append(encoded.reshape(len(group["pending"]), -1, *encoded.shape[1:]))  # (P, L, C, h, w)
        group["actions"].extend(clip.actions for clip, _ in group["pending"])
        group["labels"].extend(clip_labels for _, clip_labels in group["pending"])
        group["pending"].clear()

    for clip, clip_labels in labelled:
        try:
            size = info.input_size(clip.frames.shape[1:3])
        except AspectError as error:  # one count per camera: a bag's camera may change shape
            key = (clip.source, str(error).splitlines()[0])
            refused[key] = refused.get(key, 0) + 1
            continue
        group = groups.setdefault(size, {"latents": [], "actions": [], "labels": [], "pending": []})
        group["pending"].append((replace(clip, frames=np.stack([fit_frame(frame, size) for frame in clip.frames])),
                                 clip_labels))
        # Encoded in large batches, not clip by clip: the encoder's buffers, freed between calls
        # while small arrays stay alive, fragment the heap (RSS grew 13 MB per 12-frame clip).
        if len(group["pending"]) * len(clip.frames) >= ENCODE_FRAMES:
            encode_pending(group)
    if notes is not None:
        notes += [f"{source}: {count} clips skipped: {reason}" for (source, reason), count in refused.items()]
    for group in groups.values():
        if group["pending"]:
            encode_pending(group)
        group["latents"] = np.concatenate(group["latents"])
        group["actions"], group["labels"] = np.stack(group["actions"]), np.stack(group["labels"])
    if not groups or all(np.isnan(group["labels"]).all() for group in groups.values()):
        return None  # e.g. odometry that is all NaN: nothing to train or score on
    outside = 0
    if info.action_dim:
        low, high = (np.asarray(bound, np.float32) for bound in info.action_range)
        for group in groups.values():
            group["actions"], clamped = clamp_to_range(group["actions"], low, high)
            outside += clamped
        if outside and notes is not None:
            notes.append(f"{outside} action value(s) outside the model's range clamped to it")
    k = next(iter(groups.values()))["latents"].shape[1] - horizon
    batches = [(group, i) for group in groups.values() for i in range(0, len(group["latents"]), ENGINE_BATCH)]
    for group in groups.values():
        group["predicted"] = np.zeros((len(group["latents"]), horizon, *group["latents"].shape[2:]), np.float32)
    for group, i in progress(batches):
        chunk = slice(i, i + ENGINE_BATCH)
        planned = group["actions"][chunk, k - 1:k - 1 + horizon] if info.action_dim else None  # (B, H, A)
        group["predicted"][chunk] = engine.rollout(group["latents"][chunk, :k], planned, horizon=horizon,
                                                   seed=i).latents[:, 0]

    def joined(key: str) -> np.ndarray:  # the groups' arrays, latents on the head's grid
        return np.concatenate([resample_grid(group[key], grid) if key in ("latents", "predicted") else group[key]
                               for group in groups.values()])
    return RiskData(joined("latents"), joined("actions"), joined("labels"), joined("predicted"),
                    tuple(sorted({group["latents"].shape[-2:] for group in groups.values()})))


def risk_metrics(score: Callable[[np.ndarray, np.ndarray], np.ndarray], data: RiskData, frames: int) -> dict:
    """ROC AUC of a head on encoded and on predicted latents, and per predicted step; and how well
    its probabilities match the labels' frequency (calibration).

    Args:
        score: (windows (M, W, C, h, w), actions (M, A)) -> (M,) probabilities in [0, 1].
        data: held-out samples.
        frames: W of the head.

    Returns:
        {"auc_encoded", "auc_predicted", "auc_predicted_per_step": [H], "auc_forecast" (the predicted
        frames scored as `RiskHead.forecast` publishes them: the larger of the score on the predicted
        and on the held window under the same action), "samples", "positive_share", "mean_encoded"
        (the mean probability on encoded windows: equal to positive_share when calibrated in the large),
        "brier_encoded" (mean squared error of those probabilities against the 0/1 labels; a constant
        positive_share scores positive_share * (1 - positive_share)), and the same for the forecast on
        the predicted frames, "positive_share_predicted", "mean_forecast", "brier_forecast"}; an AUC is
        NaN when a class is absent.
    """
    results = {}
    for predicted in (False, True):
        clips, at = data.samples(predicted, frames)
        scores, held, labels = [], [], []
        for i in range(0, len(clips), SCORE_BATCH):
            chunk = slice(i, i + SCORE_BATCH)
            windows, actions, chunk_labels = data.gather(predicted, frames, clips[chunk], at[chunk])
            scores.append(score(windows, actions))
            held.append(score(data.held(frames, clips[chunk], at[chunk]), actions) if predicted else scores[-1])
            labels.append(chunk_labels)
        results[predicted] = (np.concatenate(scores), np.concatenate(held), np.concatenate(labels),
                              at - data.context_frames + 1)
    scores, _, labels, _ = results[False]
    p_scores, h_scores, p_labels, steps = results[True]
    forecast = np.maximum(p_scores, h_scores)

    def rounded(value: np.floating) -> float | None:
        return round(float(value), 4) if np.isfinite(value) else None

    with np.errstate(invalid="ignore"):  # no samples: None, not a warning
        return {"auc_encoded": round(roc_auc(labels, scores), 4), "auc_predicted": round(roc_auc(p_labels, p_scores), 4),
                "auc_predicted_per_step": [round(roc_auc(p_labels[steps == j], p_scores[steps == j]), 4)
                                           for j in range(1, data.predicted.shape[1] + 1)],
                "auc_forecast": round(roc_auc(p_labels, forecast), 4),
                "samples": int(len(labels)), "positive_share": rounded(np.mean(labels)),
                "mean_encoded": rounded(np.mean(scores)), "brier_encoded": rounded(np.mean((scores - labels) ** 2)),
                "positive_share_predicted": rounded(np.mean(p_labels)), "mean_forecast": rounded(np.mean(forecast)),
                "brier_forecast": rounded(np.mean((forecast - p_labels) ** 2))}
