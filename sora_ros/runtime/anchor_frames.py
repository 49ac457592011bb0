"""The camera frames a pipeline keeps for anchored decoding, and the decoding itself.

A rollout's predicted latents become frames built from the context's last real camera frame
(sora_ros/runtime/anchor.py): the anchor graph needs the context's last two frames at the
model's resolution and at the camera's, their optical flows and the decoder's image of the last
context latent. Those are kept here, per stamp, for the newest frames only; what a context
needs (the flows, their trajectories, the reconstruction) is computed by `prepare` beside the
rollout and handed to `decode`, and the last one computed is kept for the next rollout from
the same context (and output size).

    frames = AnchorFrames(engine)                        # engine.anchor is not None
    frames.keep(stamp_ns, camera_rgb, fitted)            # per observed frame
    prepared = frames.prepare(context, steps, output_hw)  # beside the rollout (another thread)
    images, shares = frames.decode(context, latents, indices, horizon, actions, output_hw, prepared) or (vae)

Thread-safe: frames are kept from the observing thread while rollouts decode on others. `decode`
warps the frames while a worker thread decodes the synthesis to blend in.

Legend: D decoded frames, N candidates, H horizon, A action dim, H0/W0 camera image, C/h/w latent grid.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from sora_ros.core.context import Context
from sora_ros.runtime.anchor import FLOW_MAX_SIDE, MASK_FLOOR, Window, blend_synthesis, camera_flow, classical_flow, \
    model_window, scaled_window, trajectory_motion, warp_frame
from sora_ros.runtime.engine import WorldModelEngine

# Observed frames kept at the model's resolution to find the context's last two, and at the
# camera's (the newest few: the context's previous frame is dt back, 6 frames at 60 Hz and dt 0.1 s).
KEPT_FRAMES = 32
KEPT_CAMERA_FRAMES = 8


@dataclass(frozen=True)
class DecodeInputs:
    """What anchored decoding from one context needs, computed once.

    Attributes:
        key: (AnchorFrames generation, the context's last two stamps, the render size or None).
        previous, last: uint8 (H, W, 3) the context's last two frames at the model's resolution.
        flow: float32 (2, H, W) `classical_flow(previous, last)`.
        camera: uint8 RGBA the last camera frame at the render size, (Ho, Wo, 4) or (H0, W0, 4):
            the form `warp_frame` warps fastest, converted once per context.
        window: where the model's view lies in `camera` when resized (`scaled_window`), else None.
        trajectories: float32 (L, h1, w1, 2) `trajectory_motion` of the camera frames' `camera_flow`.
        reconstruction: uint8 (H, W, 3) the decoder's image of the context's last latent.
    """

    key: tuple
    previous: np.ndarray
    last: np.ndarray
    flow: np.ndarray
    camera: np.ndarray
    window: Window | None
    trajectories: np.ndarray
    reconstruction: np.ndarray


class AnchorFrames:
    """See the module docstring.

    Args:
        engine: a loaded model with an anchored decoder (engine.anchor is not None).
    """

    def __init__(self, engine: WorldModelEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._fitted: OrderedDict[int, np.ndarray] = OrderedDict()  # stamp -> uint8 (H, W, 3)
        self._camera: OrderedDict[int, np.ndarray] = OrderedDict()  # stamp -> uint8 (H0, W0, 3), newest last
        self._generation = 0  # increases with every clear: what was computed before is stale
        self._kept: DecodeInputs | None = None  # the last computed, for the next rollout from its context
        self._synthesiser = ThreadPoolExecutor(1, thread_name_prefix="anchor_synthesis")

    def camera_shape(self) -> tuple[int, ...] | None:
        """Shape of the newest kept camera frame, or None."""
        with self._lock:
            newest = next(reversed(self._camera.values()), None)
        return None if newest is None else newest.shape

    def keep(self, stamp_ns: int, image: np.ndarray, fitted: np.ndarray, pinned: tuple[int, ...] = ()) -> None:
        """Keep a frame the context accepted: uint8 (H0, W0, 3) as the camera gave it and
        (H, W, 3) as the model saw it (sora_ros.core.preprocess.fit_frame). The oldest frames
        beyond KEPT_FRAMES / KEPT_CAMERA_FRAMES are forgotten, except the `pinned` stamps (the
        last two of the newest complete context, which a what-if may still decode from after a
        lost frame)."""
        with self._lock:
            self._fitted[stamp_ns] = fitted
            self._camera[stamp_ns] = image
            for frames, limit in ((self._fitted, KEPT_FRAMES), (self._camera, KEPT_CAMERA_FRAMES)):
                for stamp in [stamp for stamp in frames if stamp not in pinned][:max(0, len(frames) - limit)]:
                    del frames[stamp]

    def clear(self) -> None:
        """Forget every kept frame (the context restarted)."""
        with self._lock:
            self._fitted.clear()
            self._camera.clear()
            self._kept = None
            self._generation += 1

    def decode(self, context: Context, latents: np.ndarray, indices: tuple[int, ...], horizon: int,
               actions: np.ndarray | None, output_hw: tuple[int, int] | None = None,
               prepared: DecodeInputs | None = None) -> tuple[np.ndarray, dict[int, float]] | None:
        """Anchored frames of latents[indices], or None when the context's last two frames are
        not kept (latents-only input, or frames from before a restart).

        Args:
            context: the rollout's context.
            latents: float32 (N * H, C, h, w), the rollout's latents by flat index n * H + k.
            indices: the flat indices to decode.
            horizon: H.
            actions: float32 (N, H, A) the rollout's actions in physical units, NaN rows unknown,
                or None (unknown).
            output_hw: (Ho, Wo) of fewer pixels than the camera's: rendered at this size from the
                last camera frame resized to it (the camera flow on a grid whose longer side is at
                most max(Ho, Wo)), so their cost follows the output's pixels. None, or a larger
                size: at the camera's (H0, W0) (a caller resizes those).
            prepared: `prepare`'s result for this context and output size, used when it still
                fits (else computed here).

        Returns:
            uint8 (D, Ho, Wo, 3) or (D, H0, W0, 3) frames, and each one's share of synthesised (not
            warped) pixels in [0, 1] by flat index.
        """
        steps = np.array([i % horizon + 1 for i in indices], np.float32)
        output_hw = self._render_size(output_hw)
        inputs = self._inputs(context, output_hw, int(steps.max()), prepared)
        if inputs is None:
            return None
        chosen = latents[list(indices)]  # (D, C, h, w)
        planned = None if actions is None else actions[[i // horizon for i in indices]]  # (D, H, A)
        motion, mask = self.engine.anchor_fields(inputs.previous, inputs.last, inputs.flow, chosen,
                                                 context.latents[-1], steps, inputs.reconstruction, planned)
        correction = motion - steps[:, None, None, None] * inputs.flow[None]  # (D, 2, H, W): the learned part
        needs = mask.reshape(len(indices), -1).max(axis=1) >= MASK_FLOOR  # (D,)
        # The decoder (ONNX Runtime) runs while the frames warp (OpenCV): it leaves the CPUs partly idle.
        synthesising = self._synthesiser.submit(self.engine.decode, chosen[needs]) if needs.any() else None
        images = np.empty((len(indices), *inputs.camera.shape[:2], 3), np.uint8)  # (D, Ho, Wo, 3), rendered in place
        for j in range(len(indices)):
            warp_frame(inputs.camera, correction[j], inputs.trajectories[int(steps[j]) - 1], inputs.window, images[j])
        if synthesising is not None:
            for j, synthesis in zip(np.flatnonzero(needs), synthesising.result()):  # (D', H, W, 3)
                blend_synthesis(images[j], mask[j], synthesis, inputs.window)
        weights = np.where(mask < MASK_FLOOR, 0.0, mask).reshape(len(indices), -1).mean(axis=1)  # (D,)
        return images, dict(zip(indices, weights.tolist()))

    def prepare(self, context: Context, steps: int, output_hw: tuple[int, int] | None = None) -> DecodeInputs | None:
        """What `decode` from `context` needs for frames up to step `steps` at `output_hw` (as
        `decode` takes it): run beside the rollout, whose ONNX Runtime calls leave the 2 CPUs
        partly idle, and hand the result to `decode` as `prepared` (README, "Decoding's context
        work beside the rollout"). None when the context's last two frames are not kept."""
        return self._inputs(context, self._render_size(output_hw), steps)

    def _render_size(self, output_hw: tuple[int, int] | None) -> tuple[int, int] | None:
        """The size `decode` renders at: `output_hw` when it has fewer pixels than the camera,
        else None (the camera's; rendering larger costs more than resizing the camera-sized frames)."""
        camera = self.camera_shape()
        if output_hw is None or camera is None or output_hw[0] * output_hw[1] >= camera[0] * camera[1]:
            return None
        return tuple(output_hw)

    def _inputs(self, context: Context, output_hw: tuple[int, int] | None, steps: int,
                prepared: DecodeInputs | None = None) -> DecodeInputs | None:
        """`prepared` when it fits, else the kept entry when it fits, else computed (and kept);
        None when the context's last two frames are not kept."""
        if len(context.stamps_ns) < 2:
            return None
        pair = tuple(context.stamps_ns[-2:])
        with self._lock:
            previous, last = self._fitted.get(pair[0]), self._fitted.get(pair[1])
            camera_previous, camera, cached = self._camera.get(pair[0]), self._camera.get(pair[1]), self._kept
            generation = self._generation
        if previous is None or last is None or camera is None or camera_previous is None:
            return None
        key = (generation, pair, output_hw)
        for candidate in (prepared, cached):
            if candidate is not None and candidate.key == key and len(candidate.trajectories) >= steps:
                return candidate
        # Outside the lock: the flows take milliseconds. Frames rendered smaller than the flow grid
        # take their flow on their own scale.
        max_side = FLOW_MAX_SIDE if output_hw is None else min(FLOW_MAX_SIDE, max(output_hw))
        trajectories = trajectory_motion(camera_flow(camera_previous, camera, max_side), steps)
        window = None
        if output_hw is not None:
            window = scaled_window(model_window(camera.shape[:2], last.shape[:2]), camera.shape[:2], output_hw)
            camera = cv2.resize(camera, output_hw[::-1], interpolation=cv2.INTER_AREA)
        inputs = DecodeInputs(key, previous, last, classical_flow(previous, last),
                              cv2.cvtColor(camera, cv2.COLOR_RGB2RGBA), window, trajectories,
                              self.engine.decode(context.latents[-1:])[0])
        with self._lock:
            if self._generation == generation:  # not cleared meanwhile
                self._kept = inputs
        return inputs
