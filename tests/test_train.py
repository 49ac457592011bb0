"""`sora-ros train` on a tiny model: runs both stages, resumes, and keeps DDP ranks identical."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
from sora_ros.bag import messages as m  # noqa: E402
from sora_ros.bag.writing import BagWriter  # noqa: E402
from sora_ros.cli import main as cli  # noqa: E402

HELPERS = Path(__file__).parent / "helpers"
TINY = ["--preset", "tiny", "--sequence-frames", "12", "--vae-batch", "8", "--dit-batch", "4",
        "--val-every", "10", "--checkpoint-every", "10", "--log-every", "5"]  # fmt: skip


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 20 s, 10 fps, 40x40 video of a ball circling over a plain background."""
    path = tmp_path_factory.mktemp("video") / "ball.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 40))
    for t in range(200):
        frame = np.full((40, 40, 3), (90, 60, 30), np.uint8)
        cv2.circle(frame, (int(20 + 12 * np.sin(t / 6)), int(20 + 10 * np.cos(t / 4))), 5, (50, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def log_entries(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_train_runs_both_stages_then_resumes(video, tmp_path):
    out = tmp_path / "run"
    assert cli(["train", "--data", str(video), "--out", str(out), "--vae-steps", "10", "--dit-steps", "10", *TINY]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["state"]["stage"] == "dit" and summary["state"]["step"] == 10
    assert summary["config"]["dit"]["action_dim"] == 0, "no --action-topic: an unconditioned model"
    assert summary["data"]["frames_per_source"] == {"ball.avi": 12 * summary["data"]["sequences"]}
    assert {"recon_psnr"} <= set(summary["state"]["val"]["vae"])
    assert {"h1_psnr", "h1_copy_last_psnr", "h4_psnr"} <= set(summary["state"]["val"]["dit"])

    assert cli(["train", "--data", str(video), "--out", str(out), "--vae-steps", "10", "--dit-steps", "20",
                "--resume", *TINY]) == 0  # fmt: skip
    dit_steps = [e["step"] for e in log_entries(out) if e["stage"] == "dit" and "loss" in e]
    assert dit_steps == [5, 10, 15, 20], "resume must continue at step 10, not start over"


def test_bf16_precision_changes_the_arithmetic_and_still_learns(video, tmp_path):
    def vae_losses(precision: str) -> list[float]:
        out = tmp_path / precision
        assert cli(["train", "--data", str(video), "--out", str(out), "--vae-steps", "20", "--dit-steps", "0",
                    "--precision", precision, *TINY]) == 0  # fmt: skip
        return [e["loss"] for e in log_entries(out) if e["stage"] == "vae" and "loss" in e]

    fp32, bf16 = vae_losses("fp32"), vae_losses("bf16")
    assert len(bf16) == 4 and bf16[-1] < bf16[0]
    assert bf16 != pytest.approx(fp32, rel=1e-5), "the same losses as float32: autocast was not applied"


def test_train_refuses_missing_data_with_a_message(tmp_path, capsys):
    assert cli(["train", "--data", str(tmp_path / "nothing.mp4"), "--out", str(tmp_path / "o"), *TINY]) == 1
    assert "nothing.mp4: no such video file" in capsys.readouterr().err


def test_ddp_two_gloo_ranks_end_with_identical_weights(video, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(HELPERS / "ddp_train.py"), "--data", str(video), "--out", str(out),
               "--vae-steps", "4", "--dit-steps", "4", *TINY]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = [(out / f"rank{rank}.sha256").read_text() for rank in (0, 1)]
    assert hashes[0] == hashes[1], "DDP ranks diverged"
    assert (out / "checkpoint.pt").exists()


def test_learning_rate_schedule_is_plain_float():
    """The rate lands in the optimiser state, which torch.load(weights_only=True) must accept."""
    from sora_ros.model.trainer import WARMUP_STEPS, learning_rate

    assert learning_rate(0, 1000, 1.0) == pytest.approx(1 / WARMUP_STEPS)
    assert learning_rate(WARMUP_STEPS, 1000, 1.0) == pytest.approx(1.0)
    assert learning_rate(1000, 1000, 1.0) == pytest.approx(0.1)
    assert all(type(learning_rate(step, 1000, 1.0)) is float for step in (0, 500, 2000))


def test_default_validation_holds_out_whole_sources():
    """Sequences of one bag neighbour each other in time: validation takes whole bags."""
    from sora_ros.model.trainer import _held_out

    sources = [f"bag{i:02d}" for i in range(12) for _ in range(3)]
    held = _held_out(sources)
    assert sorted({s for s, h in zip(sources, held) if h}) == ["bag09"]
    assert _held_out(["a", "a", "b"]).tolist() == [False, False, True]
    assert _held_out(["only", "only"]) is None


def test_resume_without_a_checkpoint_is_an_error_naming_the_folder(video, tmp_path, capsys):
    """A copy of a model directory is not a run to continue: training from random weights would be silent."""
    out = tmp_path / "copy_of_models_default"
    out.mkdir()
    assert cli(["train", "--data", str(video), "--out", str(out), "--resume", *TINY]) == 1
    assert f"--resume: no checkpoint.pt in {out}" in capsys.readouterr().err
    assert not (out / "train_log.jsonl").exists(), "nothing may be trained"


def test_val_data_help_says_what_is_held_out(capsys):
    with pytest.raises(SystemExit):
        cli(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "every tenth bag or video" in text and "(default: None)" not in text


def test_verdict_says_beats_or_loses_per_horizon():
    from sora_ros.model.trainer import verdict

    lines = verdict({"dit": {"step": 9, "h1_psnr": 22.0, "h1_copy_last_psnr": 20.5,
                             "h4_psnr": 14.0, "h4_copy_last_psnr": 15.0}})  # fmt: skip
    assert lines == ["h=1: model 22.00 dB, copy-last 20.50 dB: beats copy-last by 1.50 dB",
                     "h=4: model 14.00 dB, copy-last 15.00 dB: loses to copy-last by 1.00 dB; train longer or add data"]


def test_train_ends_with_a_verdict_not_a_dict(video, tmp_path, capsys):
    assert cli(["train", "--data", str(video), "--out", str(tmp_path / "v"), "--vae-steps", "10", "--dit-steps", "10",
                *TINY]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("h=1: model ") and "copy-last" in line for line in lines)
    assert not any("{'" in line for line in lines), "no raw Python dict"


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory) -> tuple[Path, str]:
    """A tiny conditioned run on simulated bags with cmd_vel: (run folder, its stdout)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("sim_train")
    assert cli(["sim", "record", "--episodes", "3", "--seconds", "3", "--out", str(root / "bags"), "--split", "2:1:0",
                "--width", "32", "--height", "32", "--objects", "8", "--quiet"]) == 0  # fmt: skip
    out, stdout = root / "run", io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli(["train", "--data", str(root / "bags" / "train"), "--val-data", str(root / "bags" / "val"),
                    "--image-topic", "/camera/image_raw", "--action-topic", "/cmd_vel", "--out", str(out),
                    "--vae-steps", "10", "--dit-steps", "20", *TINY]) == 0  # fmt: skip
    return out, stdout.getvalue()


def test_validation_and_verdict_report_the_action_gap(sim_run):
    """As `sora-ros eval` measures it: PSNR under the true actions minus under other windows' actions."""
    out, stdout = sim_run
    dit = json.loads((out / "train_summary.json").read_text())["state"]["val"]["dit"]
    assert all(np.isfinite(dit[f"h{h}_action_gap"]) for h in (1, 4))
    assert any(line.startswith("h=1: action gap ") and " dB " in line for line in stdout.splitlines())


def test_action_gap_is_the_shared_eval_measure():
    """Training and `sora-ros eval` draw the other clip's actions and average PSNR the same way."""
    from sora_ros.core.action_shuffle import ActionShuffler, action_gap

    clips = [10 * i + np.repeat(np.arange(6, dtype=np.float32)[:, None], 2, axis=1) for i in range(3)]  # (T, A)
    shuffle = ActionShuffler(seed=0)
    first = shuffle(clips[0], first_future=2)
    assert first[:, 0].tolist() == [0, 1, 3, 2, 1, 0], "none before it: its own future, reversed in time"
    second = shuffle(clips[1], first_future=2)
    assert second[:, 0].tolist() == [10, 11, 2, 3, 4, 5], "the future comes from an earlier clip"
    assert action_gap([20.0, np.inf, np.nan], [10.0, 50.0]) == pytest.approx((20 + 100) / 2 - 30)


def test_training_curves_png_is_written_into_out(sim_run):
    out, stdout = sim_run
    picture = cv2.imread(str(out / "train_curves.png"))
    assert picture is not None and picture.shape[1] > 600
    assert f"training curves: {out / 'train_curves.png'}" in stdout


def test_best_checkpoint_is_kept_beside_the_last_and_exports(sim_run, tmp_path):
    from sora_ros.model.checkpoint import load_checkpoint
    from sora_ros.runtime.model_dir import MODEL_JSON

    out, stdout = sim_run
    summary = json.loads((out / "train_summary.json").read_text())
    best = summary["best_checkpoint"]
    assert best["path"] == str(out / "checkpoint_best.pt") and best["step"] in (10, 20)
    validations = [e for e in log_entries(out) if e["stage"] == "dit" and "val" in e]
    scores = {e["step"]: np.mean([e["val"]["h1_psnr"], e["val"]["h4_psnr"]]) for e in validations}
    assert best["step"] == max(scores, key=scores.get) and best["mean_psnr"] == pytest.approx(scores[best["step"]])
    assert load_checkpoint(out / "checkpoint_best.pt").extra["state"]["step"] == best["step"]
    assert (out / "checkpoint.pt").exists(), "the last checkpoint stays"
    assert f"best by validation: {out / 'checkpoint_best.pt'}" in stdout
    assert cli(["export", "--checkpoint", best["path"], "--out", str(tmp_path / "m")]) == 0
    training = json.loads((tmp_path / "m" / MODEL_JSON).read_text())["training"]
    assert training["steps"]["dit"] == best["step"]


def test_a_run_clearly_too_short_is_warned_about(sim_run):
    """10 + 20 steps: below the measured minimum, and a VAE that reconstructs below copy-last."""
    _, stdout = sim_run
    assert "warning: 10 VAE + 20 DiT steps is far below the 4500 + 2500 of the shortest run measured" in stdout
    assert "warning: the VAE reconstructs validation frames at" in stdout and "below copy-last's" in stdout


def camera_run(path: Path, height: int, width: int, seconds: int = 6, linear_x: float = 0.3) -> Path:
    """A bag of a ball circling over a plain background, seen by a height x width camera at 10 Hz, with /cmd_vel
    (`linear_x` forward)."""
    with BagWriter(path) as bag:
        for k in range(10 * seconds):
            stamp = k * 100_000_000
            frame = np.full((height, width, 3), (90, 60, 30), np.uint8)
            centre = (int(width / 2 + width / 3 * np.sin(k / 5)), int(height / 2 + height / 3 * np.cos(k / 4)))
            cv2.circle(frame, centre, 4, (50, 200, 255), -1)
            bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(frame, stamp, "camera"))
            bag.write("/cmd_vel", m.TWIST, stamp, m.twist(linear_x, 0.5 * np.sin(k / 5)))
    return path


def test_two_camera_shapes_train_in_their_own_buckets_and_set_the_aspect_range(tmp_path):
    """A square and a 5:3 camera: each keeps its own token grid (4x4 and 3x5 tokens of the tiny model),
    both buckets take VAE and DiT steps and are validated, and the model serves exactly their range."""
    from sora_ros.model.checkpoint import load_checkpoint

    shapes = {"32x32": (32, 32), "24x40": (24, 40)}
    train = [str(camera_run(tmp_path / "train" / name, *shape)) for name, shape in shapes.items()]
    val = [str(camera_run(tmp_path / "val" / name, *shape, seconds=3)) for name, shape in shapes.items()]
    out = tmp_path / "run"
    assert cli(["train", "--data", *train, "--val-data", *val, "--image-topic", "/camera/image_raw",
                "--action-topic", "/cmd_vel", "--out", str(out), "--vae-steps", "10", "--dit-steps", "10", *TINY]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert set(summary["data"]["buckets"]) == set(summary["val_data"]["buckets"]) == set(shapes)
    assert summary["config"]["aspect_range"] == pytest.approx([1.0, 40 / 24])
    assert load_checkpoint(out / "checkpoint.pt").config.aspect_range == pytest.approx((1.0, 40 / 24))
    steps = summary["state"]["bucket_steps"]
    assert {stage: set(steps[stage]) for stage in ("vae", "dit")} == {"vae": set(shapes), "dit": set(shapes)}, steps
    assert sum(steps["vae"].values()) == sum(steps["dit"].values()) == 10
    frames = [summary["val_data"]["buckets"][name]["frames"] for name in shapes]
    for stage, metric in (("vae", "recon_psnr"), ("dit", "h1_psnr"), ("dit", "loss")):
        last = [e for e in log_entries(out) if e["stage"] == stage and "val" in e][-1]
        assert set(last["val_buckets"]) == set(shapes)
        per_bucket = [last["val_buckets"][name][metric] for name in shapes]
        assert last["val"][metric] == pytest.approx(np.average(per_bucket, weights=frames)), "not frame-weighted"


# -- user-trial fixes: a run of no steps, batch caps, an --out that holds a run, absurd actions ----------------


def test_a_run_of_no_steps_ends_cleanly_without_curves(video, tmp_path, capsys):
    """--vae-steps 0 --dit-steps 0 logs nothing: no curves to draw, said in a line, exit 0."""
    out = tmp_path / "none"
    assert cli(["train", "--data", str(video), "--out", str(out), *TINY, "--vae-steps", "0", "--dit-steps", "0"]) == 0
    captured = capsys.readouterr()
    assert "no training curves: the run took no step" in captured.out and "unexpected" not in captured.err
    assert (out / "checkpoint.pt").exists() and not (out / "train_curves.png").exists()


@pytest.mark.parametrize(("option", "value", "error"), [
    ("--vae-batch", "1000000", "argument --vae-batch: must be from 1 to 1024, got 1000000"),
    ("--dit-batch", "513", "argument --dit-batch: must be from 1 to 512, got 513"),
    ("--vae-batch", "0", "argument --vae-batch: must be at least 1, got 0"),
])  # fmt: skip
def test_batch_sizes_are_capped_at_parsing(option, value, error, tmp_path, capsys):
    """A batch that would grow the process until the kernel kills it is a usage error, before any work."""
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--data", "runs/", "--out", str(tmp_path / "o"), option, value])
    assert exit_info.value.code == 2 and error in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_batch_caps_admit_the_batches_in_use():
    """scripts/train_default.sh (32, 16), the defaults (64, 32) and the caps themselves parse."""
    from sora_ros.cli import build_parser

    for vae, dit in (("32", "16"), ("1024", "512")):
        args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--vae-batch", vae, "--dit-batch", dit])
        assert (args.vae_batch, args.dit_batch) == (int(vae), int(dit))
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert (args.vae_batch, args.dit_batch) == (64, 32)


def test_an_out_holding_a_run_needs_resume_or_force(video, tmp_path, capsys):
    """Without --resume a second run there would overwrite its checkpoints and mix two runs in one log:
    refused (exit 2, nothing touched); --force starts over, the old run's files replaced, not appended to."""
    out = tmp_path / "run"
    common = ["train", "--data", str(video), "--out", str(out), *TINY, "--vae-steps", "5"]
    assert cli([*common, "--dit-steps", "10"]) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert "checkpoint_best.pt" in before
    capsys.readouterr()
    assert cli([*common, "--dit-steps", "5"]) == 2
    assert capsys.readouterr().err.strip() == (f"sora-ros train: --out {out} holds a training run (checkpoint.pt): "
                                               "pass --resume to continue it, or --force to start over "
                                               "(its files are replaced)")  # fmt: skip
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before, "a refused run touches nothing"

    assert cli([*common, "--dit-steps", "0", "--force"]) == 0
    assert {(e["stage"], e["step"]) for e in log_entries(out)} == {("vae", 5)}, "the old run's log lines stayed"
    assert not (out / "checkpoint_best.pt").exists(), "the old run's best DiT checkpoint stayed"
    assert json.loads((out / "train_summary.json").read_text())["state"]["step"] == 0


def test_an_out_holding_only_a_runs_log_needs_force(video, tmp_path, capsys):
    """A run stopped before its first checkpoint leaves a log and nothing to resume."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text('{"stage": "vae", "step": 5, "loss": 1.0}\n')
    assert cli(["train", "--data", str(video), "--out", str(out), *TINY]) == 2
    assert "holds files of a training run (train_log.jsonl) but no checkpoint.pt to resume: pass --force" in \
        capsys.readouterr().err  # fmt: skip


def test_absurd_actions_are_clamped_with_a_warning_and_the_log_stays_strict_json(tmp_path, capsys):
    """A cmd_vel of 1e30 m/s overflowed the gradients (grad_norm Infinity in the log, which strict JSON
    parsers refuse): it is clamped to the model's range, as the runtime clamps commands, and counted."""
    bags = [str(camera_run(tmp_path / split, 32, 32, linear_x=1e30)) for split in ("train", "val")]
    out = tmp_path / "run"
    assert cli(["train", "--data", bags[0], "--val-data", bags[1], "--image-topic", "/camera/image_raw",
                "--action-topic", "/cmd_vel", "--out", str(out), *TINY, "--vae-steps", "2", "--dit-steps", "4",
                "--log-every", "1"]) == 0  # fmt: skip
    assert ("warning: 60 training and 60 validation action value(s) outside the model's range (offset +- 3 x scale: "
            "linear_x [-1.5, 1.5], angular_z [-3, 3]) clamped to it") in capsys.readouterr().out  # fmt: skip

    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    entries = [json.loads(line, parse_constant=refuse) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["grad_norm"]) for e in entries if e["stage"] == "dit" and "grad_norm" in e)


def test_the_log_writes_non_finite_numbers_as_null():
    from sora_ros.model.trainer import finite_or_none

    entry = {"grad_norm": float("inf"), "val": {"loss": float("nan"), "h1_psnr": 20.5}, "steps": [1.0, -np.inf], "s": "x"}
    assert json.dumps(finite_or_none(entry), allow_nan=False) == \
        '{"grad_norm": null, "val": {"loss": null, "h1_psnr": 20.5}, "steps": [1.0, null], "s": "x"}'  # fmt: skip


def test_an_action_topic_no_training_bag_has_is_refused_before_any_work(tmp_path, capsys):
    """A typo in --action-topic trained an action-conditioned model on no action at all (one note among
    the data lines); as in eval, it is refused, naming the topics the bags have."""
    bag = camera_run(tmp_path / "bag", 32, 32, seconds=2)
    out = tmp_path / "run"
    assert cli(["train", "--data", str(bag), "--image-topic", "/camera/image_raw", "--action-topic", "/cmd_vell",
                "--out", str(out), *TINY]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("sora-ros train: --action-topic /cmd_vell is in none of the bags; they have: "
                          "/camera/image_raw (sensor_msgs/msg/Image), /cmd_vel (geometry_msgs/msg/Twist); ")
    assert not out.exists()


def test_what_the_validation_bags_drop_is_reported(tmp_path, capsys):
    """Drops in --val-data (here NaN commands) are counted in the log as the training data's are, not silently."""
    train = camera_run(tmp_path / "train", 32, 32, seconds=2)
    val = tmp_path / "val"
    with BagWriter(val) as bag:
        for k in range(20):
            stamp = k * 100_000_000
            bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(np.full((32, 32, 3), 5 * k, np.uint8), stamp, "c"))
            bag.write("/cmd_vel", m.TWIST, stamp, m.twist(float("nan") if k == 3 else 0.2, 0.0))
    assert cli(["train", "--data", str(train), "--val-data", str(val), "--image-topic", "/camera/image_raw",
                "--action-topic", "/cmd_vel", "--out", str(tmp_path / "run"), *TINY, "--vae-steps", "0",
                "--dit-steps", "1"]) == 0  # fmt: skip
    assert f"  validation: {val}: skipped 1: action with NaN or Inf (first: " in capsys.readouterr().out
