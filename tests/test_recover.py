"""Weights read back from a model directory's ONNX graphs (directories exported before they
carried their weights): exact, or a clear error."""

from __future__ import annotations

import onnx
import pytest
import torch

from model_helpers import export_tiny, tiny_modules
from sora_ros.model.recover import RecoveryError, modules_from_graphs


def test_recovered_weights_are_the_exported_ones_bit_for_bit(tmp_path):
    directory = export_tiny(tmp_path / "m", seed=3)
    vae, dit = tiny_modules(seed=3)
    _, got_vae, got_dit = modules_from_graphs(directory)
    for expected, got in ((vae, got_vae), (dit, got_dit)):
        want, have = expected.state_dict(), got.state_dict()
        assert want.keys() == have.keys()
        assert all(torch.equal(want[key], have[key]) for key in want), [k for k in want if not torch.equal(want[k], have[k])]


def test_graphs_from_other_code_are_refused(tmp_path):
    directory = export_tiny(tmp_path / "m")
    path = directory / "encoder.onnx"
    model = onnx.load(str(path))
    renamed = next(t for t in model.graph.initializer if t.name.startswith("onnx::"))
    for node in model.graph.node:
        node.input[:] = ["renamed" if name == renamed.name else name for name in node.input]
    renamed.name = "renamed"
    onnx.save(model, str(path))
    from model_helpers import rehash
    rehash(directory, "encoder.onnx")
    with pytest.raises(RecoveryError, match="exported by other code"):
        modules_from_graphs(directory)
