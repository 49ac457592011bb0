"""`~/rollout` (sora_ros/srv/Rollout): what-if rollouts of candidate action sequences from
the latest context, in one batched call. The checks live in sora_ros/live/requests.py.

The node's `deadline_ms` budget applies here too: a call whose estimated cost does not fit
is served with fewer sampler steps (never by dropping frames the caller asked for), and
the response's message says so."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sora_ros.live.context import Context
from sora_ros.live.deadline import CostModel, plan_rollout
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
        counters: where calls, refusals and deadline cuts are counted ("service/calls",
            "service/refused/<why>", "service/deadline/reduced_steps", "service/deadline/missed").
        logger: the node's logger.
        budget_ms: returns the current time budget of one call (0: none).
    """

    def __init__(self, engine: WorldModelEngine, model: str, latest_context: Callable[[], Context | None],
                 counters: Counters, logger, budget_ms: Callable[[], float] = lambda: 0.0) -> None:
        self.engine, self.model, self.latest_context = engine, model, latest_context
        self.counters, self.logger, self.budget_ms = counters, logger, budget_ms
        # Costs per batch row (candidate x sample): the service's batches differ from the node's own rollouts.
        self.cost = CostModel()

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
        rows = checked.candidates * checked.samples
        decoded = tuple(range(checked.candidates * checked.horizon)) if checked.return_images else ()
        budget_ms = self.budget_ms()
        plan = plan_rollout(self.cost, rows * checked.horizon, info.sampler_steps, decoded, decoded, budget_ms)
        try:
            result = self.engine.rollout(contexts, checked.actions, horizon=checked.horizon,
                                         samples=checked.samples, seed=checked.seed, steps=plan.steps)
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
        self.cost.observe_rollout(1e3 * result.seconds, rows * checked.horizon, plan.steps)
        self.cost.observe_decode(1e3 * decode_s, len(decoded))
        notes = list(plan.notes)
        if plan.reduced_steps:
            self.counters.add("service/deadline/reduced_steps")
        if budget_ms > 0 and 1e3 * total_s > budget_ms:
            self.counters.add("service/deadline/missed")
            notes.append(f"took {1e3 * total_s:.0f} ms, over the {budget_ms:g} ms budget")
        response.futures = [
            lm.future_frames(origin_ns=context.newest_stamp_ns, frame_id=context.frame_id, model=self.model, info=info,
                             latents=means[n], frames=None if frames is None else frames[n],
                             uncertainty=result.uncertainty[n],
                             actions=None if checked.actions is None else checked.actions[n],
                             samples=checked.samples, steps=plan.steps, latency_s=total_s)
            for n in range(checked.candidates)
        ]
        response.success = True
        response.message = "; ".join(notes)
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
