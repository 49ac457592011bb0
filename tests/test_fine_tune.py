"""Fine-tuning an exported model (`sora-ros train --init`) on tiny configs: it starts from the
parent's weights and lowers the loss, frozen parts stay bit-identical, the export records its
parent, other action specs carry over as documented, and bad weights get one clear error."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from model_helpers import export_tiny, randomise, rehash, tiny_modules  # noqa: E402
from sora_ros.cli import main as cli  # noqa: E402
from sora_ros.model.anchor import AnchorConfig, AnchorNet  # noqa: E402
from sora_ros.model.config import NO_ACTIONS, ActionSpec, preset  # noqa: E402
from sora_ros.model.checkpoint import load_checkpoint  # noqa: E402
from sora_ros.model.dit import DiT  # noqa: E402
from sora_ros.model.export import export_anchor  # noqa: E402
from sora_ros.model.fine_tune import adapt_actions, choose_actions, start_from  # noqa: E402
from sora_ros.model.onnx_weights import recover_modules  # noqa: E402
from sora_ros.model.trainer import VAL_HORIZON, VAL_SEED, VAL_WINDOWS, Trainer, learning_rate  # noqa: E402
from sora_ros.model.training import dynamics_loss, encode_frames  # noqa: E402
from sora_ros.model.weights import WEIGHTS_FILE, WeightsError, load_weights  # noqa: E402
from sora_ros.runtime.latents import model_id  # noqa: E402
from sora_ros.runtime.model_dir import MODEL_JSON, ModelDirError, read_model_info  # noqa: E402

TOPICS = ["--image-topic", "/camera/image_raw", "--action-topic", "/cmd_vel"]
TUNE = ["--sequence-frames", "12", "--dit-batch", "4", "--vae-batch", "4", "--log-every", "5", *TOPICS]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    """Simulated episodes of a robot the parent never saw (a small room, a high camera looking down)."""
    root = tmp_path_factory.mktemp("newbot")
    for split, seed, episodes in (("train", 10, 2), ("val", 20, 1)):
        assert cli(["sim", "record", "--episodes", str(episodes), "--seed", str(seed), "--seconds", "4",
                    "--out", str(root / split), "--width", "32", "--height", "32", "--objects", "6",
                    "--world-size", "4", "--camera-height", "0.6", "--camera-pitch", "-25", "--quiet"]) == 0  # fmt: skip
    return {split: root / split for split in ("train", "val")}


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny exported model (random weights) with an anchored decoder: VAE, DiT and anchor in weights.safetensors."""
    directory = export_tiny(tmp_path_factory.mktemp("parent") / "model")
    torch.manual_seed(3)
    # Perturbed like the VAE and DiT: an untrained net's equal tensors (GroupNorm ones) would be
    # merged by the exporter, which the ONNX recovery then refuses.
    export_anchor(randomise(AnchorNet(AnchorConfig(width=8, horizon=8), preset("tiny").vae.latent_channels), 3), directory)
    return directory


