"""Int8 dynamics graphs: `sora-ros quantize` adds them beside the float32 ones, the engine runs
them only when asked and close to float32 on this CPU, and a directory without them refuses int8
by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_helpers import export_tiny
from sora_ros.cli import main as cli_main
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import INT8_GRAPH_FILES, MODEL_JSON, ModelDirError, read_model_info


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> Path:
    directory = export_tiny(tmp_path_factory.mktemp("int8") / "model")
    assert cli_main(["quantize", "--model", str(directory)]) == 0
    return directory


def test_int8_rollouts_follow_the_float32_ones_closely_but_run_other_graphs(quantized: Path) -> None:
    info = read_model_info(quantized)
    assert info.int8_graphs == INT8_GRAPH_FILES
    meta = json.loads((quantized / MODEL_JSON).read_text())["dynamics"]["int8"]
    assert all(0 < p["relative_error"] < 0.05 for p in meta["parity"].values())
    rng = np.random.default_rng(0)
    context = rng.standard_normal((info.context_frames, *info.latent_shape)).astype(np.float32)
    actions = rng.uniform(-0.5, 0.5, (3, 4, info.action_dim)).astype(np.float32)
    float32, int8 = (WorldModelEngine(quantized, precision=p) for p in ("float32", "int8"))
    expected = float32.rollout(np.broadcast_to(context, (3, *context.shape)), actions, seed=1).latents
    got = int8.rollout(np.broadcast_to(context, (3, *context.shape)), actions, seed=1).latents
    relative = np.abs(got - expected).mean() / np.abs(expected).mean()
    assert 0 < relative < 0.1  # quantized (not the float32 graphs), and close to them


def test_int8_needs_the_graphs_and_a_known_precision(tmp_path: Path, quantized: Path) -> None:
    plain = export_tiny(tmp_path / "plain")
    assert WorldModelEngine(quantized, precision="auto").precision == "int8"  # on the CPU provider
    assert WorldModelEngine(plain, precision="auto").precision == "float32"
    with pytest.raises(ModelDirError, match="sora-ros quantize"):
        WorldModelEngine(plain, precision="int8")
    with pytest.raises(ModelDirError, match="precision must be one of float32, int8, auto"):
        WorldModelEngine(quantized, precision="int4")
    damaged = Path(shutil.copytree(quantized, tmp_path / "damaged"))
    (damaged / INT8_GRAPH_FILES["dynamics"]).write_bytes(b"not onnx")
    with pytest.raises(ModelDirError, match="SHA-256 mismatch"):
        read_model_info(damaged)


def test_int8_graphs_this_cpu_takes_too_far_run_as_float32_under_auto(quantized: Path, monkeypatch) -> None:
    from sora_ros.runtime import engine as engine_module

    monkeypatch.setattr(engine_module, "RELATIVE_TOLERANCE", 0.0)  # any int8 rounding now counts as too far
    info = read_model_info(quantized)
    context = np.random.default_rng(0).standard_normal((info.context_frames, *info.latent_shape)).astype(np.float32)
    actions = np.zeros((4, info.action_dim), np.float32)
    auto = WorldModelEngine(quantized, precision="auto")
    assert auto.precision == "float32" and "running float32" in auto.precision_note
    float32 = WorldModelEngine(quantized, precision="float32")
    assert float32.precision_note is None
    np.testing.assert_array_equal(auto.rollout(context, actions, seed=1).latents,
                                  float32.rollout(context, actions, seed=1).latents)
    asked = WorldModelEngine(quantized, precision="int8")  # asked for by name: kept, and said
    assert asked.precision == "int8" and "predictions are off" in asked.precision_note
    monkeypatch.undo()
    assert WorldModelEngine(quantized, precision="auto").precision_note is None


def test_quantize_refuses_a_folder_that_is_no_model(tmp_path: Path, capsys) -> None:
    assert cli_main(["quantize", "--model", str(tmp_path)]) == 1
    assert "model.json" in capsys.readouterr().err


def test_quantize_repairs_damaged_int8_graphs_and_a_refused_run_keeps_a_valid_model(
        tmp_path: Path, quantized: Path, monkeypatch) -> None:
    from sora_ros.model import quantize

    model = Path(shutil.copytree(quantized, tmp_path / "model"))
    (model / INT8_GRAPH_FILES["dynamics"]).unlink()
    with pytest.raises(ModelDirError, match="missing"):
        read_model_info(model)
    assert cli_main(["quantize", "--model", str(model)]) == 0  # replaces what it made before
    assert read_model_info(model).int8_graphs == INT8_GRAPH_FILES
    monkeypatch.setattr(quantize, "RELATIVE_TOLERANCE", 0.0)
    with pytest.raises(quantize.QuantizeError, match="float32 graphs only"):
        quantize.add_int8_dynamics(model)
    info = read_model_info(model)  # still loads: float32 only, nothing half-written listed
    assert info.int8_graphs is None
    assert WorldModelEngine(model, precision="auto").precision == "float32"


def test_a_failed_rename_leaves_model_json_as_it_was(tmp_path: Path, monkeypatch, capsys) -> None:
    import os

    model = export_tiny(tmp_path / "model")
    before = (model / MODEL_JSON).read_bytes()
    rename = os.replace

    def failing(source, target, *args, **kwargs):
        if Path(target).name == MODEL_JSON:  # a full disk or Ctrl-C at the last step
            raise OSError(28, "No space left on device")
        return rename(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    assert cli_main(["quantize", "--model", str(model)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert (model / MODEL_JSON).read_bytes() == before, "model.json rewritten in place, not replaced whole"
    assert not [p.name for p in model.iterdir() if p.name.startswith(".")], "the temporary file is removed"
    assert read_model_info(model).int8_graphs is None  # still a valid float32 model
