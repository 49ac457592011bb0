"""Predictors for scoring: the world model through the runtime engine, and the baselines.

Each maps (context uint8 (K, H, W, 3), actions float32 (K + L, A)) to uint8
(L, H, W, 3); see sora_ros.evaluation.scoring.
"""

from __future__ import annotations

import numpy as np

from sora_ros.core.context import Context
from sora_ros.core.psnr import psnr_from_mse
from sora_ros.core.requests import RolloutRequest
from sora_ros.evaluation.baselines import FlowExtrapolation, copy_last
from sora_ros.evaluation.metrics import mse
from sora_ros.runtime.pipeline import WorldModelPipeline


class ModelPredictor:
    """The world model exactly as the nodes run it, through their pipeline: encode, roll out in
    latent space, decode.

    It also keeps the VAE's reconstruction PSNR of every context frame it encodes
    (`reconstruction_psnr`): the ceiling on what any prediction can score.
    """

    def __init__(self, pipeline: WorldModelPipeline, horizon: int, samples: int = 1, seed: int = 0):
        self.pipeline, self.engine = pipeline, pipeline.engine
        self.horizon, self.samples, self.seed = horizon, samples, seed
        self.reconstruction_psnr: list[float] = []
        self._last_context: np.ndarray | None = None

    def __call__(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        k = context.shape[0]
        latents = self.engine.encode(context)  # (K, C, h, w)
        if context is not self._last_context:  # the action-sensitivity rerun sees the same frames
            self._last_context = context
            for frame, reconstructed in zip(context, self.engine.decode(latents)):
                self.reconstruction_psnr.append(psnr_from_mse(mse(reconstructed, frame)))
        future = actions[None, k - 1 : k - 1 + self.horizon] if self.engine.info.action_dim else None  # (1, L, A)
        request = RolloutRequest(future, 1, self.horizon, self.samples, self.seed, return_images=True)
        start = Context(latents, tuple(range(k)), k - 1, "", 0, 0.0)  # offline: stamps are frame indices
        return self.pipeline.what_if(request, start).forecasts[0].frames  # (L, H, W, 3)


def baseline_predictors(horizon: int) -> dict:
    """copy-last and optical-flow extrapolation, in the predictor signature."""
    flow = FlowExtrapolation()
    return {
        "copy-last": lambda context, actions: copy_last(context, horizon),
        "flow": lambda context, actions: flow(context, horizon),
    }
