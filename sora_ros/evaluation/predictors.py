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
    """The world model exactly as the nodes run it, through their pipeline: fit and encode each
    camera frame, observe it (with the frame, so an anchored decoder warps it at its resolution),
    roll out in latent space, decode.

    It also keeps the VAE's reconstruction PSNR of every context frame it encodes
    (`reconstruction_psnr`, at the model's resolution): the ceiling on what a prediction through
    the VAE decoder alone can score; and, per step k, the share of synthesised (not warped) pixels
    of anchored predictions (`synthesised_share`).
    """

    def __init__(self, pipeline: WorldModelPipeline, horizon: int, samples: int = 1, seed: int = 0):
        self.pipeline, self.engine = pipeline, pipeline.engine
        self.horizon, self.samples, self.seed = horizon, samples, seed
        self.reconstruction_psnr: list[float] = []
        self.synthesised_share: dict[int, list[float]] = {k: [] for k in range(1, horizon + 1)}
        self._last_context: np.ndarray | None = None
        self._start: Context | None = None

    def __call__(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        k = context.shape[0]
        if context is not self._last_context:  # the action-sensitivity rerun sees the same frames
            self._last_context = context
            self.pipeline.reset()
            fitted, latents = zip(*(self.pipeline.encode(frame) for frame in context))  # K x (H, W, 3), (C, h, w)
            for t, (image, frame, latent) in enumerate(zip(context, fitted, latents)):
                self.pipeline.observe(t * self.pipeline.dt_ns, "", latent, image=image, fitted=frame)  # model's grid
            for frame, reconstructed in zip(fitted, self.engine.decode(np.stack(latents))):
                self.reconstruction_psnr.append(psnr_from_mse(mse(reconstructed, frame)))
            self._start = self.pipeline.latest_context()
        future = actions[None, k - 1 : k - 1 + self.horizon] if self.engine.info.action_dim else None  # (1, L, A)
        request = RolloutRequest(future, 1, self.horizon, self.samples, self.seed, return_images=True)
        outcome = self.pipeline.what_if(request, self._start)
        for index, share in outcome.synthesised.items():
            self.synthesised_share[index % self.horizon + 1].append(share)
        return outcome.forecasts[0].frames  # (L, H0, W0, 3)


def baseline_predictors(horizon: int) -> dict:
    """copy-last and optical-flow extrapolation, in the predictor signature."""
    flow = FlowExtrapolation()
    return {
        "copy-last": lambda context, actions: copy_last(context, horizon),
        "flow": lambda context, actions: flow(context, horizon),
    }