def _states(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    weights = load_weights(directory)
    return {part: getattr(weights, part).state_dict() for part in ("vae", "dit", "anchor")}


def _validations(run: Path) -> list[dict]:
    entries = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [e for e in entries if e["stage"] == "dit" and "val" in e]


def test_fine_tune_starts_from_the_parent_lowers_the_loss_and_records_its_parent(parent, bags, tmp_path):
    run, child = tmp_path / "run", tmp_path / "child"
    assert cli(["train", "--init", str(parent), "--data", str(bags["train"]), "--val-data", str(bags["val"]),
                "--out", str(run), "--dit-steps", "40", "--val-every", "40", "--dit-lr", "1e-3", *TUNE]) == 0  # fmt: skip
    validations = _validations(run)
    assert [v["step"] for v in validations] == [0, 40], "a fine-tune validates before its first step"

    # The parent's own loss on the same held-out windows, computed here from its weights file.
    weights = load_weights(parent)
    config = weights.config
    window = config.dit.context_frames + 4  # --dit-targets 4
    from sora_ros.bag.clip_sources import load_sequences

    buckets = load_sequences([bags["val"]], "/camera/image_raw", "/cmd_vel", dt=config.dt,
                             length=max(12, window + VAL_HORIZON), size_for=config.patch_grid.input_size,
                             action_names=config.actions.names)  # fmt: skip
    val = buckets.by_size[(config.vae.image_height, config.vae.image_width)]
    rows, index = Trainer.window_index(val, VAL_WINDOWS, window, np.random.default_rng(VAL_SEED))
    latents = encode_frames(weights.vae, torch.from_numpy(val.frames))[rows, index]
    with torch.no_grad():
        expected, _ = dynamics_loss(weights.dit, latents, torch.from_numpy(val.actions[rows, index]),
                                    torch.Generator().manual_seed(VAL_SEED))  # fmt: skip
    assert validations[0]["val"]["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert validations[-1]["val"]["loss"] < 0.9 * validations[0]["val"]["loss"], "fine-tuning did not learn"

    assert cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(child)]) == 0
    before, after = _states(parent), _states(child)
    assert all(torch.equal(before["vae"][k], after["vae"][k]) for k in before["vae"]), "the frozen VAE changed"
    assert all(torch.equal(before["anchor"][k], after["anchor"][k]) for k in before["anchor"]), "anchor not carried over"
    assert not all(torch.equal(before["dit"][k], after["dit"][k]) for k in before["dit"]), "the DiT did not train"
    meta = json.loads((child / MODEL_JSON).read_text())
    assert meta["parent"]["id"] == model_id(read_model_info(parent))
    assert meta["parent"]["weights_sha256"] == read_model_info(parent).files[WEIGHTS_FILE]
    assert meta["training"]["fine_tune"]["train_parts"] == ["dit"]
    assert meta["anchor"]["training"]["carried_over_from"]["id"] == meta["parent"]["id"]
    # The runtime loads the child without torch (and without reading the weights file).
    probe = ("import sys; from sora_ros.runtime.engine import WorldModelEngine; "
             f"e = WorldModelEngine({str(child)!r}); assert e.anchor is not None; "
             "assert 'torch' not in sys.modules and 'safetensors' not in sys.modules")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_fine_tune_serves_its_parent_s_cameras_and_its_own(tmp_path):
    """A parent of square cameras fine-tuned on 5:3 ones serves both: the union of the aspect ranges."""
    from sora_ros.model.checkpoint import load_checkpoint
    from sora_ros.model.export import export_model

    vae, dit = tiny_modules()
    dit.config = dit.config.replace(aspect_range=(1.0, 1.0))
    export_model(vae, dit, tmp_path / "square")
    assert cli(["sim", "record", "--episodes", "2", "--seconds", "3", "--out", str(tmp_path / "wide"), "--width", "40",
                "--height", "24", "--objects", "6", "--quiet"]) == 0  # fmt: skip
    assert cli(["train", "--init", str(tmp_path / "square"), "--data", str(tmp_path / "wide"), "--out", str(tmp_path / "run"),
                "--dit-steps", "2", "--val-every", "2", *TUNE]) == 0  # fmt: skip
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt").config.aspect_range == pytest.approx((1.0, 40 / 24))


def test_training_only_the_vae_keeps_the_dit_bit_identical(parent, bags, tmp_path):
    run = tmp_path / "run"
    assert cli(["train", "--init", str(parent), "--data", str(bags["train"]), "--val-data", str(bags["val"]),
                "--out", str(run), "--train-parts", "vae", "--vae-steps", "3", "--val-every", "3", *TUNE]) == 0  # fmt: skip
    assert cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "child")]) == 0
    before, after = _states(parent), _states(tmp_path / "child")
    assert all(torch.equal(before["dit"][k], after["dit"][k]) for k in before["dit"]), "the frozen DiT changed"
    assert not all(torch.equal(before["vae"][k], after["vae"][k]) for k in before["vae"]), "the VAE did not train"
    assert "train-anchor --init" in json.loads((tmp_path / "child" / MODEL_JSON).read_text())["anchor"]["training"]["note"]


def test_a_cpu_minute_budget_stops_the_run_and_snapshots_it(parent, bags, tmp_path):
    run = tmp_path / "run"
    assert cli(["train", "--init", str(parent), "--data", str(bags["train"]), "--val-data", str(bags["val"]),
                "--out", str(run), "--dit-steps", "100000", "--val-every", "100000", "--minutes", "0.04",
                "--snapshot-minutes", "0.02", *TUNE]) == 0  # fmt: skip
    summary = json.loads((run / "train_summary.json").read_text())
    assert 0.04 * 60 <= summary["state"]["cpu_s"]["dit"] and summary["state"]["step"] < 100000
    assert (run / "checkpoint_0.02min.pt").exists()


