"""`sora-ros export`: graphs, model.json, hashes, and ONNX Runtime vs torch parity."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import sora_ros.cli.export as export_command
import sora_ros.model.export as export
from model_helpers import tiny_modules
from sora_ros.core.patch_grid import SIZING
from sora_ros.model.config import ModelConfig
from sora_ros.model.graphs import DecoderGraph, DynamicsContextGraph, DynamicsStepGraph, EncoderGraph
from sora_ros.runtime.model_dir import (DYNAMICS_WEIGHTS, GRAPH_FILES, MODEL_JSON, TRAINABLE_WEIGHTS, read_model_info,
                                        sha256_file)

OPSET_MIN = 17


@pytest.mark.parametrize("name", ["tiny", "tiny-wide", "tiny-unconditioned"])
def test_export_writes_the_model_contract(tmp_path, name):
    vae, dit = tiny_modules(name)
    report = export.export_model(vae, dit, tmp_path)
    assert set(report.parity) == set(GRAPH_FILES)
    assert all(error <= export.PARITY_TOLERANCE for error in report.parity.values())
    meta = json.loads((tmp_path / MODEL_JSON).read_text())
    config = dit.config
    assert meta["input"] == {
        "height": config.vae.image_height, "width": config.vae.image_width,
        "pixel_budget": config.vae.image_height * config.vae.image_width, "aspect_range": list(config.aspect_range),
        "sizing": SIZING, "channels": 3, "channel_order": "RGB", "dtype": "uint8", "layout": "BHWC", "range": [0, 255]}
    assert meta["latent_shape"] == list(config.vae.latent_shape)
    assert meta["action"]["dim"] == config.dit.action_dim
    assert meta["sampler"]["steps"] == config.sampler_steps
    assert meta["export"]["opset"] >= OPSET_MIN
    assert ModelConfig.from_dict(meta["config"]) == config
    assert set(meta["training"]) >= {"command", "data", "steps", "wall_time_s"}
    assert meta["files"] == {f: sha256_file(tmp_path / f) for f in [*GRAPH_FILES.values(), DYNAMICS_WEIGHTS, TRAINABLE_WEIGHTS]}
    assert meta["weights"]["file"] == TRAINABLE_WEIGHTS and "parent" not in meta
    assert ("action" in meta["graphs"]["dynamics"]["inputs"]) == (config.dit.action_dim > 0)
    info = read_model_info(tmp_path)
    assert info.context_kv_shape == (config.dit.depth, 2, config.dit.context_frames * config.tokens_per_frame,
                                     config.dit.width)


def test_dynamics_weights_are_stored_once(tmp_path):
    vae, dit = tiny_modules("tiny")
    export.export_model(vae, dit, tmp_path)
    weight_bytes = 4 * sum(p.numel() for p in dit.parameters())
    shared = (tmp_path / DYNAMICS_WEIGHTS).stat().st_size
    graphs = sum((tmp_path / GRAPH_FILES[g]).stat().st_size for g in export.SHARED_WEIGHT_GRAPHS)
    assert shared + graphs < 1.5 * weight_bytes  # twice the weights if each graph kept its own copy


def test_attention_is_one_fused_node_per_block(tmp_path):
    """Each block's attention is one ONNX Runtime MultiHeadAttention node (no traced Softmax and
    head reshuffling run op by op at every sampler step), and model.json lists the ops."""
    vae, dit = tiny_modules("tiny")
    export.export_model(vae, dit, tmp_path)
    meta = json.loads((tmp_path / MODEL_JSON).read_text())
    for graph in export.SHARED_WEIGHT_GRAPHS:
        model = onnx.load(str(tmp_path / GRAPH_FILES[graph]), load_external_data=False)
        fused = [node for node in model.graph.node if node.op_type == "MultiHeadAttention"]
        # the context graph stops before the last block's attention: nothing attends to its output
        assert len(fused) == dit.config.dit.depth - (graph == "dynamics_context"), graph
        assert all(node.domain == "com.microsoft" for node in fused)
        ops = meta["graphs"][graph]["onnx_ops"]
        assert "Softmax" not in ops and "MultiHeadAttention" in ops


def test_parity_on_a_fresh_batch_size(tmp_path):
    """Graphs exported at batch 2 agree with torch at batch 3 (the batch dimension is dynamic)."""
    vae, dit = tiny_modules("tiny")
    export.export_model(vae, dit, tmp_path)
    config = dit.config
    rng = np.random.default_rng(5)
    c, h, w = config.vae.latent_shape
    k, batch = config.dit.context_frames, 3
    images = rng.integers(0, 256, (batch, config.vae.image_height, config.vae.image_width, 3), dtype=np.uint8)
    latent = rng.standard_normal((batch, c, h, w), dtype=np.float32)
    context = rng.standard_normal((batch, k, c, h, w), dtype=np.float32)
    level = np.full(batch, 0.1, np.float32)
    with torch.no_grad():
        kv = DynamicsContextGraph(dit)(torch.from_numpy(context), torch.from_numpy(level)).numpy()
    step = (kv, latent, np.full(batch, 0.75, np.float32), rng.standard_normal((batch, 2), dtype=np.float32))
    cases = {
        "encoder": (EncoderGraph(vae), (images,)),
        "decoder": (DecoderGraph(vae), (latent,)),
        "dynamics_context": (DynamicsContextGraph(dit), (context, level)),
        "dynamics": (DynamicsStepGraph(dit), step),
    }
    for graph, (module, inputs) in cases.items():
        session = ort.InferenceSession(str(tmp_path / GRAPH_FILES[graph]))
        names = [i.name for i in session.get_inputs()]
        (got,) = session.run(None, dict(zip(names, inputs)))
        with torch.no_grad():
            expected = module(*map(torch.from_numpy, inputs)).numpy()
        assert np.abs(expected).max() > 1e-3, graph  # a non-trivial output, so the comparison means something
        np.testing.assert_allclose(got, expected, atol=export.PARITY_TOLERANCE, err_msg=graph)


def test_parity_failure_stops_the_export(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)
    vae, dit = tiny_modules("tiny")
    with pytest.raises(export.ExportError, match="differs from torch"):
        export.export_model(vae, dit, tmp_path)
    assert not (tmp_path / MODEL_JSON).exists()


def test_export_command_from_a_checkpoint(tmp_path, capsys):
    from sora_ros.model.checkpoint import save_checkpoint

    vae, dit = tiny_modules("tiny")
    state = {"stage": "dit", "step": 3, "wall_s": {"vae": 1.0, "dit": 2.0}, "val": {"vae": {"step": 5}}}
    save_checkpoint(tmp_path / "ckpt.pt", dit.config, vae, dit, state=state, command="sora-ros train ...",
                    data={"frames": 7})
    parser = argparse.ArgumentParser()
    export_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", "--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "m")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "parity dynamics" in out and "max |ORT - torch|" in out
    parity_lines = [line for line in out.splitlines() if line.startswith("parity ")]
    assert len(parity_lines) == len(GRAPH_FILES) and all(line.endswith("pass (tolerance 1e-03)") for line in parity_lines)
    training = json.loads((tmp_path / "m" / MODEL_JSON).read_text())["training"]
    assert training["data"] == {"frames": 7} and training["command"] == "sora-ros train ..."
    assert training["steps"] == {"vae": 5, "dit": 3} and training["wall_time_s"] == {"vae": 1.0, "dit": 2.0}


def test_export_command_says_fail_and_exits_non_zero_over_the_tolerance(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)
    parser = argparse.ArgumentParser()
    export_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", "--preset", "tiny", "--out", str(tmp_path / "m")])
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert "FAIL (tolerance -1e+00)" in captured.out and "export failed" in captured.err


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    export_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    return args.func(args)


def test_a_non_empty_out_needs_force_and_is_then_replaced_whole(tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "anchor.onnx").write_text("an older model's graph")
    assert _export(["--preset", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sora-ros export: --out {out} is not empty (anchor.onnx); add --force to replace it with the new "
                   "model, or choose another --out")
    assert [p.name for p in out.iterdir()] == ["anchor.onnx"]
    assert _export(["--preset", "tiny", "--out", str(out), "--force"]) == 0
    assert not (out / "anchor.onnx").exists() and (out / MODEL_JSON).exists()  # no stale graph mixed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left beside it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _export(["--preset", "tiny", "--out", str(empty)]) == 0  # an empty folder needs no --force


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch, capsys, existing):
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)
    out = tmp_path / "models" / "m"
    if existing:
        out.mkdir(parents=True)
        (out / "model.json").write_text("the old model")
    assert _export(["--preset", "tiny", "--out", str(out), *(["--force"] if existing else [])]) == 1
    err = capsys.readouterr().err
    assert "export failed, nothing written" in err and ".partial" not in err
    if existing:  # the old model stays as it was
        assert [p.name for p in out.iterdir()] == ["model.json"] and (out / "model.json").read_text() == "the old model"
        assert [p.name for p in out.parent.iterdir()] == ["m"]
    else:
        assert list(tmp_path.iterdir()) == [], "no half-written model, no staging folder, no parent it made"


def test_a_negative_seed_is_refused_at_parsing(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _export(["--preset", "tiny", "--out", str(tmp_path / "m"), "--seed", "-1"])
    assert stop.value.code == 2
    assert "argument --seed: must be 0 or more, got -1" in capsys.readouterr().err


def _not_checkpoints(root) -> dict:
    import zipfile

    files = {"text": root / "notes.pt", "empty": root / "empty.pt", "zip": root / "other.zip.pt",
             "torch without the keys": root / "weights.pt", "format without weights": root / "half.pt"}
    files["text"].write_text("hello, not a checkpoint\n")
    files["empty"].write_bytes(b"")
    with zipfile.ZipFile(files["zip"], "w") as archive:
        archive.writestr("a.txt", "a zip of something else")
    torch.save({"weights": torch.zeros(1)}, files["torch without the keys"])
    torch.save({"format": "sora_ros.checkpoint/1", "config": {}}, files["format without weights"])
    return files


def test_load_checkpoint_refuses_what_is_no_checkpoint_naming_the_file(tmp_path):
    from sora_ros.model.checkpoint import CheckpointError, load_checkpoint

    for kind, path in {**_not_checkpoints(tmp_path), "missing": tmp_path / "nowhere.pt", "folder": tmp_path}.items():
        with pytest.raises(CheckpointError) as raised:
            load_checkpoint(path)
        message = str(raised.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (kind, message)


def test_export_of_a_file_that_is_no_checkpoint_is_one_line_naming_it(tmp_path):
    import subprocess
    import sys

    for kind, path in _not_checkpoints(tmp_path).items():
        out = tmp_path / "m"
        run = subprocess.run([sys.executable, "-m", "sora_ros.cli", "export", "--checkpoint", str(path), "--out",
                              str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
        err = run.stderr.strip()
        assert run.returncode == 1 and err.startswith(f"sora-ros export: {path}: "), (kind, run.stderr)
        assert "\n" not in err and "unexpected" not in err and "Traceback" not in err, (kind, err)
        assert not out.exists()
