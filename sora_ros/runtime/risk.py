"""The risk head without torch: predicted latents and planned actions -> the probability that the
robot is blocked (commanded forward but not moving: a collision or a refused move) within the
next `horizon_steps` steps.

The graph (model.json "risk", risk.onnx, trained by `sora-ros train-risk`, sora_ros/model/risk.py)
takes one frame's latent and the action that drove the robot into that frame, in physical units
(it normalises them itself), and returns a probability. Per predicted frame k of a rollout:

    risk[k] = head(latents[k], actions[k])       # actions[k]: applied at the frame before frame k

the same pairing training uses (sora_ros/core/risk.py: frame t's latent, the command in force from
frame t - 1 to t, and the label "blocked in one of the steps t .. t + horizon_steps - 1").

    head = RiskHead(session, action_dim)
    risk = head.forecast(result.latents, actions)   # (N, S, H, C, h, w), (N, H, A) -> (N, H)

For training and evaluation of a head, `collect_risk_data` turns labelled clips into encoded and
DiT-predicted samples with the engine, and `risk_metrics` scores any head on them.

Legend: N candidates, S samples, H horizon, A action dim, C/h/w latent grid, B batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from sora_ros.core.risk import roc_auc
from sora_ros.runtime.model_dir import BATCH

RISK_GRAPH = "risk"
RISK_FILE = "risk.onnx"
# What a model directory without a head answers a ~/rollout call with (FutureFrames.risk stays empty).
NO_RISK_HEAD = "no risk head in this model"


def risk_signature(latent_shape: tuple[int, int, int], action_dim: int) -> dict:
    """The risk graph's inputs and outputs in the model_dir signature format: latent float32
    (B, C, h, w), action float32 (B, A) in physical units (absent when A = 0) -> risk float32 (B,)
    in [0, 1]."""

    def tensor(*dims: int) -> dict:
        return {"dtype": "float32", "shape": [BATCH, *dims]}

    inputs = {"latent": tensor(*latent_shape)}
    if action_dim:
        inputs["action"] = tensor(action_dim)
    return {"inputs": inputs, "outputs": {"risk": tensor()}}


class RiskHead:
    """The risk graph's session, and what the runtime asks of it.

    Args:
        session: onnxruntime.InferenceSession of risk.onnx (checked by the engine).
        action_dim: A of the model (0: the graph takes latents only).
        horizon_steps: k of "blocked within the next k steps" (model.json risk.horizon_steps).
    """

    def __init__(self, session, action_dim: int, horizon_steps: int) -> None:
        self.session, self.action_dim, self.horizon_steps = session, action_dim, horizon_steps

    def probabilities(self, latents: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """One probability per latent, in one batched call.

        Args:
            latents: float32 (B, C, h, w).
            actions: float32 (B, A) physical units, the action that led into each latent's frame;
                a NaN row (unknown) gives NaN; None when A = 0.

        Returns:
            float32 (B,) in [0, 1], NaN where the action is unknown.

        Raises:
            ValueError: actions given to a head without action input, or missing for one with it,
                or a batch size that differs from the latents'.
        """
        feeds = {"latent": np.ascontiguousarray(latents, np.float32)}
        unknown = np.zeros(len(latents), bool)
        if self.action_dim:
            if actions is None or len(actions) != len(latents):
                raise ValueError(f"the risk head needs one action (A = {self.action_dim}) per latent")
            actions = np.asarray(actions, np.float32).reshape(len(latents), self.action_dim)
            unknown = np.isnan(actions).any(axis=1)
            feeds["action"] = np.where(unknown[:, None], 0.0, actions).astype(np.float32)
        elif actions is not None and np.size(actions):
            raise ValueError("this risk head takes no actions (the model is unconditioned)")
        (risk,) = self.session.run(None, feeds)
        return np.where(unknown, np.nan, risk).astype(np.float32)

    def forecast(self, latents: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """Per candidate and predicted frame, the mean over samples of the probability.

        Args:
            latents: float32 (N, S, H, C, h, w) predicted latents (every sample).
            actions: float32 (N, H, A) physical units, actions[n, k] applied at the frame before
                frame k; None when A = 0.

        Returns:
            float32 (N, H) in [0, 1] (NaN where the action is unknown).
        """
        n, s, h = latents.shape[:3]
        flat_actions = None
        if actions is not None:
            flat_actions = np.broadcast_to(np.asarray(actions, np.float32)[:, None], (n, s, h, actions.shape[-1]))
            flat_actions = flat_actions.reshape(n * s * h, -1)  # (N * S * H, A)
        risk = self.probabilities(latents.reshape(n * s * h, *latents.shape[3:]), flat_actions)  # (N * S * H,)
        return risk.reshape(n, s, h).mean(axis=1)  # (N, H)


# Frames per encoder call and clips per rollout call when collecting samples.
ENGINE_BATCH = 64


@dataclass
class RiskData:
    """Labelled clips of one data split as encoded and predicted latents (N clips of L = K + H frames).

    Attributes:
        latents: float32 (N, L, C, h, w) encoder latents.
        actions: float32 (N, L, A) the recorded commands, actions[:, t] in force from frame t.
        labels: float32 (N, L) 1 / 0 / NaN (unknown) per frame.
        predicted: float32 (N, H, C, h, w) the dynamics' latents of frames K .. L - 1 rolled out from
            frames 0 .. K - 1 under the recorded actions (one sample).
    """

    latents: np.ndarray
    actions: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray

    def encoded_samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every known (latent of frame t, action of t - 1, label of t), t >= 1: (M, C, h, w), (M, A), (M,)."""
        latents, actions, labels = self.latents[:, 1:], self.actions[:, :-1], self.labels[:, 1:]
        known = ~np.isnan(labels)
        return latents[known], actions[known], labels[known]

    def predicted_samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every known predicted sample: latents (M, C, h, w), actions (M, A) (the one applied at
        the frame before), labels (M,), and the step 1..H each latent predicts (M,)."""
        n, horizon = self.predicted.shape[:2]
        k = self.latents.shape[1] - horizon
        actions, labels = self.actions[:, k - 1:k - 1 + horizon], self.labels[:, k:]  # (N, H, A), (N, H)
        steps = np.broadcast_to(np.arange(1, horizon + 1), (n, horizon))
        known = ~np.isnan(labels)
        return self.predicted[known], actions[known], labels[known], steps[known]

    def summary(self) -> dict:
        """Counts for logs and model.json."""
        known = self.labels[~np.isnan(self.labels)]
        return {"clips": len(self.latents), "frames_labelled": int(known.size),
                "positive_share": round(float(known.mean()), 4) if known.size else None}


def collect_risk_data(engine, labelled: Iterable[tuple[object, np.ndarray]], horizon: int, *,
                      progress: Callable[[Iterable], Iterable] = iter) -> RiskData | None:
    """Encode labelled clips and roll the dynamics out over their last `horizon` frames.

    Args:
        engine: the WorldModelEngine whose latents the head sees.
        labelled: (clip with frames uint8 (L, H, W, 3) at the model's size and actions (L, A), labels (L,))
            pairs, L = K + horizon (sora_ros.bag.motion.labelled_clips).
        horizon: H.
        progress: wraps the rollout batches (a progress bar), e.g. tqdm.

    Returns:
        The data, or None when `labelled` holds no clip.
    """
    latents, actions, labels = [], [], []
    for clip, clip_labels in labelled:
        frames = clip.frames  # (L, H, W, 3)
        latents.append(np.concatenate([engine.encode(frames[i:i + ENGINE_BATCH])
                                       for i in range(0, len(frames), ENGINE_BATCH)]))
        actions.append(clip.actions)
        labels.append(clip_labels)
    if not latents:
        return None
    latents, actions, labels = np.stack(latents), np.stack(actions), np.stack(labels)
    k = latents.shape[1] - horizon
    predicted = np.zeros((len(latents), horizon, *latents.shape[2:]), np.float32)
    for i in progress(range(0, len(latents), ENGINE_BATCH)):
        chunk = slice(i, i + ENGINE_BATCH)
        planned = actions[chunk, k - 1:k - 1 + horizon] if engine.info.action_dim else None  # (B, H, A)
        predicted[chunk] = engine.rollout(latents[chunk, :k], planned, horizon=horizon, seed=i).latents[:, 0]
    return RiskData(latents, actions, labels, predicted)


def risk_metrics(score: Callable[[np.ndarray, np.ndarray], np.ndarray], data: RiskData) -> dict:
    """ROC AUC of a head on encoded and on predicted latents, and per predicted step.

    Args:
        score: (latents (M, C, h, w), actions (M, A)) -> (M,) scores (probabilities or logits).
        data: held-out samples.

    Returns:
        {"auc_encoded", "auc_predicted", "auc_predicted_per_step": [H], "samples", "positive_share"};
        an AUC is NaN when a class is absent.
    """
    latents, actions, labels = data.encoded_samples()
    p_latents, p_actions, p_labels, steps = data.predicted_samples()
    encoded, predicted = score(latents, actions), score(p_latents, p_actions)
    return {"auc_encoded": round(roc_auc(labels, encoded), 4), "auc_predicted": round(roc_auc(p_labels, predicted), 4),
            "auc_predicted_per_step": [round(roc_auc(p_labels[steps == j], predicted[steps == j]), 4)
                                       for j in range(1, data.predicted.shape[1] + 1)],
            "samples": int(len(labels)), "positive_share": round(float(labels.mean()), 4) if len(labels) else None}