def test_fine_tuning_schedule_is_constant_after_its_warm_up():
    assert learning_rate(0, 1000, 1.0, warmup=20, constant=True) == pytest.approx(1 / 20)
    assert learning_rate(20, 1000, 1.0, warmup=20, constant=True) == learning_rate(999, 1000, 1.0, warmup=20, constant=True) == 1.0
    assert learning_rate(500, 1000, 1.0, progress=1.0) == pytest.approx(0.1), "a spent time budget ends the cosine"


def _velocity(dit, actions: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    c, h, w = dit.config.vae.latent_shape
    k = dit.config.dit.context_frames
    context = torch.randn((actions.shape[0], k, c, h, w), generator=generator)
    noisy = torch.randn((actions.shape[0], c, h, w), generator=generator)
    with torch.no_grad():
        return dit(context, torch.full((actions.shape[0],), 0.05), noisy, torch.full((actions.shape[0],), 0.5),
                   actions if dit.config.dit.action_dim else None)  # fmt: skip


def test_another_action_layout_keeps_the_shared_actions_and_starts_new_ones_at_zero():
    _, parent = tiny_modules("tiny")
    spec = choose_actions(parent.config.actions, ["linear_x", "linear_y", "angular_z"], [0.5, 0.3, 1.0])
    config = parent.config.replace(actions=spec, dit=dataclasses.replace(parent.config.dit, action_dim=3))
    child = DiT(config).eval()
    notes = adapt_actions(parent, child)
    assert notes == ["action linear_x: carries over", "action linear_y: new, starts at zero", "action angular_z: carries over"]
    actions = torch.tensor([[0.3, 0.0, -0.5], [-0.2, 0.0, 0.8]])  # no sideways motion: as the parent saw it
    assert torch.allclose(_velocity(child, actions), _velocity(parent, actions[:, [0, 2]]), atol=1e-6)
    new_column = child.action_embed[0].weight[:, 1]
    assert torch.count_nonzero(new_column) == 0
    c, h, w = config.vae.latent_shape
    loss = child(torch.randn(2, config.dit.context_frames, c, h, w), torch.zeros(2), torch.randn(2, c, h, w),
                 torch.full((2,), 0.5), actions + torch.tensor([0.0, 0.5, 0.0])).square().mean()  # fmt: skip
    loss.backward()
    assert torch.count_nonzero(child.action_embed[0].weight.grad[:, 1]) > 0, "the new action could never learn"

    _, unconditioned = tiny_modules("tiny-unconditioned")
    conditioned = DiT(unconditioned.config.replace(actions=ActionSpec(), dit=parent.config.dit)).eval()
    adapt_actions(unconditioned, conditioned)
    zeros = torch.zeros((2, 0))
    assert torch.allclose(_velocity(conditioned, actions[:, [0, 2]]), _velocity(unconditioned, zeros), atol=1e-6), \
        "a new action embedding must start out adding nothing"


def test_choose_actions_refuses_what_is_not_a_twist_field():
    with pytest.raises(ValueError, match="linear_w"):
        choose_actions(ActionSpec(), ["linear_w"])
    with pytest.raises(ValueError, match="--action-scale has 1 values for 2 actions"):
        choose_actions(ActionSpec(), None, [0.5])
    assert choose_actions(NO_ACTIONS, ["angular_z"]).scale == (1.0,)


def test_weights_recovered_from_onnx_graphs_equal_the_exported_ones(parent):
    config, vae, dit, anchor = recover_modules(parent)
    original = load_weights(parent)
    assert config == original.config
    for part, module in (("vae", vae), ("dit", dit), ("anchor", anchor)):
        state, expected = module.state_dict(), getattr(original, part).state_dict()
        assert all(torch.equal(state[k], expected[k]) for k in expected), f"{part} differs"


# -- bad weights: one clear error each -----------------------------------------------------------


def _fine_tune(parent: Path, bags, tmp_path: Path, *extra: str) -> int:
    return cli(["train", "--init", str(parent), "--data", str(bags["train"]), "--out", str(tmp_path / "run"),
                "--dit-steps", "1", *TUNE, *extra])  # fmt: skip


def _copy(parent: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(parent, tmp_path / "parent"))


def test_a_model_without_weights_says_how_to_get_them(parent, bags, tmp_path, capsys):
    directory = _copy(parent, tmp_path)
    meta = json.loads((directory / MODEL_JSON).read_text())
    del meta["files"][WEIGHTS_FILE], meta["weights"]
    (directory / MODEL_JSON).write_text(json.dumps(meta))
    assert _fine_tune(directory, bags, tmp_path) == 1
    err = capsys.readouterr().err
    assert f"lists no {WEIGHTS_FILE}" in err and "--from-onnx" in err
    with pytest.raises(WeightsError, match="--from-onnx"):
        load_weights(directory)


def test_a_missing_or_altered_weights_file_is_named(parent, bags, tmp_path, capsys):
    directory = _copy(parent, tmp_path)
    (directory / WEIGHTS_FILE).write_bytes((directory / WEIGHTS_FILE).read_bytes()[:-4] + b"\0\0\0\1")
    assert _fine_tune(directory, bags, tmp_path) == 1
    assert f"{WEIGHTS_FILE}: SHA-256 mismatch" in capsys.readouterr().err
    (directory / WEIGHTS_FILE).unlink()
    read_model_info(directory)  # the runtime does without it
    with pytest.raises(WeightsError, match=f"{WEIGHTS_FILE}: missing"):
        load_weights(directory)


def test_another_architecture_is_refused_naming_the_fields(parent, bags, tmp_path, capsys):
    assert _fine_tune(parent, bags, tmp_path, "--preset", "tiny-wide") == 1
    assert "vae.image_width: model 32, asked 48" in capsys.readouterr().err


def test_weights_whose_tensors_do_not_fit_the_config_are_named(parent, tmp_path):
    from safetensors.torch import load_file, save_file

    directory = _copy(parent, tmp_path)
    tensors = load_file(directory / WEIGHTS_FILE)
    tensors["dit.final.weight"] = tensors["dit.final.weight"][:, :-1].contiguous()
    from safetensors import safe_open

    with safe_open(directory / WEIGHTS_FILE, framework="pt") as reader:
        metadata = reader.metadata()
    save_file(tensors, directory / WEIGHTS_FILE, metadata=metadata)
    rehash(directory, WEIGHTS_FILE)
    with pytest.raises(WeightsError, match=r"dit.final.weight: file \(\d+, \d+\), architecture"):
        load_weights(directory)


def test_weights_load_without_unpickling_anything(parent, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_weights(parent).anchor is not None


def test_a_malformed_parent_section_is_refused(parent, tmp_path):
    directory = _copy(parent, tmp_path)
    meta = json.loads((directory / MODEL_JSON).read_text())
    meta["parent"] = {"name": "p", "version": "1", "id": "p@1#0", "weights_sha256": "not-a-hash"}
    (directory / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="parent.weights_sha256"):
        read_model_info(directory)


def test_train_anchor_init_starts_from_the_parents_anchored_decoder(parent, bags, tmp_path):
    out = tmp_path / "anchor"
    assert cli(["train-anchor", "--model", str(parent), "--init", str(parent), "--data", str(bags["train"]),
                "--action-topic", "/cmd_vel", "--out", str(out), "--steps", "1", "--batch", "4",
                "--sequence-frames", "12", "--no-export"]) == 0  # fmt: skip
    trained = torch.load(out / "anchor.pt", weights_only=True)["net"]
    start = load_weights(parent).anchor.state_dict()
    # One AdamW step in the warm-up moves each weight by at most lr / WARMUP_STEPS = 1e-5.
    assert max(float((trained[k] - start[k]).abs().max()) for k in start) <= 1.1e-5
    assert json.loads((out / "anchor_summary.json").read_text())["fine_tuned_from"]["id"] == model_id(read_model_info(parent))


def test_a_resumed_fine_tune_keeps_its_frozen_parts_and_parent(parent, bags, tmp_path):
    run = tmp_path / "run"
    common = ["--data", str(bags["train"]), "--val-data", str(bags["val"]), "--out", str(run), "--val-every", "2",
              "--checkpoint-every", "2", *TUNE]  # fmt: skip
    assert cli(["train", "--init", str(parent), "--dit-steps", "2", *common]) == 0
    assert cli(["train", "--resume", "--dit-steps", "4", *common]) == 0  # no --init: the checkpoint knows
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["state"]["step"] == 4 and summary["parent"]["id"] == model_id(read_model_info(parent))
    assert cli(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "child")]) == 0
    before, after = _states(parent), _states(tmp_path / "child")
    assert all(torch.equal(before["vae"][k], after["vae"][k]) for k in before["vae"]), "resuming unfroze the VAE"


