"""model.json states the facts of the weights twice, at the top level (what the runtime reads) and in
the training "config": an edit in one place only fails at load, naming the field and both values;
the risk head keeps the reference latent grid it was trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_helpers import export_tiny_with_risk
from sora_ros.runtime.model_dir import MODEL_JSON, ModelDirError, read_model_info

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "default"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The tiny model (32x32 input, latents 4x8x8, patch 2, two actions) with a risk head."""
    return export_tiny_with_risk(tmp_path_factory.mktemp("tiny_risk"))


@pytest.fixture
def model(exported, tmp_path) -> Path:
    """A private copy of the exported model, to edit."""
    return shutil.copytree(exported, tmp_path / "model")


def _edit(model: Path, **fields) -> None:
    """Set model.json fields given by dotted path (double underscores in the keyword)."""
    meta = json.loads((model / MODEL_JSON).read_text())
    for dotted, value in fields.items():
        *parents, leaf = dotted.split("__")
        node = meta
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    (model / MODEL_JSON).write_text(json.dumps(meta))


def test_the_shipped_model_and_an_exported_one_load():
    assert read_model_info(SHIPPED).risk is not None
    # and export_tiny_with_risk calls read_model_info after writing (the fixtures of the other tests)


@pytest.mark.parametrize("field, value, config_field, config_value", [
    ("dt", 0.2, "config.dt", "0.1"),
    ("context_frames", 3, "config.dit.context_frames", "2"),
    ("patch_size", 1, "config.dit.patch_size", "2"),
    ("input__aspect_range", [1.0, 1.0], "config.aspect_range", r"\[0\.333.*, 3\.0\]"),
    ("action__normalisation__scale", [1.0, 2.0], "config.actions.scale", r"\[0\.5, 1\.0\]"),
    ("action__normalisation__offset", [0.0, 0.5], "config.actions.offset", r"\[0\.0, 0\.0\]"),
])
def test_a_top_level_field_that_disagrees_with_the_config_fails_at_load(model, field, value, config_field,
                                                                        config_value):
    _edit(model, **{field: value})
    dotted = field.replace("__", ".")
    shown = json.dumps(value).replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(ModelDirError, match=rf"model\.json: {dotted} = {shown} but {config_field} = {config_value}"):
        read_model_info(model)


def test_a_latent_shape_the_config_does_not_give_fails_at_load(model):
    _edit(model, latent_shape=[5, 8, 8])
    with pytest.raises(ModelDirError, match=r"latent_shape = \[5, 8, 8\] but config\.vae .* = \[4, 8, 8\]"):
        read_model_info(model)


def test_a_pixel_budget_changed_in_one_place_fails_at_load(model):
    _edit(model, input__height=64, input__width=64, input__pixel_budget=4096, latent_shape=[4, 16, 16])
    with pytest.raises(ModelDirError, match=r"input\.height = 64 but config\.vae\.image_height = 32"):
        read_model_info(model)
    _edit(model, input__height=32, input__width=32, latent_shape=[4, 8, 8])  # the stated budget alone
    with pytest.raises(ModelDirError, match=r"input\.pixel_budget = 4096 but input\.height x input\.width = 32 x 32"):
        read_model_info(model)


def test_a_new_pixel_budget_with_the_old_risk_head_fails_at_load(model):
    """The budget changed everywhere (top level and config), but risk.onnx was trained on 8x8 latents."""
    _edit(model, input__height=64, input__width=64, input__pixel_budget=4096, latent_shape=[4, 16, 16],
          config__vae__image_height=64, config__vae__image_width=64)
    with pytest.raises(ModelDirError, match=r"risk\.signature inputs .*\[.batch., 2, 4, 8, 8\].* but latent_shape "
                                            r"\[4, 16, 16\].* need .*\[.batch., 2, 4, 16, 16\].*sora-ros train-risk"):
        read_model_info(model)
    _edit(model, risk=None)  # without the head the same model.json loads
    assert read_model_info(model).latent_shape == (4, 16, 16)


def test_a_model_json_without_a_config_is_not_cross_checked(model):
    """Models exported before model.json carried the config load as before."""
    _edit(model, config=None, input__aspect_range=[1.0, 1.0], dt=0.2)
    info = read_model_info(model)
    assert info.dt == 0.2 and info.patch_grid.aspect_range == (1.0, 1.0)


def test_a_file_in_place_of_the_model_directory_is_called_a_file(model):
    with pytest.raises(ModelDirError, match=r"model\.json: a file, not a model directory \(the folder that holds"):
        read_model_info(model / MODEL_JSON)
    with pytest.raises(ModelDirError, match="nowhere: model directory does not exist"):
        read_model_info(model / "nowhere")
