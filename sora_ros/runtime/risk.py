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

Legend: N candidates, S samples, H horizon, A action dim, C/h/w latent grid, B batch.
"""

from __future__ import annotations

import numpy as np

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