def test_bench_report_keeps_each_resolution_with_its_own_baselines(tmp_path):
    from sora_ros.bench.fine_tune import NO_ANCHOR, plot_results, results_table

    def scores(model: float, anchored: bool) -> dict:
        base = 20.0 if anchored else 22.0  # the baselines differ with the scoring resolution
        return {"model": {str(h): model - h for h in (1, 2, 4, 8)}, "copy_last": {str(h): base - h for h in (1, 2, 4, 8)},
                "flow": {str(h): base + 1 - h for h in (1, 2, 4, 8)}, "anchored": anchored, "clips": 10}  # fmt: skip

    report = {"machine": "m", "new_robot": "--objects 1", "parent": "p", "budgets_cpu_minutes": [2.0], "wall_s": 60,
              "psnr_db": {"parent": scores(30, True), f"parent{NO_ANCHOR}": scores(25, False),
                          f"fine_tuned_2min{NO_ANCHOR}": scores(26, False), "scratch_2min": scores(15, False)}}  # fmt: skip
    table = results_table(report)
    anchored, plain = table.split("## ")[1:]
    assert "| parent | 29.00 |" in anchored and "| copy_last | 19.00 |" in anchored and "scratch" not in anchored
    assert "| scratch_2min | 14.00 |" in plain and "| copy_last | 21.00 |" in plain
    assert Path(plot_results(report, tmp_path / "plot.png")).stat().st_size > 0


