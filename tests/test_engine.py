"""The ONNX Runtime engine: encode/rollout/decode, determinism, and every bad model directory."""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from model_helpers import export_tiny, rehash, tiny_modules
from sora_ros.model.graphs import DecoderGraph, DynamicsStepGraph, EncoderGraph
from sora_ros.runtime.engine import NonFiniteOutputError, WorldModelEngine, resolve_providers
from sora_ros.model.export import dynamic_axes
from sora_ros.runtime.model_dir import DYNAMICS_WEIGHTS, GRAPH_FILES, MAX_MODEL_JSON_BYTES, MODEL_JSON, ModelDirError, \
    expected_signatures, read_model_info

HORIZON = 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("tiny"), "tiny")


@pytest.fixture(scope="module")
def engine(model_dir):
    return WorldModelEngine(model_dir)


@pytest.fixture
def broken(model_dir, tmp_path):
    """A private copy of the good model directory, to break."""
    return shutil.copytree(model_dir, tmp_path / "model")


def _frames(engine, count, seed=0):
    height, width = engine.info.image_size
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _context(engine):
    return engine.encode(_frames(engine, engine.info.context_frames))


def _actions(engine, candidates=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (candidates, HORIZON, engine.info.action_dim)).astype(np.float32)


def _replace_graph(directory, file_name, module, example, names_in, names_out, grid_follows_camera=True):
    """Export `module` over a graph of the directory, with the contract's dynamic dimensions (batch
    only with grid_follows_camera False: a graph of one fixed size)."""
    graph = next(g for g, f in GRAPH_FILES.items() if f == file_name)
    axes = (dynamic_axes(expected_signatures(read_model_info(directory))[graph]) if grid_follows_camera
            else {n: {0: "batch"} for n in names_in + names_out})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(directory / file_name), input_names=names_in,
                          output_names=names_out, dynamic_axes=axes, opset_version=17, dynamo=False)
    rehash(directory, file_name)


def test_encode_decode_shapes_and_ranges(engine):
    latents = engine.encode(_frames(engine, 3))
    assert latents.shape == (3, *engine.info.latent_shape) and latents.dtype == np.float32
    images = engine.decode(latents)
    assert images.shape == (3, *engine.info.image_size, 3) and images.dtype == np.uint8
    with pytest.raises(ValueError, match="uint8"):
        engine.encode(_frames(engine, 1).astype(np.float32))
    with pytest.raises(ValueError, match="decode must be 4-D"):
        engine.decode(latents[0])


def test_rollout_shapes_and_uncertainty(engine):
    result = engine.rollout(_context(engine), _actions(engine, candidates=2), samples=3, seed=0)
    assert result.latents.shape == (2, 3, HORIZON, *engine.info.latent_shape)
    assert result.uncertainty.shape == (2, HORIZON)
    assert (result.uncertainty > 0).all()
    single = engine.rollout(_context(engine), _actions(engine)[0], samples=1)
    assert single.latents.shape == (1, 1, HORIZON, *engine.info.latent_shape)
    assert (single.uncertainty == 0).all()


def test_rollout_is_deterministic_per_seed(engine):
    context, actions = _context(engine), _actions(engine, candidates=2)
    first = engine.rollout(context, actions, samples=2, seed=3).latents
    np.testing.assert_array_equal(first, engine.rollout(context, actions, samples=2, seed=3).latents)
    assert not np.allclose(first, engine.rollout(context, actions, samples=2, seed=4).latents)


