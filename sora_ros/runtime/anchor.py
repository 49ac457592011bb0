"""Anchored decoding without torch: predicted latents -> frames built from the last real frame.

The anchored decoder graph (model.json "anchor", anchor.onnx) maps the last two observed frames
at the model's resolution, a classical optical flow between them, the predicted latent of step k,
the last observed latent and (graphs with a `plan` input) the actions planned up to step k to a
motion field and a blend mask (sora_ros/model/anchor.py). Here
the two fields are upsampled to the camera's own frame, the camera's last real frame is warped
with cv2.remap, and the VAE decoder's image of the latent is blended in only where the mask asks
for it (and decoded only then). Output size follows the camera; an output of fewer pixels
(a node's `output_size`) is rendered at its own size from the camera frame resized to it.

    decoder = AnchoredDecoder(session)
    flow = classical_flow(previous_fitted, last_fitted)                     # (2, H, W), once per context
    camera_flow = camera_flow(previous_camera_frame, last_camera_frame)     # (h1, w1, 2), once per context
    motion, mask = decoder.fields(previous_fitted, last_fitted, flow, latents, context_latent, steps, reconstruction,
                                  normalised_actions)                        # (B, L, A) or None
    correction = motion[i] - steps[i] * flow                                # what the network adds
    base = trajectory_motion(camera_flow, max(steps))                       # (L, h1, w1, 2)
    frame = render(last_camera_frame, correction, mask[i], synthesis_or_None, base[steps[i] - 1])

The network's motion is constant-velocity flow plus a learned correction. The runtime keeps the
correction (model resolution, upsampled) but takes the constant-velocity part from the same flow
computed on the camera's own frames (longer side capped at FLOW_MAX_SIDE), which is sharper than
the model-resolution flow, followed along trajectories (`trajectory_motion`, on the flow's own
grid: motion fields are smooth, so composing them there and upsampling once per frame costs a
quarter of doing it at 640x480) and applied in one warp. The correction and the mask live in the centre window fit_frame crops
(the frame the model saw); outside it, on a camera wider than the model's aspect ratio, they are
extended by repeating their edge.

Legend: B batch, H/W model image, H0/W0 camera image, h1/w1 camera flow grid, C/h/w latent grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sora_ros.core.regions import centred_window
from sora_ros.runtime.model_dir import BATCH

ANCHOR_GRAPH = "anchor"
ANCHOR_FILE = "anchor.onnx"
# Mask values below this count as "warp only": the synthesis is not decoded nor blended, so a
# static scene gives the last frame back exactly rather than a faint blend of a blurred decode.
MASK_FLOOR = 0.02
# Motion below this many camera pixels is no motion: warping by it would only blur.
MOTION_FLOOR_PX = 0.05
# The classical flow feature: DIS (OpenCV) between the last two observed frames, at the model's resolution.
FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
# DIS (OpenCV 5.0.0, medium preset) crashed the process (SIGSEGV) on frames under 16 px on a side
# (12x40, 14x140; 16x160 and 12x12 ran): smaller frames are enlarged to this for it.
MIN_DIS_SIDE = 16
# The camera flow is computed on frames whose longer side is at most this. 320 cut DIS (medium) on
# a 640x480 pair from 50 to 7.6 ms but cost 0.03 to 0.11 dB on held-out real footage (bikes is
# 640x272); README, "Camera flow on a smaller grid".
FLOW_MAX_SIDE = 640


def anchor_signature(image_size: tuple[int, int], latent_shape: tuple[int, int, int], plan_features: int = 0) -> dict:
    """The anchor graph's inputs and outputs in the model_dir signature format; `plan_features`
    > 0 adds the `plan` input (graphs before it have none and still load)."""
    height, width = image_size

    def tensor(dtype: str, *dims: int) -> dict:
        return {"dtype": dtype, "shape": [BATCH, *dims]}

    latent = tensor("float32", *latent_shape)
    inputs = {"frames": tensor("uint8", 2, height, width, 3), "flow": tensor("float32", 2, height, width),
              "latent": latent, "context_latent": latent, "step": tensor("float32"),
              "reconstruction": tensor("uint8", height, width, 3)}
    if plan_features:
        inputs["plan"] = tensor("float32", plan_features)
    return {"inputs": inputs,
            "outputs": {"motion": tensor("float32", 2, height, width), "mask": tensor("float32", 1, height, width)}}


def plan_size(horizon: int, action_dim: int) -> int:
    """P, the length of a `plan_features` row: horizon x action_dim actions and a known flag."""
    return horizon * action_dim + 1


def plan_features(actions: np.ndarray | None, steps: np.ndarray, horizon: int, action_dim: int) -> np.ndarray:
    """The anchor graph's `plan` input: what the robot is told to do up to each predicted frame.

    Under a known command the camera's motion follows the command (a turn shifts the image, driving
    forward expands it); the classical flow only knows the motion so far.

    Args:
        actions: float32 (B, L, A) normalised network actions (model.json's formula), L >= the
            largest step; a NaN row is unknown (footage without commands). None: all unknown
            (an unconditioned model or no command).
        steps: (B,) the step k >= 1 each row predicts; actions after step k are zeroed.
        horizon: the graph's H (its config's horizon); steps above it see only the first H actions.
        action_dim: A.

    Returns:
        float32 (B, H * A + 1): actions 1..min(k, H) row-major, zeros after, then 1.0 when every
        one of those actions is known, else 0.0 (and all actions zero).
    """
    count = len(steps)
    out = np.zeros((count, plan_size(horizon, action_dim)), np.float32)
    if actions is None or action_dim == 0:
        return out
    for row, step in enumerate(np.asarray(steps, np.int64)):
        taken = np.asarray(actions[row, :min(int(step), horizon)], np.float32)  # (k, A)
        if not np.isnan(taken).any():
            out[row, :taken.size] = taken.reshape(-1)
            out[row, -1] = 1.0
    return out


def classical_flow(previous: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Back-flow from the last frame to the previous one (DIS), the anchor graph's `flow` input.

    Args:
        previous, last: uint8 (H, W, 3) RGB at the model's resolution, dt apart.

    Returns:
        float32 (2, H, W): (dx, dy) such that last(x, y) ~ previous(x + dx, y + dy).
    """
    if previous.shape != last.shape:
        raise ValueError(f"flow frames differ in shape: {previous.shape} vs {last.shape}")
    height, width = last.shape[:2]
    if min(height, width) < MIN_DIS_SIDE:  # enlarged so DIS can run; the flow brought back to this grid
        scale = MIN_DIS_SIDE / min(height, width)
        size = (round(width * scale), round(height * scale))
        enlarged = classical_flow(cv2.resize(previous, size, interpolation=cv2.INTER_LINEAR),
                                  cv2.resize(last, size, interpolation=cv2.INTER_LINEAR))
        return np.ascontiguousarray(resize_motion(enlarged.transpose(1, 2, 0), (height, width)).transpose(2, 0, 1))
    dis = cv2.DISOpticalFlow_create(FLOW_PRESET)  # a fresh one per call: no state shared between threads
    back = dis.calc(cv2.cvtColor(last, cv2.COLOR_RGB2GRAY), cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY), None)
    return np.ascontiguousarray(back.transpose(2, 0, 1))  # (H, W, 2) -> (2, H, W)