def _runs_another_sampler(directory: Path, steps: int) -> Path:
    """A tiny model whose model.json sampler (`steps`, context noise 0.1) differs from its training
    config's (2 steps, no noise), as models/default's does (config 4 steps, sampler 2)."""
    export_tiny(directory)
    path = directory / MODEL_JSON
    meta = json.loads(path.read_text())
    assert meta["config"]["sampler_steps"] == 2
    meta["sampler"]["steps"], meta["sampler"]["context_noise"] = steps, 0.1
    path.write_text(json.dumps(meta))
    return directory


def test_a_fine_tune_keeps_the_sampler_its_parent_runs_with(tmp_path):
    start = start_from(_runs_another_sampler(tmp_path / "parent", 1), "child", None)
    assert (start.config.sampler_steps, start.config.context_noise) == (1, 0.1)


def test_a_conversion_to_per_frame_context_validates_the_parent_as_it_was(parent, bags, tmp_path):
    runs = {}
    for name, extra in (("same", []), ("converted", ["--context-attention", "frame"])):
        runs[name] = tmp_path / name
        assert cli(["train", "--init", str(parent), "--data", str(bags["train"]), "--val-data", str(bags["val"]),
                    "--out", str(runs[name]), "--dit-steps", "2", "--val-every", "2", *TUNE, *extra]) == 0  # fmt: skip
    same, converted = _validations(runs["same"]), _validations(runs["converted"])
    assert converted[0]["parent_before_conversion"] and "parent_before_conversion" not in same[0]
    assert converted[0]["val"] == pytest.approx(same[0]["val"], rel=1e-6)  # the parent's numbers, not the converted's
    summary = json.loads((runs["converted"] / "train_summary.json").read_text())
    assert summary["config"]["dit"]["context_attention"] == "frame"
    # The best checkpoint is the run's own: the parent's step-0 figures never select it.
    assert load_checkpoint(runs["converted"] / "checkpoint_best.pt").extra["state"]["best"]["step"] == 2


def test_a_conversion_with_the_dit_frozen_is_refused(parent, bags, tmp_path, capsys):
    assert _fine_tune(parent, bags, tmp_path, "--context-attention", "frame", "--train-parts", "vae") == 1
    assert "add dit to --train-parts" in capsys.readouterr().err


def test_an_export_from_onnx_keeps_the_sampler_the_model_runs_with(tmp_path, capsys):
    """models/default's config says 4 sampler steps, its sampler 2: re-exported, it still runs 2."""
    old = _runs_another_sampler(tmp_path / "old", 3)
    assert cli(["export", "--from-onnx", str(old), "--out", str(tmp_path / "new")]) == 0
    info = read_model_info(tmp_path / "new")
    assert (info.sampler_steps, info.context_noise) == (3, 0.1)
    assert load_weights(tmp_path / "new").config.sampler_steps == 3, "config, weights and sampler agree"