def test_a_what_if_that_yields_between_frames_lets_a_live_rollout_in_and_predicts_the_same(engine):
    import threading
    from contextlib import contextmanager

    context, actions = _context(engine), _actions(engine, candidates=3)
    expected, live_expected = (engine.rollout(context, a, seed=5).latents for a in (actions, actions[:1]))
    order, live = [], []
    held = engine._turns.hold
    thread = threading.Thread(target=lambda: live.append(engine.rollout(context, actions[:1], seed=5).latents))

    @contextmanager
    def hold(urgent: bool):  # records who got each turn, in order
        with held(urgent):
            order.append("live" if urgent else "what-if")
            if order == ["what-if"]:  # a live rollout arrives while the what-if holds its first turn
                thread.start()
                while not engine._turns._urgent_waiting:
                    threading.Event().wait(0.001)
            yield

    engine._turns.hold = hold
    try:
        got = engine.rollout(context, actions, seed=5, yields=True).latents
    finally:
        engine._turns.hold = held
        thread.join()
    assert order[:2] == ["what-if", "live"] and order.count("what-if") == 1 + HORIZON, order  # graphs, then frames
    np.testing.assert_array_equal(got, expected)  # neither disturbed the other's buffers
    np.testing.assert_array_equal(live[0], live_expected)


def test_actions_change_the_future(engine):
    context = _context(engine)
    actions = np.stack([np.zeros((HORIZON, 2)), np.ones((HORIZON, 2))]).astype(np.float32)
    result = engine.rollout(context, actions, seed=0, context_noise=0.0)
    assert not np.allclose(result.latents[0], result.latents[1], atol=1e-4)


def _reference_rollout(dit, context, actions, horizon, steps, level, rng):
    """The rollout written out from model.json's contract, independently of runtime/sampler.py.

    Rectified flow x_t = (1 - t) * data + t * noise, velocity = noise - data; each frame starts
    from N(0, 1) noise at t = 1 and takes `steps` equal Euler steps x <- x - dt * velocity down to
    t = 0, conditioned on the last K frames (observed, then predicted) moved to noise level
    `level`. Random draws, float32 from `rng` in this order per frame: the context noise
    (K, C, h, w) when level > 0, then the starting noise (C, h, w)."""
    k = context.shape[0]
    history = [torch.from_numpy(frame) for frame in context]
    for i in range(horizon):
        window = torch.stack(history[-k:])
        if level > 0:
            window = (1 - level) * window + level * torch.from_numpy(rng.standard_normal(window.shape, dtype=np.float32))
        x = torch.from_numpy(rng.standard_normal(context.shape[1:], dtype=np.float32))[None]
        for j in range(steps):
            t, t_next = 1.0 - j / steps, 1.0 - (j + 1) / steps
            with torch.no_grad():
                v = dit(window[None], torch.tensor([level]), x, torch.tensor([t]), torch.from_numpy(actions[i])[None])
            x = x - (t - t_next) * v
        history.append(x[0])
    return torch.stack(history[k:]).numpy()