def camera_flow(previous: np.ndarray, last: np.ndarray, max_side: int = FLOW_MAX_SIDE) -> np.ndarray:
    """`classical_flow` on camera frames shrunk to at most `max_side` pixels on the longer
    side, on that grid and in its pixels (`resize_motion` brings it to the camera's).

    Args:
        previous, last: uint8 (H0, W0, 3) RGB camera frames, dt apart.
        max_side: FLOW_MAX_SIDE, or less for frames rendered smaller (an output size).

    Returns:
        float32 (h1, w1, 2): (dx, dy) such that last(x, y) ~ previous(x + dx, y + dy), with
        (h1, w1) = (H0, W0) when the longer side is at most `max_side`.
    """
    size = flow_grid(last.shape[:2], max_side)
    if size != last.shape[:2]:
        previous = cv2.resize(previous, size[::-1], interpolation=cv2.INTER_AREA)
        last = cv2.resize(last, size[::-1], interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(classical_flow(previous, last).transpose(1, 2, 0))  # (h1, w1, 2)


def flow_grid(camera_hw: tuple[int, int], max_side: int = FLOW_MAX_SIDE) -> tuple[int, int]:
    """(h1, w1): the camera's (H0, W0) shrunk so that the longer side is at most `max_side`."""
    height, width = camera_hw
    scale = min(1.0, max_side / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale))) if scale < 1.0 else (height, width)


