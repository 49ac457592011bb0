"""Per-frame context (DiTConfig.context_attention "frame"): a frame's keys/values never change once
computed, so rollouts keep them as the window slides; the graphs, the engine and a fine-tune agree."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from model_helpers import export_tiny, tiny_modules

from sora_ros.model.fine_tune import start_from
from sora_ros.runtime import sampler
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import MODEL_JSON, ModelDirError, read_model_info


def _torch_fns(dit):
    def context_fn(context, level):
        return dit.context_kv(torch.from_numpy(context), torch.from_numpy(level)).numpy()

    def velocity_fn(kv, noisy, flow_time, action):
        action = None if action is None else torch.from_numpy(action)
        kv = torch.from_numpy(kv) if isinstance(kv, np.ndarray) else [torch.from_numpy(a) for a in kv]
        return dit.velocity(kv, torch.from_numpy(noisy), torch.from_numpy(flow_time), action).numpy()

    return context_fn, velocity_fn


@pytest.mark.parametrize("attention, independent", [("frame", True), ("window", False)])
@torch.no_grad()
def test_only_per_frame_keys_values_are_those_of_each_frame_alone(attention, independent):
    _, dit = tiny_modules(context_attention=attention)
    k, (c, h, w) = dit.config.dit.context_frames, dit.config.vae.latent_shape
    context, level = torch.randn(3, k, c, h, w), torch.full((3,), 0.05)
    alone = torch.cat([dit.context_kv(context[:, i:i + 1], level) for i in range(k)], dim=3) if independent else None
    whole = dit.context_kv(context, level)  # (B, L, 2, K * N, D)
    if independent:
        torch.testing.assert_close(whole, alone, atol=1e-5, rtol=1e-5)
    else:  # a window's frames attend to each other: a change in the last frame reaches the first's keys
        changed = context.clone()
        changed[:, -1] += 1.0
        n = whole.shape[3] // k
        assert not torch.allclose(dit.context_kv(changed, level)[:, 1:, :, :n], whole[:, 1:, :, :n])


@torch.no_grad()
def test_slot_embeddings_tell_the_context_frames_apart():
    _, dit = tiny_modules(context_attention="frame")
    k, (c, h, w) = dit.config.dit.context_frames, dit.config.vae.latent_shape
    context, level = torch.randn(2, k, c, h, w), torch.full((2,), 0.05)
    noisy, t, action = torch.randn(2, c, h, w), torch.full((2,), 0.5), torch.zeros(2, 2)
    swapped = context.flip(1)
    ahead = dit.velocity(dit.context_kv(context, level), noisy, t, action)
    assert not torch.allclose(ahead, dit.velocity(dit.context_kv(swapped, level), noisy, t, action), atol=1e-4)
    dit.slot_kv.zero_()  # without them the order of the frames is lost
    torch.testing.assert_close(dit.velocity(dit.context_kv(context, level), noisy, t, action),
                               dit.velocity(dit.context_kv(swapped, level), noisy, t, action), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_a_cached_rollout_is_the_rollout_that_recomputes_every_window():
    _, dit = tiny_modules(context_attention="frame")
    k, (c, h, w) = dit.config.dit.context_frames, dit.config.vae.latent_shape
    rng = np.random.default_rng(0)
    context = rng.standard_normal((3, k, c, h, w)).astype(np.float32)
    actions = rng.uniform(-1, 1, (3, 5, 2)).astype(np.float32)
    runs = [sampler.rollout(*_torch_fns(dit), context, actions, 5, 2, 0.0, np.random.default_rng(1), cached_context=cached)
            for cached in (True, False)]  # fmt: skip
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)


def test_exported_per_frame_graphs_roll_out_as_torch_does(tmp_path):
    export_tiny(tmp_path / "m", context_attention="frame")
    meta = json.loads((tmp_path / "m" / MODEL_JSON).read_text())
    assert meta["dynamics"]["context_attention"] == "frame"
    assert meta["graphs"]["dynamics_context"]["inputs"]["context"]["shape"][1] == "context_frames"
    engine = WorldModelEngine(tmp_path / "m")
    assert engine.info.per_frame_context
    _, dit = tiny_modules(context_attention="frame")
    info, rng = engine.info, np.random.default_rng(2)
    context = rng.standard_normal((info.context_frames, *info.latent_shape)).astype(np.float32)
    actions = rng.uniform(-0.5, 0.5, (3, 6, 2)).astype(np.float32)
    result = engine.rollout(context, actions, samples=2, seed=3)  # a what-if: 3 candidates x 2 samples
    with torch.no_grad():
        expected = sampler.rollout(*_torch_fns(dit), np.repeat(np.broadcast_to(context, (3, *context.shape)), 2, axis=0),
                                   np.repeat(info.network_actions(actions), 2, axis=0), 6, info.sampler_steps,
                                   info.context_noise, np.random.default_rng(3), noise_period=2, shared_context=True,
                                   cached_context=True)  # fmt: skip
    np.testing.assert_allclose(result.latents.reshape(expected.shape), expected, atol=1e-4)
    alone = engine.rollout(context, actions[1], samples=2, seed=3)  # one candidate: the same future
    np.testing.assert_allclose(alone.latents[0], result.latents[1], atol=1e-5)


def test_a_model_json_without_context_attention_is_a_window_model(tmp_path):
    export_tiny(tmp_path / "m")
    path = tmp_path / "m" / MODEL_JSON
    meta = json.loads(path.read_text())
    assert meta["dynamics"].pop("context_attention") == "window"
    path.write_text(json.dumps(meta))  # as models up to 0.4.3 wrote it
    assert not read_model_info(tmp_path / "m").per_frame_context
    meta["dynamics"]["context_attention"] = "causal"
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="context_attention must be 'window' or 'frame', got 'causal'"):
        read_model_info(tmp_path / "m")


@torch.no_grad()
def test_a_fine_tune_converts_a_window_parent_keeping_every_weight(tmp_path):
    export_tiny(tmp_path / "parent")
    start = start_from(tmp_path / "parent", "child", None, context_attention="frame")
    assert start.config.dit.context_attention == "frame"
    assert start.dit.slot_kv is not None and not start.dit.slot_kv.any()
    assert any("context attention: window -> frame" in note for note in start.notes)
    parent = start_from(tmp_path / "parent", "same", None)
    assert parent.dit.slot_kv is None and parent.notes == []
    for name, value in parent.dit.state_dict().items():
        torch.testing.assert_close(start.dit.state_dict()[name], value, atol=0, rtol=0)


def test_a_yielding_what_if_keeps_its_keys_values_while_a_live_rollout_of_its_batch_runs_between_frames(tmp_path):
    engine = WorldModelEngine(export_tiny(tmp_path / "m", context_attention="frame"))
    info, rng = engine.info, np.random.default_rng(4)
    context, other = rng.standard_normal((2, info.context_frames, *info.latent_shape)).astype(np.float32)
    actions = rng.uniform(-0.5, 0.5, (1, 5, 2)).astype(np.float32)  # one candidate: the live rollout's batch
    expected = engine.rollout(context, actions, seed=5).latents
    held, what_if_turns = engine._turns.hold, []

    @contextmanager
    def hold(urgent: bool):
        if not urgent:
            what_if_turns.append(urgent)
            if len(what_if_turns) == 3:  # the what-if's second frame is done: a live rollout goes first
                engine._turns.hold = held
                engine.rollout(other, actions, seed=9)
                engine._turns.hold = hold
        with held(urgent):
            yield

    engine._turns.hold = hold
    try:
        got = engine.rollout(context, actions, seed=5, yields=True).latents
    finally:
        engine._turns.hold = held
    assert len(what_if_turns) == 1 + 5  # the graphs, then a turn per frame
    np.testing.assert_array_equal(got, expected)


@torch.no_grad()
def test_a_fine_tune_converts_the_attention_and_the_action_layout_together(tmp_path):
    export_tiny(tmp_path / "parent")
    start = start_from(tmp_path / "parent", "child", (["linear_x"], [0.4], None), context_attention="frame")
    assert start.config.actions.names == ("linear_x",) and start.config.actions.scale == (0.4,)
    assert start.dit.per_frame and start.dit.config is start.config
    assert [note.split(":")[0] for note in start.notes] == ["action linear_x", "action angular_z",
                                                            "context attention"]



@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_dynamics_graphs_that_disagree_with_context_attention_are_named_at_load(tmp_path, precision):
    import shutil

    from model_helpers import rehash

    from sora_ros.cli import main as cli

    model = export_tiny(tmp_path / "frame", context_attention="frame")
    assert cli(["quantize", "--model", str(model)]) == 0
    export_tiny(tmp_path / "window")
    shutil.copy(tmp_path / "window" / "dynamics.onnx", model / "dynamics.onnx")  # a window model's step graph
    rehash(model, "dynamics.onnx")
    with pytest.raises(ModelDirError, match=r"dynamics\.onnx: inputs are .*context_attention is 'frame'"):
        WorldModelEngine(model, precision=precision)  # int8 too: its check opens the float32 graphs