def test_rollout_matches_torch(model_dir, engine):
    """The engine's graphs, action normalisation and sampler agree with the torch model driven by
    a reference loop written in this test (a bug in sampler.py cannot be in both)."""
    _, dit = tiny_modules("tiny")
    context, actions = _context(engine), _actions(engine)[0]
    info = engine.info
    assert info.sampler_steps > 1 and info.context_noise > 0, "the tiny model must exercise both"
    normalised = ((actions - np.asarray(info.action_offset)) / np.asarray(info.action_scale)).astype(np.float32)
    expected = _reference_rollout(dit, context, normalised, HORIZON, info.sampler_steps, info.context_noise,
                                  np.random.default_rng(9))
    got = engine.rollout(context, actions, seed=9).latents[0, 0]
    # Tight: the tiny model barely looks at its context (halving the context noise moves the
    # output by 8e-5), while ONNX Runtime and torch agree to 5e-7 on a CPU.
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    # Fewer steps and no context noise follow the same contract.
    expected = _reference_rollout(dit, context, normalised, HORIZON, 1, 0.0, np.random.default_rng(2))
    got = engine.rollout(context, actions, seed=2, steps=1, context_noise=0.0).latents[0, 0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


def test_rollout_refuses_bad_arguments(engine):
    context = _context(engine)
    with pytest.raises(ValueError, match="needs actions"):
        engine.rollout(context)
    with pytest.raises(ValueError, match="rollout context"):
        engine.rollout(context[:1], _actions(engine)[0])
    with pytest.raises(ValueError, match="actions must be"):
        engine.rollout(context, np.zeros((HORIZON, 3), np.float32))
    with pytest.raises(ValueError, match="horizon"):
        engine.rollout(context, _actions(engine)[0], horizon=HORIZON + 1)
    with pytest.raises(ValueError, match="Inf"):
        engine.rollout(context, np.full((HORIZON, 2), np.inf, np.float32))
    with pytest.raises(ValueError, match="partly NaN"):
        engine.rollout(context, np.array([[np.nan, 0.0]] * HORIZON, np.float32))
    with pytest.raises(ValueError, match="contexts but"):
        engine.rollout(np.stack([context] * 2), _actions(engine, candidates=3))


def test_unconditioned_model(tmp_path):
    engine = WorldModelEngine(export_tiny(tmp_path, "tiny-unconditioned"))
    assert engine.info.action_dim == 0
    result = engine.rollout(_context(engine), horizon=HORIZON, samples=2, seed=1)
    assert result.latents.shape == (1, 2, HORIZON, *engine.info.latent_shape)
    assert np.isfinite(result.latents).all()
    with pytest.raises(ValueError, match="unconditioned"):
        engine.rollout(_context(engine), np.zeros((HORIZON, 2), np.float32))


def test_non_square_model(tmp_path):
    engine = WorldModelEngine(export_tiny(tmp_path, "tiny-wide"))
    assert engine.info.image_size == (32, 48) and engine.info.latent_shape == (4, 8, 12)
    result = engine.rollout(_context(engine), _actions(engine), seed=0)
    assert engine.decode(result.latents[0, 0]).shape == (HORIZON, 32, 48, 3)


def test_nan_from_the_encoder_is_reported(engine, broken):
    vae, _ = tiny_modules("tiny")
    with torch.no_grad():
        vae.encoder.net[-1].bias.fill_(float("nan"))
    height, width = engine.info.image_size
    _replace_graph(broken, "encoder.onnx", EncoderGraph(vae), (torch.zeros(1, height, width, 3, dtype=torch.uint8),),
                   ["image"], ["latent"])
    with pytest.raises(NonFiniteOutputError, match=r"encoder: \d+ of \d+ output values are NaN or Inf"):
        WorldModelEngine(broken).encode(_frames(engine, 2))


def test_nan_from_the_decoder_is_reported(engine, broken):
    vae, _ = tiny_modules("tiny")
    with torch.no_grad():
        vae.decoder.net[-1].bias.fill_(float("nan"))
    latent = torch.zeros(1, *engine.info.latent_shape)
    _replace_graph(broken, "decoder.onnx", DecoderGraph(vae), (latent,), ["latent"], ["image"])
    with pytest.raises(NonFiniteOutputError, match="decoder"):
        WorldModelEngine(broken).decode(np.zeros((1, *engine.info.latent_shape), np.float32))


def test_nan_from_the_dynamics_is_reported(engine, broken):
    _, dit = tiny_modules("tiny")
    with torch.no_grad():
        dit.final.bias.fill_(float("inf"))
    info = engine.info
    example = (torch.zeros(1, *info.context_kv_shape), torch.zeros(1, *info.latent_shape), torch.zeros(1),
               torch.zeros(1, 2))
    _replace_graph(broken, "dynamics.onnx", DynamicsStepGraph(dit), example,
                   ["context_kv", "noisy", "flow_time", "action"], ["velocity"])
    with pytest.raises(NonFiniteOutputError, match="dynamics"):
        WorldModelEngine(broken).rollout(_context(engine), _actions(engine)[0])


def test_missing_file(broken):
    (broken / "decoder.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"decoder\.onnx: missing"):
        WorldModelEngine(broken)


def test_missing_weights(broken):
    (broken / DYNAMICS_WEIGHTS).unlink()
    with pytest.raises(ModelDirError, match=r"dynamics\.weights: missing"):
        WorldModelEngine(broken)


def test_missing_model_json(broken):
    (broken / MODEL_JSON).unlink()
    with pytest.raises(ModelDirError, match=r"model\.json: missing"):
        WorldModelEngine(broken)


def test_model_json_without_a_field(broken):
    meta = json.loads((broken / MODEL_JSON).read_text())
    del meta["sampler"]["steps"]
    (broken / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=r"model\.json: missing field 'sampler.steps'"):
        WorldModelEngine(broken)


@pytest.mark.parametrize("field, value, message", [
    ("names", ["linear_x", 7], r"action\.names and action\.units must be lists of strings"),
    ("units", [None, "rad/s"], r"action\.names and action\.units must be lists of strings"),
    ("units", ["m/s"], "action names/units/offset/scale do not have action.dim = 2 entries"),  # zipped short
    ("names", ["v", "v"], "action.names must be distinct and not empty"),
    ("names", ["", "w"], "action.names must be distinct and not empty"),
])
def test_action_names_and_units_are_checked(broken, field, value, message):
    meta = json.loads((broken / MODEL_JSON).read_text())
    assert meta["action"]["dim"] == 2
    meta["action"][field] = value
    (broken / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=rf"model\.json: {message}"):
        WorldModelEngine(broken)


@pytest.mark.parametrize("field, value, message", [
    ("dt", 0.0, r"'dt' = 0\.0 is outside its range \[0\.001, 60\]"),
    ("dt", float("inf"), r"'dt' = inf is outside its range"),  # written as Infinity: the node used to exit silently
    ("dt", float("nan"), r"'dt' = nan is outside its range"),
    ("dt", 10**400, r"'dt' = 1000.* is outside its range"),
    ("context_frames", 0, r"'context_frames' = 0 is outside its range \[1, 64\]"),
    ("default_horizon", 100000, r"'default_horizon' = 100000 is outside its range \[1, 32\]"),
    ("default_horizon", 1e5, r"'default_horizon' = 100000\.0 is outside its range \[1, 32\] \(integers only\)"),
    ("sampler.steps", 1000000, r"'sampler\.steps' = 1000000 is outside its range \[1, 16\]"),
    ("sampler.context_noise", -0.5, r"'sampler\.context_noise' = -0\.5 is outside its range \[0, 1\]"),
    ("input.height", 1 << 20, r"'input\.height' = 1048576 is outside its range"),
    ("action.dim", True, r"'action\.dim' has the wrong type \(bool\)"),
    ("action.normalisation.scale", [0.5, 0.0], r"'action\.normalisation\.scale\[1\]' = 0\.0 is outside its range"),
    ("action.normalisation.offset", [0.0, float("-inf")], r"'action\.normalisation\.offset\[1\]' = -inf"),
    ("latent_shape", [16, 8.5, 8], r"'latent_shape\[1\]' = 8\.5 is outside its range \[1, 4096\] \(integers only\)"),
    ("dynamics.context_kv_shape", [1, 2, 3, 1 << 30], r"'dynamics\.context_kv_shape\[3\]' = 1073741824"),
])
def test_model_json_with_an_impossible_value(broken, field, value, message):
    meta = json.loads((broken / MODEL_JSON).read_text())
    *parents, leaf = field.split(".")
    node = meta
    for key in parents:
        node = node[key]
    node[leaf] = value
    (broken / MODEL_JSON).write_text(json.dumps(meta))  # NaN/Infinity as JSON's extensions, as Python writes them
    with pytest.raises(ModelDirError, match=rf"model\.json: field {message}"):
        WorldModelEngine(broken)


@pytest.mark.parametrize("edit", ["input", "patch_size", "kv_tokens"])
def test_sizes_that_disagree_with_the_graphs_are_refused_at_load(broken, edit):
    """The graphs take any input size, so the signatures cannot tell; the first rollout used to fail.
    Without the training config (older model.json files) the graphs alone can tell (test_model_dir)."""
    meta = json.loads((broken / MODEL_JSON).read_text())
    del meta["config"]
    if edit == "input":
        meta["input"]["height"] *= 2
        meta["input"]["width"] *= 2
        meta["input"]["pixel_budget"] *= 4
    elif edit == "patch_size":
        meta["patch_size"] *= 2
    else:
        meta["dynamics"]["context_kv_shape"][2] //= 2
    (broken / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=r"the graphs turn the .* but model\.json says latent_shape .*"
                                            r"does not match its graphs"):
        WorldModelEngine(broken)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.onnx", "link.onnx", "."])
def test_files_outside_the_model_directory_are_refused_unread(broken, name):
    (broken.parent / "outside.onnx").write_bytes(b"secret")
    (broken / "link.onnx").symlink_to(broken.parent / "outside.onnx")
    meta = json.loads((broken / MODEL_JSON).read_text())
    meta["files"][name] = "0" * 64
    (broken / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="outside the model directory") as refused:
        WorldModelEngine(broken)
    assert "SHA-256" not in str(refused.value)  # refused before it was read


def test_a_graph_that_is_a_symlink_out_of_the_directory_is_refused(broken):
    outside = broken.parent / "decoder.onnx"
    (broken / "decoder.onnx").rename(outside)
    (broken / "decoder.onnx").symlink_to(outside)
    with pytest.raises(ModelDirError, match=r"decoder\.onnx: resolves to .* outside the model directory"):
        WorldModelEngine(broken)


@pytest.mark.parametrize("content", [b"[" * 100_000, b"{\"format\": " + b"9" * 5000 + b"}", b"\xff\xfe{}",
                                     b" " * (MAX_MODEL_JSON_BYTES + 1)])
def test_model_json_that_cannot_be_read_is_refused(broken, content):
    (broken / MODEL_JSON).write_bytes(content)
    with pytest.raises(ModelDirError, match=r"model\.json: (not readable JSON|\d+ bytes, more than)"):
        WorldModelEngine(broken)


def test_model_json_that_is_a_device_is_refused_unread(broken):
    (broken / MODEL_JSON).unlink()
    (broken / MODEL_JSON).symlink_to("/dev/zero")
    with pytest.raises(ModelDirError, match="outside the model directory"):
        WorldModelEngine(broken)


def test_wrong_hash(broken):
    with open(broken / "dynamics.onnx", "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ModelDirError, match=r"dynamics\.onnx: SHA-256 mismatch"):
        WorldModelEngine(broken)


def test_file_that_is_not_onnx(broken):
    (broken / "encoder.onnx").write_bytes(b"this is not a protobuf")
    rehash(broken, "encoder.onnx")
    with pytest.raises(ModelDirError, match=r"encoder\.onnx: not a loadable ONNX model"):
        WorldModelEngine(broken)


def test_wrong_input_shape(broken):
    wide_vae, _ = tiny_modules("tiny-wide")  # 32x48 images where model.json says 32x32
    _replace_graph(broken, "encoder.onnx", EncoderGraph(wide_vae), (torch.zeros(1, 32, 48, 3, dtype=torch.uint8),),
                   ["image"], ["latent"], grid_follows_camera=False)
    with pytest.raises(ModelDirError, match=r"encoder\.onnx: input 'image' is uint8 \['batch', 32, 48, 3\], "
                                            r"expected uint8 \['batch', 'height', 'width', 3\]"):
        WorldModelEngine(broken)


def test_provider_fallback(caplog, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING):
        assert resolve_providers(["TensorRT", "CUDA", "CPU"]) == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider is not available" in caplog.text
    assert "CUDAExecutionProvider is not available" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resolve_providers(["CUDA"]) == ["CPUExecutionProvider"]
    assert "falling back to CPUExecutionProvider" in caplog.text
    with pytest.raises(ValueError, match="unknown execution provider"):
        resolve_providers(["NoSuchAccelerator"])


def test_runtime_never_imports_torch(model_dir):
    code = ("import sys, numpy as np; from sora_ros.runtime.engine import WorldModelEngine; "
            f"e = WorldModelEngine({str(model_dir)!r}); "
            "e.rollout(np.zeros((2, 4, 8, 8), np.float32), np.zeros((2, 2), np.float32)); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_candidate_future_does_not_depend_on_the_other_candidates(engine):
    """Common random numbers: candidates differ by their actions alone, whatever their order."""
    context, actions = _context(engine), _actions(engine, candidates=3)
    together = engine.rollout(context, actions, samples=2, seed=4).latents  # (3, 2, H, C, h, w)
    alone = engine.rollout(context, actions[2:], samples=2, seed=4).latents
    np.testing.assert_allclose(together[2], alone[0], rtol=1e-5, atol=1e-5)
    same_actions = engine.rollout(context, np.stack([actions[0]] * 2), samples=1, seed=4).latents
    np.testing.assert_allclose(same_actions[0], same_actions[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(together[0, 0], together[0, 1]), "samples of one candidate must differ"


def test_only_the_dynamics_graphs_keep_a_memory_arena(engine):
    # ONNX Runtime's CPU arena grows to the largest call ever run and keeps it: with the image
    # graphs' arenas on, three ~/rollout calls at the caps left the default model's node 950 MiB
    # larger for good. A dynamics call is one frame of the batch, so its arena stays small.
    kept = {graph for graph, session in engine.sessions.items() if session.get_session_options().enable_cpu_mem_arena}
    assert kept == {"dynamics_context", "dynamics"}
    assert all(session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
               for session in engine.sessions.values())

def test_a_shared_thread_pool_runs_every_session_of_the_process_and_comes_first(engine):
    from sora_ros.runtime.engine import session_options, share_thread_pool

    session_options()  # this process has made session options: too late to share a pool
    with pytest.raises(RuntimeError, match="before this process opens its first"):
        share_thread_pool()
    # A fresh process: every session it opens (export's parity checks, the engine's, int8 included
    # where present) must run on the shared pool, or ONNX Runtime refuses to create it.
    done = subprocess.run([sys.executable, "-m", "sora_ros.cli", "bench", "model", "--preset", "tiny", "--repeats",
                           "1", "--thread-pool", "shared"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ONNX Runtime thread pool: shared" in done.stdout
    # The compute-bound line: the 32-candidate rollout's FLOPs were counted on the eager run.
    counted = re.search(r"compute: rollout \d+ frames x \d+ steps, 32 candidates = ([\d.]+) GFLOP", done.stdout)
    assert counted and float(counted.group(1)) > 0, done.stdout


def test_bench_model_refuses_a_checkpoint_of_other_networks(tmp_path, capsys):
    from sora_ros.bench import model as bench_model
    from sora_ros.model.checkpoint import save_checkpoint

    vae, dit = tiny_modules(context_attention="frame")  # the checkpoint's networks: frame attention
    save_checkpoint(tmp_path / "checkpoint.pt", dit.config, vae, dit)
    export_tiny(tmp_path / "window")  # a model directory exported from window attention
    args = argparse.Namespace(model=str(tmp_path / "window"), checkpoint=str(tmp_path / "checkpoint.pt"),
                              preset=None, repeats=1)
    assert bench_model.run(args) == bench_model.BAD_INPUT  # a usage error, as bench closed-loop
    error = capsys.readouterr().err
    assert "is not the checkpoint" in error
    assert "dit.context_attention: checkpoint 'frame', model.json 'window'" in error
    export_tiny(tmp_path / "frame", context_attention="frame")
    same = json.loads((tmp_path / "frame" / "model.json").read_text())["config"]
    assert bench_model._config_mismatch(dit.config.to_dict(), same) == []
    with pytest.raises(SystemExit) as exit_:
        from sora_ros.cli import build_parser

        build_parser().parse_args(["bench", "model", "--preset", "nope"])
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