def resize_motion(motion: np.ndarray, camera_hw: tuple[int, int]) -> np.ndarray:
    """A motion field on another grid -> the camera's: bilinear, values rescaled to its pixels.

    Args:
        motion: float32 (h1, w1, 2) displacements in (h1, w1) pixels.
        camera_hw: (H0, W0).

    Returns:
        float32 (H0, W0, 2); `motion` itself when the grids agree.
    """
    height, width = motion.shape[:2]
    if (height, width) == tuple(camera_hw):
        return motion
    resized = cv2.resize(motion, camera_hw[::-1], interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= camera_hw[1] / width
    resized[..., 1] *= camera_hw[0] / height
    return resized


def trajectory_motion(flow: np.ndarray, steps: int) -> np.ndarray:
    """Constant-velocity motion along trajectories, k = 1..steps, as one displacement per step.

    Warping the last frame k times by `flow` (what flow extrapolation does) samples it at
    x + m_k(x) with m_1 = flow and m_k(x) = flow(x) + m_{k-1}(x + flow(x)); composing the
    displacements first and warping once gives the same motion with one interpolation, not k.

    Args:
        flow: float32 (H, W, 2) back-flow in pixels (`camera_flow`).
        steps: the largest k.

    Returns:
        float32 (steps, H, W, 2).
    """
    height, width = flow.shape[:2]
    samples = flow + pixel_grid(height, width)  # (H, W, 2): where each pixel's trajectory comes from
    motion = np.empty((steps, height, width, 2), np.float32)
    motion[0] = flow
    for k in range(1, steps):
        cv2.remap(motion[k - 1], samples, None, cv2.INTER_LINEAR, dst=motion[k], borderMode=cv2.BORDER_REPLICATE)
        motion[k] += flow
    return motion


@dataclass(frozen=True)
class Window:
    """Where the model's view lies in the camera frame (fit_frame's centre crop), in camera pixels."""

    top: int
    left: int
    height: int
    width: int


def model_window(camera_hw: tuple[int, int], model_hw: tuple[int, int]) -> Window:
    """The centre window of the model's aspect ratio, exactly as sora_ros.core.preprocess.fit_frame crops."""
    return Window(*centred_window(*camera_hw, model_hw))


def scaled_window(window: Window, camera_hw: tuple[int, int], output_hw: tuple[int, int]) -> Window:
    """`window` in a camera frame (H0, W0) resized to (Ho, Wo), another aspect ratio allowed."""
    scale_y, scale_x = output_hw[0] / camera_hw[0], output_hw[1] / camera_hw[1]
    top, left = round(window.top * scale_y), round(window.left * scale_x)
    return Window(top, left, max(1, min(round(window.height * scale_y), output_hw[0] - top)),
                  max(1, min(round(window.width * scale_x), output_hw[1] - left)))


@lru_cache(maxsize=8)
def pixel_grid(height: int, width: int) -> np.ndarray:
    """float32 (H, W, 2): each pixel's own (x, y); plus a displacement field, a cv2.remap map (read-only)."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.dstack([xs, ys])
    grid.flags.writeable = False  # shared between calls and threads
    return grid


def _to_camera(field: np.ndarray, camera_hw: tuple[int, int], window: Window) -> np.ndarray:
    """(H, W[, c]) at the model resolution -> (H0, W0[, c]) camera pixels: resized into the window
    (bilinear, half-pixel centres as torch's align_corners=False), edges repeated outside it."""
    resized = cv2.resize(field, (window.width, window.height), interpolation=cv2.INTER_LINEAR)
    bottom = camera_hw[0] - window.top - window.height
    right = camera_hw[1] - window.left - window.width
    if window.top or window.left or bottom or right:
        resized = cv2.copyMakeBorder(resized, window.top, bottom, window.left, right, cv2.BORDER_REPLICATE)
    return resized


def render(last: np.ndarray, motion: np.ndarray, mask: np.ndarray, synthesis: np.ndarray | None,
           base: np.ndarray | None = None, window: Window | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """One predicted frame at the camera's resolution (or at the size `last` was resized to):
    `blend_synthesis(warp_frame(...), ...)`.

    Args:
        last: uint8 (H0, W0, 3) RGB (or (H0, W0, 4) RGBA, see `warp_frame`), the last real camera frame.
        motion: float32 (2, H, W) at the model resolution, model pixels: the motion (or, with
            `base`, the correction added to it).
        mask: float32 (1, H, W) in [0, 1].
        synthesis: uint8 (H, W, 3) the decoder's image of the predicted latent, or None when the
            mask stays below MASK_FLOOR everywhere (then it is not needed).
        base: float32 (h1, w1, 2) motion on any grid in its own pixels, brought to the camera's
            (`resize_motion`) and added to the upsampled `motion`
            (`trajectory_motion(camera_flow(...), k)[k - 1]`), or None.
        window: where the model's view lies in `last`; None: `model_window(last's (H0, W0), (H, W))`.
            Given for a camera frame resized to an output size (`scaled_window`).
        out: uint8 (H0, W0, 3) to render into, or None.

    Returns:
        uint8 (H0, W0, 3) RGB, `out` when given.
    """
    return blend_synthesis(warp_frame(last, motion, base, window, out), mask, synthesis, window)


def warp_frame(last: np.ndarray, motion: np.ndarray, base: np.ndarray | None = None, window: Window | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """`render`'s warp: `last` moved by `motion` (2, H, W) plus `base` (as `render` takes them),
    bilinear, edges repeated; an RGB copy of `last` where the motion stays under MOTION_FLOOR_PX.

    Args:
        last: uint8 (H0, W0, 3) RGB, or (H0, W0, 4) RGBA: the form it is warped in (OpenCV's
            bilinear remap vectorises 4 channels, not 3: 640x480 in half the time), so a caller
            warping one frame many times converts it once.
        out: uint8 (H0, W0, 3) to write into, or None.

    Returns:
        uint8 (H0, W0, 3) RGB, `out` when given.
    """
    camera_hw = last.shape[:2]
    model_hw = motion.shape[1:]
    window = window or model_window(camera_hw, model_hw)
    # Model pixels -> camera pixels before upsampling (resizing is linear): on 1/100 of the pixels.
    scale = np.array([window.width / model_hw[1], window.height / model_hw[0]], np.float32)
    flow = _to_camera(np.ascontiguousarray(motion.transpose(1, 2, 0)) * scale, camera_hw, window)  # (H0, W0, 2)
    if base is not None:
        cv2.add(flow, resize_motion(base, camera_hw), dst=flow)
    rgba = last if last.shape[2] == 4 else cv2.cvtColor(last, cv2.COLOR_RGB2RGBA)
    if cv2.norm(flow, cv2.NORM_INF) >= MOTION_FLOOR_PX:
        cv2.add(flow, pixel_grid(*camera_hw), dst=flow)  # displacements -> the pixels of `last` to sample
        rgba = cv2.remap(rgba, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB, dst=out)


def blend_synthesis(warped: np.ndarray, mask: np.ndarray, synthesis: np.ndarray | None,
                    window: Window | None = None) -> np.ndarray:
    """`render`'s blend, in place: mask * synthesis + (1 - mask) * warped, both upsampled into
    `window` of `warped` (uint8 (H0, W0, 3)); mask (1, H, W) values under MASK_FLOOR count as 0,
    and nothing is blended when the synthesis is None or the whole mask is under it. Returns `warped`."""
    if synthesis is None or mask.max() < MASK_FLOOR:
        return warped
    camera_hw = warped.shape[:2]
    window = window or model_window(camera_hw, mask.shape[1:])
    weight = _to_camera(np.where(mask[0] < MASK_FLOOR, 0.0, mask[0]).astype(np.float32), camera_hw, window)
    content = _to_camera(synthesis, camera_hw, window)
    # weight * content + (1 - weight) * warped, rounded, in one OpenCV pass (4x NumPy's float blend at 640x480)
    return cv2.blendLinear(content, warped, weight, 1.0 - weight, dst=warped)


class AnchoredDecoder:
    """The anchor graph's session, and what the runtime asks of it.

    Args:
        session: onnxruntime.InferenceSession of anchor.onnx (checked by the engine).
        horizon, action_dim: the graph's H and A (its config), for the `plan` input.
        plan_features: P of the `plan` input; 0 for graphs without one.
    """

    def __init__(self, session, horizon: int = 0, action_dim: int = 0, plan_features: int = 0) -> None:
        self.session = session
        self.horizon, self.action_dim, self.plan_features = horizon, action_dim, plan_features

    def fields(self, previous: np.ndarray, last: np.ndarray, flow: np.ndarray, latents: np.ndarray,
               context_latent: np.ndarray, steps: np.ndarray, reconstruction: np.ndarray,
               actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Motion and mask for B predicted latents of one context.

        Args:
            previous, last: uint8 (H, W, 3) the last two observed frames at the model's resolution.
            flow: float32 (2, H, W) from `classical_flow(previous, last)`.
            latents: float32 (B, C, h, w) predicted latents.
            context_latent: float32 (C, h, w) the last observed frame's latent.
            steps: (B,) the step k >= 1 each latent predicts.
            reconstruction: uint8 (H, W, 3) the decoder's image of `context_latent`.
            actions: float32 (B, L, A) normalised actions of each row's rollout, NaN rows unknown,
                or None (unknown); used by graphs with a `plan` input (`plan_features`).

        Returns:
            motion float32 (B, 2, H, W), mask float32 (B, 1, H, W).
        """
        count = latents.shape[0]
        feeds = {
            "frames": np.ascontiguousarray(np.broadcast_to(np.stack([previous, last])[None], (count, 2, *last.shape))),
            "flow": np.ascontiguousarray(np.broadcast_to(flow[None], (count, *flow.shape)), np.float32),
            "latent": np.ascontiguousarray(latents, np.float32),
            "context_latent": np.ascontiguousarray(np.broadcast_to(context_latent[None], latents.shape), np.float32),
            "step": np.asarray(steps, np.float32).reshape(count),
            "reconstruction": np.ascontiguousarray(np.broadcast_to(reconstruction[None], (count, *reconstruction.shape))),
        }
        if self.plan_features:
            feeds["plan"] = plan_features(actions, np.asarray(steps), self.horizon, self.action_dim)
        motion, mask = self.session.run(None, feeds)
        return motion, mask
