"""Anchored decoding: predicted frames built from the last real frame at the camera's resolution
(tiny models; an untrained anchored decoder is constant-velocity flow, with the mask on the warp)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from model_helpers import export_tiny, randomise
from sora_ros.core.context import Verdict
from sora_ros.core.requests import RolloutRequest
from sora_ros.core.units import NS_PER_S
from sora_ros.model.anchor import AnchorConfig, AnchorNet, compose
from sora_ros.model.export import PARITY_TOLERANCE, export_anchor
from sora_ros.runtime.anchor import ANCHOR_FILE, FLOW_MAX_SIDE, MASK_FLOOR, camera_flow, classical_flow, \
    model_window, plan_features, plan_size, render, trajectory_motion, warp_frame
from sora_ros.runtime.anchor_frames import KEPT_CAMERA_FRAMES
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.model.weights import load_weights
from sora_ros.runtime.model_dir import MODEL_JSON, TRAINABLE_WEIGHTS
from sora_ros.runtime.pipeline import RolloutSettings, WorldModelPipeline

CAMERA = (96, 160)  # (H0, W0): wider than the tiny model's square input
HORIZON = 4
SHIFT_PX = 2  # per step, for the translating texture
T0_NS = 1000 * NS_PER_S


def _anchor_net(latent_channels: int, randomised: bool = False) -> AnchorNet:
    torch.manual_seed(0)
    net = AnchorNet(AnchorConfig(width=8, horizon=HORIZON), latent_channels)
    return randomise(net, 3).eval() if randomised else net.eval()


@pytest.fixture(scope="module")
def anchored_dir(tmp_path_factory):
    directory = export_tiny(tmp_path_factory.mktemp("anchored"))
    info = WorldModelEngine(directory).info
    export_anchor(_anchor_net(info.latent_shape[0]), directory)
    return directory


def _texture(rng, height: int, width: int) -> np.ndarray:
    """A smooth random texture (blurred noise), uint8 (height, width, 3)."""
    import cv2

    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3.0)


def _predict(directory, frames: list[np.ndarray], output_size=(0, 0)) -> tuple[np.ndarray, WorldModelPipeline]:
    pipeline = WorldModelPipeline(WorldModelEngine(directory))
    pipeline.settings = RolloutSettings(horizon=HORIZON, output_size=output_size)
    for t, frame in enumerate(frames):
        _, latent = pipeline.encode(frame)
        pipeline.observe(1000 * NS_PER_S + t * pipeline.dt_ns, "camera", latent, image=frame)
    actions = np.zeros((1, HORIZON, pipeline.info.action_dim), np.float32) if pipeline.info.action_dim else None
    outcome = pipeline.what_if(RolloutRequest(actions, 1, HORIZON, 1, 0, return_images=True))
    return outcome.forecasts[0].frames, pipeline


def test_observe_refuses_an_image_or_fitted_frame_that_is_not_the_latents(anchored_dir):
    """Both were kept and failed at the next rollout's decoding (ONNX Runtime, OpenCV)."""
    pipeline = WorldModelPipeline(WorldModelEngine(anchored_dir))
    height, width = pipeline.info.image_size
    frame = _texture(np.random.default_rng(0), height, width)
    fitted, latent = pipeline.encode(frame)
    wide = _texture(np.random.default_rng(1), height, 2 * width)  # another grid of the model's
    with pytest.raises(ValueError, match="not this image's"):
        pipeline.observe(0, "camera", latent, image=wide)
    for wrong in (fitted[: height // 2], fitted.astype(np.float32)):
        with pytest.raises(ValueError, match="fitted must be the image as encode fits it"):
            pipeline.observe(0, "camera", latent, image=frame, fitted=wrong)
    assert pipeline.observe(0, "camera", latent, image=frame, fitted=fitted) is Verdict.ACCEPTED


def test_export_adds_the_anchor_graph_with_parity(tmp_path):
    directory = export_tiny(tmp_path / "m")
    before = json.loads((directory / MODEL_JSON).read_text())["files"]
    net = _anchor_net(WorldModelEngine(directory).info.latent_shape[0], randomised=True)
    parity = export_anchor(net, directory)
    assert parity <= PARITY_TOLERANCE
    meta = json.loads((directory / MODEL_JSON).read_text())
    assert meta["anchor"]["file"] == ANCHOR_FILE and ANCHOR_FILE in meta["files"]
    unchanged = {k: v for k, v in before.items() if k != TRAINABLE_WEIGHTS}
    assert {k: v for k, v in meta["files"].items() if k not in (ANCHOR_FILE, TRAINABLE_WEIGHTS)} == unchanged  # graphs untouched
    assert meta["files"][TRAINABLE_WEIGHTS] != before[TRAINABLE_WEIGHTS], "the anchor's weights join weights.safetensors"
    assert load_weights(directory).anchor is not None
    engine = WorldModelEngine(directory)
    assert engine.anchor is not None
    # The runtime's graph gives what torch gives, on real-looking inputs.
    rng = np.random.default_rng(1)
    height, width = engine.info.image_size
    frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    flow = rng.standard_normal((2, height, width)).astype(np.float32)
    latents = rng.standard_normal((3, *engine.info.latent_shape)).astype(np.float32)
    recon = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    motion, mask = engine.anchor_fields(frames[0], frames[1], flow, latents, latents[0], np.array([1, 2, 3]), recon)
    with torch.no_grad():
        expected = net(torch.from_numpy(np.stack([frames] * 3)), torch.from_numpy(np.stack([flow] * 3)),
                       torch.from_numpy(latents), torch.from_numpy(np.stack([latents[0]] * 3)),
                       torch.tensor([1.0, 2.0, 3.0]), torch.from_numpy(np.stack([recon] * 3)))
    assert np.abs(motion - expected[0].numpy()).max() < 1e-3 and np.abs(mask - expected[1].numpy()).max() < 1e-3


def test_plan_features_keep_the_actions_up_to_the_step_and_flag_unknown_ones():
    actions = np.arange(1, 2 * HORIZON * 2 + 1, dtype=np.float32).reshape(2, HORIZON, 2)  # (B, H, A)
    actions[1, 1] = np.nan  # an unknown command at step 2 of the second row
    plan = plan_features(actions, np.array([2, 1]), HORIZON, 2)
    assert plan.shape == (2, plan_size(HORIZON, 2)) == (2, 2 * HORIZON + 1)
    assert plan[0].tolist() == [1, 2, 3, 4] + [0] * (2 * HORIZON - 4) + [1]  # steps 1-2 then zeros, known
    assert plan[1].tolist() == [2 * HORIZON + 1, 2 * HORIZON + 2] + [0] * (2 * HORIZON - 2) + [1]  # step 1 only: the NaN comes later
    unknown = plan_features(actions, np.array([2, 2]), HORIZON, 2)[1]
    assert not unknown.any()  # a NaN among the first k: all zero, flag 0
    assert not plan_features(None, np.array([3]), HORIZON, 2).any()
    assert plan_features(actions, np.array([HORIZON + 3, 1]), HORIZON, 2)[0, :-1].tolist() == actions[0].ravel().tolist()


def test_commanded_actions_reach_a_plan_conditioned_anchor_graph(tmp_path):
    directory = export_tiny(tmp_path / "m")
    info = WorldModelEngine(directory).info
    torch.manual_seed(0)
    config = AnchorConfig(width=8, horizon=HORIZON, plan_features=plan_size(HORIZON, info.action_dim))
    assert export_anchor(randomise(AnchorNet(config, info.latent_shape[0]), 3).eval(), directory) <= PARITY_TOLERANCE
    engine = WorldModelEngine(directory)
    rng = np.random.default_rng(1)
    height, width = info.image_size
    frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    flow = rng.standard_normal((2, height, width)).astype(np.float32)
    latents = np.repeat(rng.standard_normal((1, *info.latent_shape)).astype(np.float32), 2, axis=0)

    def motion(actions):
        return engine.anchor_fields(frames[0], frames[1], flow, latents, latents[0], np.array([2, 2]), None, actions)[0]

    turn = np.zeros((2, HORIZON, info.action_dim), np.float32)
    turn[1, :, -1] = 0.5  # the second row turns
    moved = motion(turn)
    assert np.abs(moved[0] - moved[1]).max() > 1e-3  # the command changes the motion field
    assert np.allclose(motion(None), motion(np.full_like(turn, np.nan)))  # None = unknown = NaN rows
    meta = json.loads((directory / MODEL_JSON).read_text())
    meta["anchor"]["config"]["plan_features"] += 1
    (directory / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(Exception, match="plan_features"):
        WorldModelEngine(directory)


def test_static_scene_prediction_is_the_last_frame(anchored_dir):
    still = _texture(np.random.default_rng(0), *CAMERA)
    frames, _ = _predict(anchored_dir, [still] * 4)
    assert frames.shape == (HORIZON, *CAMERA, 3)
    for k in range(HORIZON):
        assert np.abs(frames[k].astype(float) - still).mean() < 1.0  # MAE under 1/255 at every horizon


def test_translating_texture_beats_copy_last(anchored_dir):
    rng = np.random.default_rng(2)
    wide = _texture(rng, CAMERA[0], CAMERA[1] + 2 * SHIFT_PX * 16)
    # The scene moves left by SHIFT_PX per step: frame t shows columns t * SHIFT_PX onwards.
    def frame(t):
        return np.ascontiguousarray(wide[:, t * SHIFT_PX: t * SHIFT_PX + CAMERA[1]])

    observed = [frame(t) for t in range(4)]
    frames, _ = _predict(anchored_dir, observed)
    inner = (slice(None), slice(16, CAMERA[1] - 16))  # away from the border the warp has no source for
    for k in range(1, HORIZON + 1):
        truth = frame(3 + k).astype(float)
        model = np.abs(frames[k - 1].astype(float) - truth)[inner].mean()
        copy = np.abs(observed[-1].astype(float) - truth)[inner].mean()
        assert model < 0.5 * copy, (k, model, copy)


def test_output_follows_the_camera_and_output_size(anchored_dir):
    rng = np.random.default_rng(3)
    frames, _ = _predict(anchored_dir, [_texture(rng, *CAMERA) for _ in range(4)])
    assert frames.shape == (HORIZON, 96, 160, 3)
    frames, _ = _predict(anchored_dir, [_texture(rng, *CAMERA) for _ in range(4)], output_size=(48, 80))
    assert frames.shape == (HORIZON, 48, 80, 3)


@pytest.fixture(scope="module")
def randomised_dir(tmp_path_factory):
    """An anchored decoder with random weights: a learned motion correction and a mask that blends."""
    directory = export_tiny(tmp_path_factory.mktemp("randomised"))
    export_anchor(_anchor_net(WorldModelEngine(directory).info.latent_shape[0], randomised=True), directory)
    return directory


@pytest.mark.parametrize("output_size", [(48, 80), (96, 96), (120, 200)])  # smaller, stretched, larger
@pytest.mark.parametrize("directory", ["anchored_dir", "randomised_dir"])
def test_frames_are_rendered_at_the_output_size_as_the_camera_sized_ones_resized(request, directory, output_size):
    import cv2

    anchored_dir = request.getfixturevalue(directory)

    wide = _texture(np.random.default_rng(2), CAMERA[0], CAMERA[1] + 2 * SHIFT_PX * 16)
    observed = [np.ascontiguousarray(wide[:, t * SHIFT_PX: t * SHIFT_PX + CAMERA[1]]) for t in range(4)]
    full, _ = _predict(anchored_dir, observed)
    direct, _ = _predict(anchored_dir, observed, output_size=output_size)
    assert direct.shape == (HORIZON, *output_size, 3)
    resized = np.stack([cv2.resize(frame, output_size[::-1], interpolation=cv2.INTER_AREA) for frame in full])
    for k in range(HORIZON):  # the same image: 0.2-0.45 at these sizes; the model's window misplaced, 1.1-1.3
        assert np.abs(direct[k].astype(float) - resized[k]).mean() < 0.75, k
    if directory == "randomised_dir":
        return  # its learned motion moves even a static scene
    still, _ = _predict(anchored_dir, [observed[0]] * 4, output_size=output_size)
    expected = cv2.resize(observed[0], output_size[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(still.astype(float) - expected).mean() < 1.0  # a static scene: the last frame, at the output size


@pytest.mark.parametrize("size", [(12, 40), (14, 140), (3, 50), (1, 1), (40, 12)])
def test_flow_on_frames_too_small_for_dis_says_which_way_they_moved(size):
    """DIS crashed the process on frames under 16 px on a side; the flow enlarges them."""
    height, width = size
    wide = _texture(np.random.default_rng(9), 64, 64 + 8)
    previous, last = (_resized(np.ascontiguousarray(wide[:, shift:shift + 64]), size) for shift in (4, 0))
    flow = classical_flow(previous, last)  # last(x) ~ previous(x + dx): the scene moved right, dx < 0
    assert flow.shape == (2, height, width) and np.isfinite(flow).all()
    if width >= 40:
        assert flow[0].mean() < -0.5 * 4 * width / 64


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)


def test_after_a_lost_stretch_of_a_fast_camera_what_if_still_anchors_on_the_older_context(anchored_dir):
    """The frames the fallback context decodes from stay kept however many newer frames come."""
    pipeline = WorldModelPipeline(WorldModelEngine(anchored_dir))
    pipeline.settings = RolloutSettings(horizon=2)
    camera = _texture(np.random.default_rng(0), *CAMERA)
    fitted, latent = pipeline.encode(camera)
    period_ns = pipeline.dt_ns // 30  # a camera 30x the model's rate (K = 2)
    # Frames 40-79 lost: from frame 84 on, the grid dt back has none for 11 frames, more than
    # KEPT_CAMERA_FRAMES, so the older context's own frames (39 and 83) would have been forgotten.
    ticks = [*range(0, 40), *range(80, 96)]
    request = RolloutRequest(np.zeros((1, 2, pipeline.info.action_dim), np.float32), 1, 2, 1, 0, True)
    fallbacks = 0
    for tick in ticks:
        pipeline.observe(T0_NS + tick * period_ns, "camera", latent, image=camera, fitted=fitted)
        if pipeline.latest_context() is None and tick > 40:  # (before frame 30: not K frames dt apart yet)
            outcome = pipeline.what_if(request)
            fallbacks += 1
            assert outcome.forecasts[0].frames.shape == (2, *CAMERA, 3), f"tick {tick}: not anchored"
            assert outcome.synthesised, f"tick {tick}: the VAE's image, not the anchored one"
    assert fallbacks == 11


def test_decode_takes_what_prepare_computed_unless_the_frames_were_cleared_since(anchored_dir, monkeypatch):
    from sora_ros.core.context import ContextBuffer
    from sora_ros.core.preprocess import fit_frame
    from sora_ros.runtime import anchor_frames

    engine = WorldModelEngine(anchored_dir)
    frames, buffer = anchor_frames.AnchorFrames(engine), ContextBuffer(engine.info.context_frames, engine.info.dt, 1.0)
    rng = np.random.default_rng(7)
    flows = []
    monkeypatch.setattr(anchor_frames, "classical_flow", lambda *a: flows.append(1) or classical_flow(*a))

    def observe(t):
        image = _texture(rng, *CAMERA)
        fitted = fit_frame(image, engine.info.input_size(CAMERA))
        buffer.add(T0_NS + t * round(engine.info.dt * NS_PER_S), engine.encode(fitted[None])[0])
        frames.keep(T0_NS + t * round(engine.info.dt * NS_PER_S), image, fitted)
        return buffer.latest()

    contexts = [observe(t) for t in range(engine.info.context_frames + 1)][-2:]
    latents = np.repeat(contexts[0].latents[-1:], HORIZON, axis=0)  # (H, C, h, w)
    prepared = [frames.prepare(context, HORIZON) for context in contexts]  # the second evicts the first's entry
    assert len(flows) == 2
    images, _ = frames.decode(contexts[0], latents, tuple(range(HORIZON)), HORIZON, None, None, prepared[0])
    assert len(flows) == 2, "decode computed again what prepare handed it"
    assert frames.decode(contexts[1], latents, (0,), HORIZON, None) is not None and len(flows) == 2, "kept entry"
    frames.clear()  # a restart: the same stamps may come back with other frames
    observe(0), observe(1)
    frames.decode(contexts[0], latents, (0,), HORIZON, None, None, prepared[0])
    assert len(flows) == 3, "what was prepared before a clear is stale"


def test_model_without_anchor_decodes_at_model_resolution(tmp_path):
    directory = export_tiny(tmp_path / "plain")
    frames, pipeline = _predict(directory, [_texture(np.random.default_rng(4), *CAMERA) for _ in range(4)])
    assert pipeline.engine.anchor is None
    assert frames.shape == (HORIZON, *pipeline.info.input_size(CAMERA), 3)  # the grid of the camera's aspect ratio


def test_resolution_change_restarts_the_context(anchored_dir):
    rng = np.random.default_rng(5)
    _, pipeline = _predict(anchored_dir, [_texture(rng, *CAMERA) for _ in range(4)])
    other = _texture(rng, 120, 160)
    _, latent = pipeline.encode(other)
    pipeline.observe(2000 * NS_PER_S, "camera", latent, image=other)
    assert pipeline.counters.snapshot().get("reset/resolution") == 1
    assert pipeline.latest_context() is None  # one frame of the new camera: no context yet


def test_render_edges_and_window():
    window = model_window(CAMERA, (32, 32))
    assert (window.top, window.left, window.height, window.width) == (0, 32, 96, 96)
    last = _texture(np.random.default_rng(6), *CAMERA)
    motion = np.zeros((2, 32, 32), np.float32)
    mask = np.zeros((1, 32, 32), np.float32)
    assert np.array_equal(render(last, motion, mask, None), last)
    motion[0] = 1.0  # one model pixel = 3 camera pixels to the right: the frame moves left
    shifted = render(last, motion, mask, None)
    assert np.abs(shifted[:, 10:-10].astype(int) - last[:, 13:-7]).max() <= 1


def _numpy_render(last, motion, mask, synthesis, base=None):
    """render as it was before it moved to OpenCV in place (2026-12): NumPy float temporaries and
    separate x and y maps; the reference the faster one must match."""
    import cv2

    camera_hw, model_hw = last.shape[:2], motion.shape[1:]
    window = model_window(camera_hw, model_hw)

    def to_camera(field):
        resized = cv2.resize(field, (window.width, window.height), interpolation=cv2.INTER_LINEAR)
        bottom, right = camera_hw[0] - window.top - window.height, camera_hw[1] - window.left - window.width
        return cv2.copyMakeBorder(resized, window.top, bottom, window.left, right, cv2.BORDER_REPLICATE)

    flow = to_camera(np.ascontiguousarray(motion.transpose(1, 2, 0)))
    flow[..., 0] *= window.width / model_hw[1]
    flow[..., 1] *= window.height / model_hw[0]
    if base is not None:
        flow += base
    ys, xs = np.mgrid[:camera_hw[0], :camera_hw[1]].astype(np.float32)
    warped = cv2.remap(last, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = to_camera(np.where(mask[0] < MASK_FLOOR, 0.0, mask[0]).astype(np.float32))
    return cv2.blendLinear(to_camera(synthesis), warped, weight, 1.0 - weight)


def test_render_matches_the_numpy_reference_from_rgb_rgba_and_into_out():
    import cv2

    rng = np.random.default_rng(9)
    last = _texture(rng, *CAMERA)
    motion = rng.uniform(-3, 3, (2, 32, 32)).astype(np.float32)
    mask = rng.uniform(0.0, 0.9, (1, 32, 32)).astype(np.float32)
    synthesis = _texture(rng, 32, 32)
    base = trajectory_motion(rng.uniform(-2, 2, (*CAMERA, 2)).astype(np.float32), 2)[1]
    reference = _numpy_render(last, motion, mask, synthesis, base).astype(int)
    out = np.zeros_like(last)
    for given, into in ((last, None), (cv2.cvtColor(last, cv2.COLOR_RGB2RGBA), out)):
        rendered = render(given, motion, mask, synthesis, base, out=into)
        assert rendered.shape == last.shape and (into is None or rendered is into)
        assert np.abs(rendered.astype(int) - reference).max() <= 1  # float rounding only
    assert np.array_equal(warp_frame(last, np.zeros_like(motion)), last)  # no motion: the frame itself


def test_a_large_camera_moves_by_its_own_pixels_from_a_smaller_flow_grid():
    height, width, shift = 3 * FLOW_MAX_SIDE // 2, 2 * FLOW_MAX_SIDE, 6  # 4:3, twice the flow grid
    wide = _texture(np.random.default_rng(8), height, width + 3 * shift)

    def frame(t):  # the scene moves left by `shift` camera pixels per step
        return np.ascontiguousarray(wide[:, t * shift: t * shift + width])

    flow = camera_flow(frame(0), frame(1))
    assert flow.shape == (height // 2, width // 2, 2)  # computed on the smaller grid, in its pixels
    assert abs(np.median(flow[..., 0]) - shift / 2) < 0.3
    base = trajectory_motion(flow, 2)
    no_correction, no_mask = np.zeros((2, 16, 16), np.float32), np.zeros((1, 16, 16), np.float32)
    inner = (slice(None), slice(40, width - 40))
    for k in (1, 2):
        predicted = render(frame(1), no_correction, no_mask, None, base[k - 1]).astype(float)
        truth, copy = frame(1 + k).astype(float), frame(1).astype(float)
        assert np.abs(predicted - truth)[inner].mean() < 0.2 * np.abs(copy - truth)[inner].mean(), k


def test_torch_compose_matches_the_runtime_render():
    rng = np.random.default_rng(7)
    last = _texture(rng, 64, 64)
    motion = rng.uniform(-2, 2, (2, 32, 32)).astype(np.float32)
    mask = rng.uniform(0.1, 0.9, (1, 32, 32)).astype(np.float32)
    synthesis = _texture(rng, 32, 32)
    runtime = render(last, motion, mask, synthesis).astype(float)

    def unit(image):
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0

    torch_out = compose(unit(last), unit(synthesis), torch.from_numpy(motion)[None], torch.from_numpy(mask)[None])
    torch_out = torch_out[0].permute(1, 2, 0).numpy() * 255.0
    assert np.abs(runtime - torch_out)[2:-2, 2:-2].mean() < 1.0


def test_the_mask_learns_to_blend_where_the_synthesis_is_right():
    """The last frame is unrelated to the target and the decoder's image is the target: 30 Adam
    steps open the mask (at the mask gain of nets before it, 1, the mask is still under 0.02 then)."""
    from sora_ros.model.anchor_trainer import anchored_loss

    rng = np.random.default_rng(8)
    count, size, latent_channels = 4, 16, 4
    target = np.stack([_texture(rng, 2 * size, 2 * size) for _ in range(count)])  # (B, 2H, 2W, 3)
    last = np.stack([_texture(rng, 2 * size, 2 * size) for _ in range(count)])
    fitted = last[:, ::2, ::2]
    batch = {"frames": np.stack([fitted, fitted], axis=1), "flow": np.zeros((count, 2, size, size), np.float32),
             "latent": rng.normal(size=(count, latent_channels, 4, 4)).astype(np.float32),
             "context_latent": np.zeros((count, latent_channels, 4, 4), np.float32),
             "step": np.full(count, 2.0, np.float32), "reconstruction": fitted, "plan": np.zeros((count, 1), np.float32),
             "synthesis": np.ascontiguousarray(target[:, ::2, ::2]), "last": last, "target": target,
             "base": np.zeros((count, 2, 2 * size, 2 * size), np.float32)}
    batch = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}
    torch.manual_seed(0)
    net = AnchorNet(AnchorConfig(width=8, horizon=HORIZON), latent_channels)
    _, before, _ = anchored_loss(net, batch)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(30):
        loss, after, _ = anchored_loss(net, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before["mask"] < 0.02 and after["mask"] > 0.5
    assert after["psnr"] > before["psnr"] + 3.0


def test_motion_label_is_the_shift_where_the_flow_agrees_both_ways():
    """A texture moved 3 px left is labelled +3 (target(x) = last(x + 3)); a patch that appears from
    nowhere in the target fails the forward-backward check."""
    from sora_ros.model.anchor_trainer import motion_label

    texture = _texture(np.random.default_rng(3), 128, 140)
    last, target = texture[:, :128].copy(), texture[:, 3:131].copy()
    motion, weight = motion_label(last, target)
    assert motion.shape == (2, 128, 128) and weight.shape == (1, 128, 128)
    assert weight.mean() > 0.9
    np.testing.assert_allclose(motion[:, weight[0] > 0].mean(axis=1), [3.0, 0.0], atol=0.1)
    target[40:80, 40:80] = _texture(np.random.default_rng(4), 40, 40)  # new content: no source in `last`
    _, occluded = motion_label(last, target)
    assert occluded[0, 50:70, 50:70].mean() < 0.5 < occluded[0, 100:, 100:].mean()


def test_motion_labels_pull_the_warp_to_the_true_shift():
    """The target is the last frame moved 8 target pixels, which neither the flow input nor the base
    motion knows: the motion loss starts at the whole shift and, in 60 Adam steps on it alone (the
    photometric part weighted out by a flat synthesis target), falls under a quarter of it."""
    from sora_ros.model.anchor_trainer import anchored_loss, motion_label

    count, size, latent_channels, shift = 4, 16, 4, 8
    rng = np.random.default_rng(5)
    textures = [_texture(rng, 2 * size, 2 * size + shift) for _ in range(count)]
    last = np.stack([texture[:, :2 * size] for texture in textures])  # (B, 2H, 2W, 3)
    target = np.stack([texture[:, shift:] for texture in textures])  # target(x) = last(x + shift)
    labels = [motion_label(a, b) for a, b in zip(last, target)]
    fitted = np.ascontiguousarray(last[:, ::2, ::2])
    batch = {"frames": np.stack([fitted, fitted], axis=1), "flow": np.zeros((count, 2, size, size), np.float32),
             "latent": np.zeros((count, latent_channels, 4, 4), np.float32),
             "context_latent": np.zeros((count, latent_channels, 4, 4), np.float32),
             "step": np.full(count, 2.0, np.float32), "reconstruction": fitted, "plan": np.zeros((count, 1), np.float32),
             "synthesis": fitted, "last": last, "target": target,
             "base": np.zeros((count, 2, 2 * size, 2 * size), np.float32),
             "motion_target": np.stack([motion for motion, _ in labels]),
             "motion_weight": np.stack([weight for _, weight in labels])}
    batch = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}
    torch.manual_seed(0)
    net = AnchorNet(AnchorConfig(width=8, horizon=HORIZON), latent_channels)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    _, before, _ = anchored_loss(net, batch, motion_weight=1.0)
    for _ in range(60):
        loss, after, _ = anchored_loss(net, batch, motion_weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before["motion_px"] == pytest.approx(shift, abs=0.5)
    assert after["motion_px"] < 0.25 * shift


def test_configs_written_before_the_mask_gain_keep_their_mask():
    assert AnchorConfig.from_dict({"width": 32, "blocks": 1, "horizon": 8, "plan_features": 0}).mask_gain == 1.0
    assert AnchorConfig.from_dict(AnchorConfig().to_dict()) == AnchorConfig()


def test_runtime_imports_no_torch():
    code = ("import sys; import sora_ros.runtime.pipeline, sora_ros.runtime.anchor, sora_ros.evaluation.predictors; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
