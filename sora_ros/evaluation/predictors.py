"""Predictors for scoring: the world model through the runtime engine, and the baselines.

Each maps (context uint8 (K, H, W, 3), actions float32 (K + L, A)) to uint8
(L, H, W, 3); see sora_ros.evaluation.scoring.
"""

from __future__ import annotations

import numpy as np

from sora_ros.evaluation.baselines import FlowExtrapolation, copy_last
from sora_ros.runtime.engine import WorldModelEngine


class ModelPredictor:
    """The world model exactly as the nodes run it: encode, roll out in latent space, decode."""

    def __init__(self, engine: WorldModelEngine, horizon: int, samples: int = 1, seed: int = 0):
        self.engine, self.horizon, self.samples, self.seed = engine, horizon, samples, seed

    def __call__(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        k = context.shape[0]
        latents = self.engine.encode(context)  # (K, C, h, w)
        future = actions[k - 1 : k - 1 + self.horizon] if self.engine.info.action_dim else None  # (L, A)
        result = self.engine.rollout(latents, future, horizon=self.horizon, samples=self.samples, seed=self.seed)
        predicted = result.latents[0].mean(axis=0)  # (L, C, h, w): mean over samples
        return self.engine.decode(predicted)


def baseline_predictors(horizon: int) -> dict:
    """copy-last and optical-flow extrapolation, in the predictor signature."""
    flow = FlowExtrapolation()
    return {
        "copy-last": lambda context, actions: copy_last(context, horizon),
        "flow": lambda context, actions: flow(context, horizon),
    }
