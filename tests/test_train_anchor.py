"""The anchored-decoder stage (`sora-ros train-anchor`) on a tiny model and tiny sim runs: it
trains, takes the commands as its `plan` input, and adds a graph the runtime loads."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from model_helpers import export_tiny  # noqa: E402
from sora_ros.cli import main as cli  # noqa: E402
from sora_ros.runtime.anchor import plan_size  # noqa: E402
from sora_ros.runtime.engine import WorldModelEngine  # noqa: E402
from sora_ros.runtime.model_dir import MODEL_JSON  # noqa: E402


def test_train_anchor_learns_from_commands_and_exports_a_plan_input(tmp_path):
    runs = tmp_path / "runs"
    assert cli(["sim", "record", "--episodes", "2", "--seconds", "2", "--out", str(runs),
                "--width", "32", "--height", "32", "--objects", "8", "--quiet"]) == 0  # fmt: skip
    model = export_tiny(tmp_path / "tiny")
    assert cli(["train-anchor", "--model", str(model), "--data", str(runs), "--val-data", str(runs),
                "--action-topic", "/cmd_vel", "--plan", "--out", str(tmp_path / "run"), "--width", "8", "--steps", "3",
                "--batch", "4", "--sequence-frames", "12", "--val-every", "3", "--checkpoint-every", "3"]) == 0
    info = WorldModelEngine(model).info
    config = json.loads((model / MODEL_JSON).read_text())["anchor"]["config"]
    assert config["plan_features"] == plan_size(config["horizon"], info.action_dim) > 1
    engine = WorldModelEngine(model)
    assert engine.anchor is not None and engine.anchor.plan_features == config["plan_features"]
    summary = json.loads((tmp_path / "run" / "anchor_summary.json").read_text())
    assert summary["steps"] == 3 and summary["validation"]["rollout_psnr"] > 0


def test_rollouts_keep_the_share_of_footage_without_commands():
    """Every batch of rolled-out latents draws footage without commands (real video) for at least
    REAL_SHARE of its samples, though it is one sequence of four (drawn by sequence: a quarter)."""
    import numpy as np

    from sora_ros.model.anchor_trainer import REAL_SHARE, AnchorData, draw

    n, s, horizon, size, channels = 4, 12, 4, 8, 4
    actions = np.zeros((n, s, 2), np.float32)
    actions[3] = np.nan  # the real video
    rolled = np.arange(n)

    def zeros(*shape, dtype=np.float32):
        return np.zeros(shape, dtype)

    data = AnchorData(zeros(n, s, 2 * size, 2 * size, 3, dtype=np.uint8), actions, actions.copy(), zeros(2),
                      zeros(n, s, size, size, 3, dtype=np.uint8), zeros(n, s, 2, size, size, dtype=np.float16),
                      zeros(n, s, 2, 2 * size, 2 * size, dtype=np.float16), zeros(n, s, channels, 2, 2),
                      zeros(n, s, size, size, 3, dtype=np.uint8), rolled, np.array([3]),
                      zeros(n, 1, horizon, channels, 2, 2), zeros(n, 1, horizon, size, size, 3, dtype=np.uint8),
                      zeros(n, horizon, channels, 2, 2), zeros(n, horizon, size, size, 3, dtype=np.uint8))
    batch = draw(data, 2000, np.random.default_rng(0), horizon, rollout_share=1.0, still_share=0.0)
    unknown = batch["plan"][:, -1] == 0.0  # the known flag of each sample's commands
    assert REAL_SHARE + (1 - REAL_SHARE) / n - 0.05 < unknown.mean() < REAL_SHARE + (1 - REAL_SHARE) / n + 0.05


def test_a_run_refused_for_missing_data_leaves_no_empty_out(tmp_path):
    model = export_tiny(tmp_path / "tiny")
    out = tmp_path / "run"
    assert cli(["train-anchor", "--model", str(model), "--data", str(tmp_path / "missing"), "--out", str(out),
                "--no-export"]) == 1
    assert not out.exists()
