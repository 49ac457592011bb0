"""`~/rollout` (sora_ros/srv/Rollout): what-if rollouts of candidate action sequences from
the latest context, in one batched call. The checks live in sora_ros/live/requests.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sora_ros.live.context import Context
from sora_ros.live.requests import RequestError, check_request
from sora_ros.live.stats import Counters
from sora_ros.nodes import live_messages as lm
from sora_ros.runtime.engine import NonFiniteOutputError, WorldModelEngine
from sora_ros.srv import Rollout


class RolloutServer:
    """Serves Rollout requests with an engine and the node's latest context.

    Args:
        engine: the loaded model.
        model: its model id.
        latest_context: returns the newest complete context, or None before there is one.
        counters: where calls and refusals are counted ("service/calls", "service/refused/<why>").
        logger: the node's logger.
    """

    def __init__(self, engine: WorldModelEngine, model: str, latest_context: Callable[[], Context | None],
                 counters: Counters, logger) -> None:
        self.engine, self.model, self.latest_context = engine, model, latest_context
        self.counters, self.logger = counters, logger

    def handle(self, request: Rollout.Request, response: Rollout.Response) -> Rollout.Response:
        """Fill `response`: one FutureFrames per candidate, or success=False and the reason."""
        start = time.perf_counter()
        self.counters.add("service/calls")
        info = self.engine.info
        try:
            checked = check_request(np.asarray(request.actions, np.float32), request.candidates, request.horizon,
                                    request.action_dim, request.samples, request.seed, request.return_images,
                                    info.action_dim)
        except RequestError as error:
            return self._refuse(response, "bad_request", str(error))
        context = self.latest_context()
        if context is None:
            return self._refuse(response, "no_context", f"no context yet: the model needs {info.context_frames} camera "
                                "frames dt apart before it can predict")
        contexts = np.broadcast_to(context.latents, (checked.candidates, *context.latents.shape))  # (N, K, C, h, w)
        try:
            result = self.engine.rollout(contexts, checked.actions, horizon=checked.horizon,
                                         samples=checked.samples, seed=checked.seed)
            means = result.latents.mean(axis=1)  # (N, H, C, h, w)
            decode_start = time.perf_counter()
            frames = None
            if checked.return_images:
                flat = self.engine.decode(means.reshape(-1, *means.shape[2:]))  # (N * H, Hi, Wi, 3)
                frames = flat.reshape(checked.candidates, checked.horizon, *flat.shape[1:])
            decode_s = time.perf_counter() - decode_start
        except NonFiniteOutputError as error:
            return self._refuse(response, "nonfinite_output", f"the model produced NaN/Inf: {error}")
        total_s = time.perf_counter() - start
        response.futures = [
            lm.future_frames(origin_ns=context.newest_stamp_ns, frame_id=context.frame_id, model=self.model, info=info,
                             latents=means[n], frames=None if frames is None else frames[n],
                             uncertainty=result.uncertainty[n],
                             actions=None if checked.actions is None else checked.actions[n],
                             samples=checked.samples, steps=info.sampler_steps, latency_s=total_s)
            for n in range(checked.candidates)
        ]
        response.success = True
        response.message = ""
        response.rollout_ms = 1e3 * result.seconds
        response.decode_ms = 1e3 * decode_s
        response.total_ms = 1e3 * total_s
        return response

    def _refuse(self, response: Rollout.Response, reason: str, message: str) -> Rollout.Response:
        self.counters.add(f"service/refused/{reason}")
        self.logger.warning(f"~/rollout refused: {message}")
        response.success = False
        response.message = message
        return response
