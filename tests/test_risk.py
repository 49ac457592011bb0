"""The risk head: labels from odometry + cmd_vel on crafted bags, the ROC AUC, the stage's clear
error without odometry, export parity of risk.onnx and its model.json checks, and the runtime's
per-frame risk (tiny models; a model directory without a head answers without risk)."""

from __future__ import annotations

import json
import math
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from model_helpers import export_tiny, export_tiny_with_risk, randomise
from sora_ros.bag import messages as m
from sora_ros.bag.motion import labelled_clips, read_motion
from sora_ros.bag.writing import BagWriter
from sora_ros.core.requests import RolloutRequest
from sora_ros.core.risk import BlockedRule, blocked_steps, blocked_within, roc_auc
from sora_ros.core.units import NS_PER_S
from sora_ros.model.export import PARITY_TOLERANCE, export_risk
from sora_ros.model.risk import RiskConfig, RiskGraph, RiskNet
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import MODEL_JSON, ModelDirError, read_model_info
from sora_ros.runtime.pipeline import RolloutSettings, WorldModelPipeline
from sora_ros.runtime.risk import NO_RISK_HEAD, RISK_FILE

DT_NS = 100_000_000
T0_NS = 5 * NS_PER_S
HORIZON = 3


def motion_bag(path: Path, steps: list[tuple[float | None, float]], *, odom: bool = True, images: bool = False,
               odom_nan: bool = False, broken_frame: int | None = None, frame_size: tuple[int, int] = (32, 32)) -> Path:
    """A 10 Hz bag: at step k a cmd_vel of steps[k][0] m/s (None: no message), and odometry that
    advances steps[k][1] m/s along x over the step (NaN with `odom_nan`); one more odometry message
    (and frame of `frame_size`, height x width) ends it. Frame `broken_frame` has its pixel data cut
    short (undecodable)."""
    x = 0.0
    with BagWriter(path) as bag:
        for k in range(len(steps) + 1):
            stamp = T0_NS + k * DT_NS
            if odom:
                bag.write("/odom", m.ODOMETRY, stamp, m.odometry(math.nan if odom_nan else x, 0.0, 0.0, 0.0, 0.0, stamp,
                                                                 "odom", "base_link"))
            if images:
                frame = np.full((*frame_size, 3), 40 * (k % 6), np.uint8)
                frame[:, :8] = 255  # a bright left edge: the frame is not left-right symmetric
                image = m.image(frame, stamp, "camera")
                if k == broken_frame:
                    image.data = image.data[:-1]
                bag.write("/camera/image_raw", m.IMAGE, stamp, image)
            if k < len(steps):
                command, speed = steps[k]
                if command is not None:
                    bag.write("/cmd_vel", m.TWIST, stamp, m.twist(command, 0.3))
                x += speed * DT_NS / NS_PER_S
    return path


def _stamps(count: int) -> np.ndarray:
    return T0_NS + DT_NS * np.arange(count, dtype=np.int64)


def test_forward_command_without_progress_is_blocked_moving_or_standing_is_not(tmp_path: Path) -> None:
    moving, blocked, still = [(0.5, 0.5)] * 4, [(0.5, 0.0)] * 3, [(0.0, 0.0)] * 4
    log = read_motion(motion_bag(tmp_path / "bag", moving + blocked + still), "/odom", "/cmd_vel")
    steps = blocked_steps(BlockedRule(), _stamps(11), DT_NS, log)
    np.testing.assert_array_equal(steps, [0] * 4 + [1] * 3 + [0] * 4)
    # Blocked within the next 3 steps: frames 2..6 see a blocked step ahead; the last steps of
    # frames 9 and 10 run past the odometry, and with none of their known steps blocked they are
    # unknown, not "free".
    labels = blocked_within(BlockedRule(horizon_steps=HORIZON), _stamps(11), DT_NS, log)
    np.testing.assert_array_equal(labels[:9], [0, 0, 1, 1, 1, 1, 1, 0, 0])
    assert np.isnan(labels[9:]).all()


def test_starting_from_rest_is_not_blocked_but_a_stale_command_does_not_drive(tmp_path: Path) -> None:
    # Accelerating: 1 cm of the 6 cm commanded at 0.6 m/s (the sim's 1 m/s^2 from rest) is progress.
    start = [(0.6, 0.1), (0.6, 0.2)]
    # Then one forward command and silence: the robot stops (its driver's cmd_vel timeout); only
    # the steps within command_timeout_s of the last command count as commanded.
    stale = [(0.5, 0.0)] + [(None, 0.0)] * 8
    log = read_motion(motion_bag(tmp_path / "bag", start + stale), "/odom", "/cmd_vel")
    steps = blocked_steps(BlockedRule(command_timeout_s=0.25), _stamps(11), DT_NS, log)
    np.testing.assert_array_equal(steps, [0, 0, 1, 1, 1] + [0] * 6)


def test_odometry_gaps_make_labels_unknown_not_free(tmp_path: Path) -> None:
    log = read_motion(motion_bag(tmp_path / "bag", [(0.5, 0.5)] * 6), "/odom", "/cmd_vel")
    later = _stamps(12)[6:]  # past the last odometry message
    assert np.isnan(blocked_steps(BlockedRule(), later, DT_NS, log)).all()


def test_training_windows_of_predicted_frames_reach_back_into_the_real_context() -> None:
    from sora_ros.runtime.risk import RiskData

    # 2 clips of K = 3 real frames + H = 2 predicted ones; latent value = 10 * clip + frame (+ 100 if predicted).
    grid = (1, 1, 1)
    latents = np.array([[10 * c + t for t in range(5)] for c in range(2)], np.float32).reshape(2, 5, *grid)
    predicted = latents[:, 3:] + 100
    labels = np.array([[0, 1, np.nan, 0, 1], [1, 0, 0, np.nan, 0]], np.float32)
    actions = np.arange(10, dtype=np.float32).reshape(2, 5, 1)
    data = RiskData(latents, actions, labels, predicted)
    clips, at = data.samples(True, frames=2)  # frames 3 and 4 with known labels
    assert list(zip(clips, at)) == [(0, 3), (0, 4), (1, 4)]
    windows, chosen, truth = data.gather(True, 2, clips, at)
    assert windows.reshape(3, 2).tolist() == [[2, 103], [103, 104], [113, 114]]
    assert chosen[:, 0].tolist() == [2, 3, 8] and truth.tolist() == [0, 1, 0]  # the action into the last frame
    clips, at = data.samples(False, frames=2)  # encoded: t >= 1, known labels
    assert list(zip(clips, at)) == [(0, 1), (0, 3), (0, 4), (1, 1), (1, 2), (1, 4)]
    assert data.gather(False, 2, clips, at)[0].reshape(6, 2)[-1].tolist() == [13, 14]


def test_the_label_rule_reads_as_english_for_one_step_and_for_several() -> None:
    assert BlockedRule(horizon_steps=1).describe(0.1, "/cmd_vel", "/odom").startswith(
        "blocked within the next step of 0.1 s: commanded linear.x > 0.05 m/s (held from /cmd_vel")
    assert BlockedRule(horizon_steps=8).describe(0.1, "/cmd_vel", "/odom").startswith(
        "blocked within the next 8 steps of 0.1 s:")


def test_roc_auc_against_hand_counts() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    # Pairs (positive, negative): (0.35 vs 0.1, 0.4), (0.8 vs 0.1, 0.4) -> 3 of 4 ordered.
    assert roc_auc([0, 1, 0, 1], [0.1, 0.35, 0.4, 0.8]) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts half
    assert roc_auc([1, np.nan, 0], [0.9, 0.0, 0.1]) == 1.0  # unknown labels are left out
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))  # one class: undefined


def test_mirrored_training_clips_are_the_flipped_frames_under_the_mirrored_turn(tmp_path: Path) -> None:
    from sora_ros.model.risk_trainer import prepare

    directory = export_tiny(tmp_path / "model")
    engine = WorldModelEngine(directory)
    info = engine.info
    bag = motion_bag(tmp_path / "bag", [(0.5, 0.5)] * 10 + [(0.5, 0.0)] * 10, images=True)
    args = Namespace(image_topic="/camera/image_raw", action_topic="/cmd_vel", odom_topic="/odom")
    rule = BlockedRule(horizon_steps=HORIZON)
    plain, _ = prepare(engine, [bag], args, rule, log=lambda _: None)
    both, summary = prepare(engine, [bag], args, rule, mirror=True, log=lambda _: None)
    assert len(both.latents) == 2 * len(plain.latents) and summary["mirrored"]
    original, mirrored = both.latents[0::2], both.latents[1::2]  # each clip, then its mirror
    np.testing.assert_allclose(original, plain.latents, atol=1e-5)
    assert np.abs(mirrored - original).max() > 1e-3  # the frames are not symmetric, so their latents differ
    clip, _ = next(labelled_clips([bag], "/camera/image_raw", "/cmd_vel", "/odom", rule, dt=info.dt,
                                  length=info.context_frames + info.default_horizon, stride=info.default_horizon,
                                  size=info.image_size, action_names=info.action_names, notes=[]))
    np.testing.assert_allclose(mirrored[0], engine.encode(np.ascontiguousarray(clip.frames[:, :, ::-1])), atol=1e-5)
    np.testing.assert_array_equal(both.actions[1::2], plain.actions * [1.0, -1.0])  # turning left becomes right
    np.testing.assert_array_equal(both.labels[1::2], plain.labels)


def _wide_and_narrow(tmp_path: Path) -> tuple:
    """A tiny model's engine, a 4:3 camera's bag and an 8:1 one's (beyond the model's 3:1), the
    stage's topic arguments and the label rule."""
    steps = [(0.5, 0.5)] * 10 + [(0.5, 0.0)] * 10
    return (WorldModelEngine(export_tiny(tmp_path / "model")),
            motion_bag(tmp_path / "wide", steps, images=True, frame_size=(48, 64)),
            motion_bag(tmp_path / "narrow", steps, images=True, frame_size=(8, 64)),
            Namespace(image_topic="/camera/image_raw", action_topic="/cmd_vel", odom_topic="/odom"),
            BlockedRule(horizon_steps=HORIZON))


def test_a_camera_of_another_aspect_ratio_trains_at_its_own_grid_resampled_to_the_heads(tmp_path: Path) -> None:
    """A 4:3 robot camera's clips are encoded at its own token grid and resampled to the head's, as
    RiskHead resamples them at run time (not skipped); a camera the model does not serve is noted."""
    from sora_ros.bag.clip_sources import fit_frames
    from sora_ros.model.risk_trainer import prepare
    from sora_ros.runtime.risk import resample_grid

    engine, wide, narrow, args, rule = _wide_and_narrow(tmp_path)
    info = engine.info
    data, summary = prepare(engine, [wide, narrow], args, rule, log=lambda _: None)
    assert data.latents.shape[2:] == info.latent_shape and data.predicted.shape[2:] == info.latent_shape
    clip, _ = next(labelled_clips([wide], "/camera/image_raw", "/cmd_vel", "/odom", rule, dt=info.dt,
                                  length=info.context_frames + info.default_horizon, stride=info.default_horizon,
                                  size=None, action_names=info.action_names, notes=[]))
    own = engine.encode(fit_frames(clip.frames, info.input_size(clip.frames.shape[1:3])))  # (L, C, h, w)
    assert own.shape[-2:] != info.latent_shape[1:]  # the camera's own grid is not the head's
    np.testing.assert_allclose(data.latents[0], resample_grid(own, info.latent_shape[1:]), atol=1e-5)
    assert len(data.latents) == len(prepare(engine, [wide], args, rule, log=lambda _: None)[0].latents)
    assert any(note.startswith(f"{narrow}") and "clips skipped" in note for note in summary["notes"]), summary["notes"]
    # With aspect_policy crop, as the node's parameter, the narrow camera trains on its centred window in the range.
    cropped, summary = prepare(engine, [narrow], args, rule, log=lambda _: None, aspect_policy="crop")
    assert len(cropped.latents) == len(data.latents) and not any("skipped" in note for note in summary["notes"])


def test_a_resumed_run_records_the_grids_of_its_checkpoint_and_of_its_own_data(tmp_path: Path) -> None:
    """model.json risk.grids lists every camera grid the head trained on: a run resumed on the square
    camera alone keeps the 4:3 camera its checkpoint trained on, and the cropped one's (the cameras' own
    grids, not the head's)."""
    from sora_ros.model.risk_trainer import train_risk

    directory = export_tiny(tmp_path / "model")
    info = read_model_info(directory)
    steps = [(0.5, 0.5)] * 10 + [(0.5, 0.0)] * 10
    square = motion_bag(tmp_path / "square", steps, images=True)
    wide = motion_bag(tmp_path / "wide", steps, images=True, frame_size=(48, 64))
    narrow = motion_bag(tmp_path / "narrow", steps, images=True, frame_size=(8, 64))  # 8:1, cropped to 3:1
    args = Namespace(model=directory, data=[square, wide, narrow], val_data=None, image_topic="/camera/image_raw",
                     aspect_policy="crop", action_topic="/cmd_vel", odom_topic="/odom", horizon_steps=HORIZON,
                     min_command=0.05, progress_fraction=0.1, command_timeout=0.5, frames=0, width=4, hidden=8,
                     dropout=0.2, mirror=False, steps=4, batch=8, lr=1e-3, weight_decay=0.0, teacher_fraction=0.5,
                     seed=0, out=str(tmp_path / "run"), resume=False, val_every=4, checkpoint_every=4, no_export=True,
                     command="test")
    assert train_risk(args)["data"]["grids"] == [[4, 12], [6, 8], list(info.latent_shape[1:])]
    args.data, args.aspect_policy, args.steps, args.resume, args.no_export = [square], "refuse", 8, True, False
    train_risk(args)
    assert read_model_info(directory).risk["grids"] == [[4, 12], [6, 8], list(info.latent_shape[1:])]


def test_mirrored_clips_of_a_camera_of_another_aspect_ratio_and_the_skipped_ones_counted_once(tmp_path: Path) -> None:
    """--mirror on a 4:3 camera mirrors its clips at its own grid; a camera the model does not serve
    is skipped once per clip recorded, not once more for a mirror that was never to be used."""
    from sora_ros.bag.clip_sources import fit_frames
    from sora_ros.model.risk_trainer import prepare
    from sora_ros.runtime.risk import resample_grid

    engine, wide, narrow, args, rule = _wide_and_narrow(tmp_path)
    info = engine.info
    data, summary = prepare(engine, [narrow, wide], args, rule, mirror=True, log=lambda _: None)
    recorded = [clip for clip, _ in labelled_clips([wide, narrow], "/camera/image_raw", "/cmd_vel", "/odom", rule,
                                                   dt=info.dt, length=info.context_frames + info.default_horizon,
                                                   stride=info.default_horizon, size=None,
                                                   action_names=info.action_names, notes=[])]
    served = [clip for clip in recorded if clip.source == str(wide)]
    assert len(data.latents) == 2 * len(served)
    flipped = np.ascontiguousarray(served[0].frames[:, :, ::-1])
    own = engine.encode(fit_frames(flipped, info.input_size(flipped.shape[1:3])))
    np.testing.assert_allclose(data.latents[1], resample_grid(own, info.latent_shape[1:]), atol=1e-5)
    skipped = len(recorded) - len(served)
    assert [note for note in summary["notes"] if "clips skipped" in note] == [
        note for note in summary["notes"] if note.startswith(f"{narrow}: {skipped} clips skipped: a 64x8 camera")]


def test_a_bag_whose_camera_changes_between_shapes_the_model_does_not_serve_notes_each_with_its_count(
        tmp_path: Path) -> None:
    from sora_ros.bag.clips import Clip
    from sora_ros.runtime.risk import collect_risk_data

    engine = WorldModelEngine(export_tiny(tmp_path / "model"))
    info = engine.info
    length = info.context_frames + info.default_horizon
    rng = np.random.default_rng(0)

    def clip(height: int, width: int) -> tuple[Clip, np.ndarray]:
        frames = rng.integers(0, 256, (length, height, width, 3), dtype=np.uint8)
        return (Clip(frames, np.zeros((length, info.action_dim), np.float32), _stamps(length), "bag"),
                np.zeros(length, np.float32))

    notes: list[str] = []
    data = collect_risk_data(engine, [clip(32, 32), clip(8, 64), clip(8, 64), clip(4, 64)], info.default_horizon,
                             notes=notes)
    assert len(data.latents) == 1
    assert [note.split(" has aspect")[0] for note in notes] == ["bag: 2 clips skipped: a 64x8 camera",
                                                                 "bag: 1 clips skipped: a 64x4 camera"], notes


def test_eval_aspect_policy_crop_scores_the_risk_head_on_the_cropped_camera_too(tmp_path: Path, capsys) -> None:
    """`eval --aspect-policy crop` crops a camera outside the model's range for the risk head as it
    does for the predictions (and as the node's aspect_policy:=crop does), rather than skip its clips."""
    from sora_ros.cli import main as sora_ros

    directory = export_tiny_with_risk(tmp_path / "model")
    info = read_model_info(directory)
    steps = [(0.5, 0.5)] * 10 + [(0.5, 0.0)] * 10
    bags = [motion_bag(tmp_path / "narrow", steps, images=True, frame_size=(8, 64)),  # 8:1, beyond the model's 3:1
            motion_bag(tmp_path / "square", steps, images=True)]
    clips = list(labelled_clips(bags, "/camera/image_raw", "/cmd_vel", "/odom", BlockedRule(horizon_steps=HORIZON),
                                dt=info.dt, length=info.context_frames + info.default_horizon,
                                stride=info.default_horizon, size=None, action_names=info.action_names, notes=[]))
    assert sora_ros(["eval", *map(str, bags), "--action-topic", "/cmd_vel", "--model", str(directory), "--horizons", "1",
                     "--aspect-policy", "crop", "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["risk"]["clips"] == len(clips)
    said = capsys.readouterr()
    assert "clips skipped" not in said.out
    # The cropped camera's grid is not the one the head trained on (the reference grid): eval says so.
    untrained = [line for line in (said.out + said.err).splitlines() if "never trained on the latent grid" in line]
    assert len(untrained) == 1 and "it trained on 8x8" in untrained[0], said


def test_risk_data_clamps_commands_outside_the_models_range_and_says_so(tmp_path: Path) -> None:
    from sora_ros.model.risk_trainer import prepare

    engine = WorldModelEngine(export_tiny(tmp_path / "model"))
    bag = motion_bag(tmp_path / "bag", [(1e30, 0.5)] * 20, images=True)  # finite, far outside any range
    args = Namespace(image_topic="/camera/image_raw", action_topic="/cmd_vel", odom_topic="/odom")
    data, summary = prepare(engine, [bag], args, BlockedRule(horizon_steps=HORIZON), log=lambda _: None)
    high = np.asarray(engine.info.action_range[1], np.float32)
    assert (data.actions <= high).all() and np.isfinite(data.predicted).all()  # rolled out clamped, no overflow
    assert any("outside the model's range clamped" in note for note in summary["notes"])


def test_odometry_that_is_all_nan_is_counted_and_leaves_no_labelled_clip(tmp_path: Path) -> None:
    from sora_ros.model.risk_trainer import prepare

    engine = WorldModelEngine(export_tiny(tmp_path / "model"))
    bag = motion_bag(tmp_path / "bag", [(0.5, 0.5)] * 20, images=True, odom_nan=True)
    args = Namespace(image_topic="/camera/image_raw", action_topic="/cmd_vel", odom_topic="/odom")
    logged: list[str] = []
    with pytest.raises(ValueError, match="with a known label") as error:
        prepare(engine, [bag], args, BlockedRule(horizon_steps=HORIZON), log=logged.append)
    assert "21 x odometry position with NaN or Inf dropped" in str(error.value)
    assert any("odometry position with NaN" in line for line in logged)  # said on the terminal too


def test_frames_the_risk_clips_lose_are_noted(tmp_path: Path) -> None:
    """An undecodable frame breaks a clip of train-risk's data: counted in the notes, not lost silently."""
    bag = motion_bag(tmp_path / "bag", [(0.5, 0.5)] * 20, images=True, broken_frame=9)
    notes: list[str] = []
    clips = list(labelled_clips([bag], "/camera/image_raw", "/cmd_vel", "/odom", BlockedRule(), dt=0.1, length=6,
                                stride=2, size=(32, 32), action_names=("linear_x", "angular_z"), notes=notes))
    assert clips and all(9 not in np.round((c.stamps_ns - T0_NS) / DT_NS) for c, _ in clips)
    broken = f"{bag}: skipped 1: image not decodable (first: Image.data holds "
    assert any(note.startswith(broken) for note in notes), notes


def test_a_bag_without_odometry_is_a_clear_error_naming_the_topic(tmp_path: Path) -> None:
    bag = motion_bag(tmp_path / "bag", [(0.5, 0.5)] * 20, odom=False, images=True)
    with pytest.raises(ValueError, match="no bag has both /odom") as error:
        labelled_clips([bag], "/camera/image_raw", "/cmd_vel", "/odom", BlockedRule(), dt=0.1, length=6, stride=2,
                       size=(32, 32), action_names=("linear_x", "angular_z"), notes=[])
    assert "bag: no /odom" in str(error.value)  # and which bag lacks it


def _risk_net(info, seed: int = 0) -> RiskNet:
    torch.manual_seed(seed)
    net = RiskNet(RiskConfig(width=4, hidden=8, frames=info.context_frames), info.latent_shape, info.action_offset,
                  info.action_scale)
    return randomise(net, seed + 5).eval()


@pytest.fixture(scope="module")
def with_head(tmp_path_factory) -> Path:
    directory = export_tiny(tmp_path_factory.mktemp("risk"))
    info = read_model_info(directory)
    rule = BlockedRule(horizon_steps=HORIZON)
    export_risk(RiskGraph(_risk_net(info)), directory, horizon_steps=HORIZON, label=rule.describe(0.1, "/cmd_vel", "/odom"),
                rule={"progress_fraction": 0.1}, metrics={"auc": 0.5})
    return directory


def test_frames_beyond_the_models_context_is_a_usage_error_before_any_data_is_read(with_head: Path, tmp_path: Path,
                                                                                   capsys) -> None:
    from sora_ros.cli import build_parser
    from sora_ros.cli import main as sora_ros

    context = read_model_info(with_head).context_frames
    run = ["train-risk", "--model", str(with_head), "--data", str(tmp_path / "no_bags"), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as stop:
        sora_ros([*run, "--frames", str(context + 1)])
    assert stop.value.code == 2
    assert (f"sora-ros train-risk: error: --frames {context + 1} is outside 0 to {context}: the model's context "
            f"length is {context} frames ({with_head / MODEL_JSON} context_frames)") in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "refused before the stage made OUT"
    for words in ([*run, "--frames", str(context)], [*run, "--model", str(tmp_path / "no_model"), "--frames", "99"]):
        args = build_parser().parse_args(words)
        args.check_usage(args)  # taken: the context length; a missing model is the stage's to report


def test_a_model_that_has_a_head_keeps_it_unless_force_says_to_replace_it(with_head: Path, tmp_path: Path,
                                                                         capsys) -> None:
    from sora_ros.cli import main as sora_ros

    before = (with_head / RISK_FILE).read_bytes()
    run = ["train-risk", "--model", str(with_head), "--data", str(tmp_path / "no_bags"), "--out", str(tmp_path / "run")]
    assert sora_ros(run) == 2
    assert f"--model {with_head} already has risk.onnx: --force replaces it" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and (with_head / RISK_FILE).read_bytes() == before
    assert sora_ros([*run, "--force"]) == 1  # taken: the stage runs (and reports the missing bags)
    assert sora_ros([*run, "--no-export"]) == 1


def test_an_unconditioned_model_gets_a_head_on_latents_alone(tmp_path: Path) -> None:
    directory = export_tiny(tmp_path / "unconditioned", name="tiny-unconditioned")
    info = read_model_info(directory)
    export_risk(RiskGraph(_risk_net(info)), directory, horizon_steps=HORIZON, label="test", rule={}, metrics={})
    engine = WorldModelEngine(directory)
    latents = np.random.default_rng(0).standard_normal((4, info.context_frames, *info.latent_shape), dtype=np.float32)
    risk = engine.risk.probabilities(latents, None)
    assert risk.shape == (4,) and ((0 <= risk) & (risk <= 1)).all()
    with pytest.raises(ValueError, match="takes no actions"):
        engine.risk.probabilities(latents, np.zeros((4, 2), np.float32))


def test_export_parity_and_the_runtime_head_match_torch(with_head: Path) -> None:
    info = read_model_info(with_head)
    assert info.risk["graph"] == RISK_FILE and info.risk["horizon_steps"] == HORIZON
    assert info.risk["frames"] == info.context_frames
    assert info.risk["parity_max_abs_error"] <= PARITY_TOLERANCE
    assert info.files[RISK_FILE] == info.risk["sha256"]
    engine = WorldModelEngine(with_head)
    rng = np.random.default_rng(1)
    latents = rng.standard_normal((5, info.context_frames, *info.latent_shape), dtype=np.float32)
    actions = rng.uniform(-0.5, 0.5, (5, info.action_dim)).astype(np.float32)
    got = engine.risk.probabilities(latents, actions)
    with torch.no_grad():
        expected = RiskGraph(_risk_net(info)).eval()(torch.from_numpy(latents), torch.from_numpy(actions)).numpy()
    np.testing.assert_allclose(got, expected, atol=PARITY_TOLERANCE)
    assert got.std() > 1e-3, "a head whose output ignores its input would pass parity trivially"
    actions[2] = np.nan
    assert np.isnan(engine.risk.probabilities(latents, actions)).tolist() == [False, False, True, False, False]


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta["risk"].update(horizon_steps=0), "risk.horizon_steps"),
    (lambda meta: meta["risk"].update(frames=meta["context_frames"] + 1), "exceeds context_frames"),
    (lambda meta: meta["risk"].update(sha256="0" * 64), "risk.sha256 differs"),
    (lambda meta: meta["risk"].update(graph="../risk.onnx"), "is not a file that 'files' lists"),
    (lambda meta: meta["risk"].update(grids=[[6, 0]]), "risk.grids must be a list"),
    (lambda meta: meta["risk"].update(grids=[8, 8]), "risk.grids must be a list"),
    (lambda meta: meta["risk"].update(grids=None), "'risk.grids' has the wrong type"),
    (lambda meta: meta["risk"].update(grids=[]), "risk.grids lists no grid"),
    (lambda meta: meta["risk"].update(grids=[[8, 8], [10 ** 9, 8]]),
     r"risk.grids\[1\]: a 1000000000x8 latent grid is not"),  # no camera encodes to it
    # One bad entry of many is named, not the whole list (a message of any length).
    (lambda meta: meta["risk"].update(grids=[[8, 8]] * 5000 + [[8.0, 8]]), r"risk.grids\[5000\] is \[8.0, 8\]$"),
])
def test_model_json_risk_section_is_checked(with_head: Path, tmp_path: Path, change, message) -> None:
    import shutil

    directory = Path(shutil.copytree(with_head, tmp_path / "model"))
    meta = json.loads((directory / MODEL_JSON).read_text())
    change(meta)
    (directory / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=message):
        read_model_info(directory)


def _pipeline(directory: Path) -> WorldModelPipeline:
    pipeline = WorldModelPipeline(WorldModelEngine(directory))
    pipeline.settings = RolloutSettings(horizon=HORIZON, samples=2)
    rng = np.random.default_rng(0)
    for k in range(pipeline.info.context_frames):
        _, latent = pipeline.encode(rng.integers(0, 256, (*pipeline.info.image_size, 3), dtype=np.uint8))
        pipeline.observe(T0_NS + k * pipeline.dt_ns, "camera", latent)
    return pipeline


def test_forecast_risk_is_the_head_on_each_step_predicted_or_observed_whichever_is_higher(with_head: Path) -> None:
    pipeline = _pipeline(with_head)
    actions = np.array([[[0.5, 0.0]] * HORIZON, [[0.0, 1.0]] * HORIZON], np.float32)  # (N, H, A)
    actions[1, 1] = np.nan  # an unknown step: no risk for it
    outcome = pipeline.what_if(RolloutRequest(actions, 2, HORIZON, 2, 3, False))
    assert NO_RISK_HEAD not in outcome.notes
    engine, info = pipeline.engine, pipeline.info
    context = pipeline.latest_context().latents  # (K, C, h, w)
    result = engine.rollout(np.broadcast_to(context, (2, *context.shape)), actions, horizon=HORIZON, samples=2, seed=3,
                            steps=info.sampler_steps)
    k = info.context_frames
    for n, forecast in enumerate(outcome.forecasts):
        assert forecast.risk.shape == (HORIZON,) and forecast.risk.dtype == np.float32
        # Frame j's window: the K latents before and at j, the context's where the rollout has none yet.
        per_sample = [[engine.risk.probabilities(np.concatenate([context, result.latents[n, s]])[None, j + 1:j + 1 + k],
                                                 actions[n, j][None])[0] for j in range(HORIZON)] for s in range(2)]
        # The held window under the same command: the context's last latent for every predicted one.
        held_history = np.concatenate([context, np.repeat(context[-1:], HORIZON, axis=0)])  # (K + H, C, h, w)
        held = engine.risk.probabilities(np.stack([held_history[j + 1:j + 1 + k] for j in range(HORIZON)]), actions[n])
        assert n or (held > np.mean(per_sample, axis=0)).any(), "a step where the held frames read riskier"
        np.testing.assert_allclose(forecast.risk, np.maximum(np.mean(per_sample, axis=0), held), atol=1e-6)
    # One context per candidate (N, K, ...): candidate n is scored on its own context.
    per_candidate = engine.risk.forecast(np.stack([context, context[::-1]]), result.latents, actions)
    second = engine.risk.forecast(context[::-1], result.latents[1:], actions[1:])
    np.testing.assert_allclose(per_candidate[1], second[0], atol=1e-6)
    with pytest.raises(ValueError, match="context has only"):
        engine.risk.forecast(context[-1:], result.latents, actions)
    assert np.isnan(outcome.forecasts[1].risk[1]) and np.isfinite(outcome.forecasts[0].risk).all()
    assert ((0 <= outcome.forecasts[0].risk) & (outcome.forecasts[0].risk <= 1)).all()


def test_a_model_without_a_risk_head_answers_without_risk_and_says_so(tmp_path: Path) -> None:
    pipeline = _pipeline(export_tiny(tmp_path / "plain"))
    assert pipeline.engine.risk is None and pipeline.info.risk is None
    actions = np.zeros((1, HORIZON, pipeline.info.action_dim), np.float32)
    served = pipeline.what_if(RolloutRequest(actions, 1, HORIZON, 1, 0, False))
    assert served.forecasts[0].risk is None and NO_RISK_HEAD in served.notes
    live = pipeline.predict(pipeline.latest_context(), actions[0, 0], seed=0, decode_all=False)
    assert live.forecasts[0].risk is None and NO_RISK_HEAD not in live.notes  # not logged every live rollout


def test_a_head_exported_before_calibration_loads_with_a_warning_saying_how_to_mend_it(with_head: Path,
                                                                                      tmp_path: Path, caplog) -> None:
    assert read_model_info(with_head).risk["calibration"]["log_odds_shift"] == 0.0  # exported as RiskGraph(net)
    with caplog.at_level("WARNING"):
        WorldModelEngine(with_head)
    assert "predates calibrated heads" not in caplog.text
    old = tmp_path / "old"
    shutil.copytree(with_head, old)
    meta = json.loads((old / MODEL_JSON).read_text())
    del meta["risk"]["calibration"]
    (old / MODEL_JSON).write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        engine = WorldModelEngine(old)
    assert engine.risk is not None and "predates calibrated heads" in caplog.text
    assert "--resume --force" in caplog.text, "the command train-risk takes on a model that has risk.onnx"


def test_a_camera_grid_the_head_never_trained_on_is_scored_with_one_warning(with_head: Path, tmp_path: Path,
                                                                            caplog) -> None:
    """A head trained on the reference grid alone (model.json without risk.grids, as every head before
    other cameras could train one) warns once per other grid it is asked to score; a head whose
    risk.grids lists that grid does not."""
    engine = WorldModelEngine(with_head)
    c, h, w = engine.info.latent_shape
    action = np.zeros((2, engine.info.action_dim), np.float32)
    other = np.zeros((2, engine.risk.frames, c, h - 2, w), np.float32)  # a wider camera's grid
    with caplog.at_level("WARNING", logger="sora_ros.runtime.risk"):
        engine.risk.probabilities(np.zeros((2, engine.risk.frames, c, h, w), np.float32), action)
        assert not caplog.records  # its own grid
        engine.risk.probabilities(other, action)
        engine.risk.probabilities(other, action)
    warnings = [r for r in caplog.records if "never saw such views" in r.getMessage()]
    assert len(warnings) == 1 and f"{h - 2}x{w}" in warnings[0].getMessage()
    mixed = tmp_path / "mixed"
    shutil.copytree(with_head, mixed)
    meta = json.loads((mixed / MODEL_JSON).read_text())
    meta["risk"]["grids"] = [[h, w], [h - 2, w]]
    (mixed / MODEL_JSON).write_text(json.dumps(meta))
    caplog.clear()
    with caplog.at_level("WARNING", logger="sora_ros.runtime.risk"):
        WorldModelEngine(mixed).risk.probabilities(other, action)
    assert not caplog.records


def test_a_grid_scored_from_many_threads_at_once_warns_once(with_head: Path, caplog) -> None:
    """Live rollouts and ~/rollout calls score on several executor threads: the first of them to
    score an untrained grid warns, the others do not (a check and a note apart let several through)."""
    import threading
    import time

    engine = WorldModelEngine(with_head)
    c, h, w = engine.info.latent_shape
    head = engine.risk

    class Slow(set):  # widens the gap between asking whether a grid was warned of and noting it
        def __contains__(self, item) -> bool:
            found = super().__contains__(item)
            time.sleep(0.05)
            return found

    head._warned = Slow()
    other = np.zeros((1, head.frames, c, h - 2, w), np.float32)
    action = np.zeros((1, engine.info.action_dim), np.float32)
    with caplog.at_level("WARNING", logger="sora_ros.runtime.risk"):
        threads = [threading.Thread(target=head.probabilities, args=(other, action)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len([r for r in caplog.records if "never saw such views" in r.getMessage()]) == 1


def test_the_node_says_a_grid_its_head_never_trained_on_in_its_ros_log(with_head: Path, capfd) -> None:
    """The world_model node's warning goes through its ROS logger (its log file and /rosout, `[WARN]
    [world_model]` on the terminal), once, not to Python logging that no handler reads in a node."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.lifecycle import TransitionCallbackReturn

    from sora_ros.nodes.world_model import WorldModelNode

    rclpy.init(args=["--ros-args", "-r", "__ns:=/risk_grid_test", "-p", f"model_path:={with_head}",
                     "-p", "autostart:=false"])
    node = WorldModelNode()
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        engine = node.pipeline.engine
        c, h, w = engine.info.latent_shape
        other = np.zeros((1, engine.risk.frames, c, h - 2, w), np.float32)
        capfd.readouterr()
        for _ in range(2):
            engine.risk.probabilities(other, np.zeros((1, engine.info.action_dim), np.float32))
        err = capfd.readouterr().err
        assert err.count("never saw such views") == 1 and "[WARN]" in err and "world_model]" in err, err
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def test_future_frames_carry_the_risk(with_head: Path) -> None:
    from sora_ros.nodes.messages import future_frames

    pipeline = _pipeline(with_head)
    outcome = pipeline.predict(pipeline.latest_context(), np.array([0.5, 0.0], np.float32), seed=0, decode_all=False)
    msg = future_frames(outcome, 0, "tiny", pipeline.info, 0.01)
    np.testing.assert_allclose(msg.risk, outcome.forecasts[0].risk, rtol=1e-6)
    assert len(msg.risk) == HORIZON


def test_the_prior_correction_turns_a_class_weighted_fit_into_probabilities() -> None:
    """A logistic fit with positives weighted by negatives / positives (as the stage trains) reads
    the odds that much too high; prior_log_odds on its logit gives back the true probability."""
    from sora_ros.model.risk import prior_log_odds

    torch.manual_seed(0)
    x = torch.randn(20_000, 1)
    truth = torch.sigmoid(2 * x - 3)[:, 0]  # ~10% positive, rare in most of the range
    labels = torch.bernoulli(truth)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    fit = torch.nn.Linear(1, 1)
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(negatives / positives))
    optimizer = torch.optim.LBFGS(fit.parameters(), max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(fit(x)[:, 0], labels)
        value.backward()
        return value

    optimizer.step(closure)
    with torch.no_grad():
        logit = fit(x)[:, 0]
        balanced, corrected = torch.sigmoid(logit), torch.sigmoid(logit + prior_log_odds(positives, negatives))
    share = positives / len(labels)
    assert balanced.mean() > 2 * share, "the weighted fit alone is far above the share of positives"
    assert abs(corrected.mean().item() - share) < 0.01
    assert (corrected - truth).abs().max() < 0.03, "calibrated everywhere, not only on average"
    with pytest.raises(ValueError, match="both classes"):
        prior_log_odds(0, 10)


def test_the_stage_learns_a_separable_label_and_exports_a_head_the_runtime_loads(tmp_path: Path) -> None:
    """End to end on a crafted bag: frames are bright exactly while the robot is blocked, so a
    working stage must reach a high validation AUC and add a loadable risk.onnx."""
    from sora_ros.model.risk_trainer import train_risk

    directory = export_tiny(tmp_path / "model")
    steps = ([(0.5, 0.5)] * 10 + [(0.5, 0.0)] * 10) * 3
    x, bags = 0.0, []
    for name in ("train", "val"):
        path = tmp_path / name
        with BagWriter(path) as bag:
            x = 0.0
            for k in range(len(steps) + 1):
                stamp = T0_NS + k * DT_NS
                bag.write("/odom", m.ODOMETRY, stamp, m.odometry(x, 0.0, 0.0, 0.0, 0.0, stamp, "odom", "base_link"))
                ahead = any(speed == 0.0 for _, speed in steps[k:k + HORIZON])
                bag.write("/camera/image_raw", m.IMAGE, stamp,
                          m.image(np.full((32, 32, 3), 220 if ahead else 30, np.uint8), stamp, "camera"))
                if k < len(steps):
                    bag.write("/cmd_vel", m.TWIST, stamp, m.twist(*steps[k][:1], 0.0))
                    x += steps[k][1] * DT_NS / NS_PER_S
        bags.append(path)
    args = Namespace(model=directory, data=[bags[0]], val_data=[bags[1]], image_topic="/camera/image_raw",
                     aspect_policy="refuse",
                     action_topic="/cmd_vel", odom_topic="/odom", horizon_steps=HORIZON, min_command=0.05,
                     progress_fraction=0.1, command_timeout=0.5, frames=0, width=4, hidden=16, dropout=0.2, mirror=False,
                     steps=60, batch=32, lr=3e-3,
                     weight_decay=0.0, teacher_fraction=0.5, seed=0, out=str(tmp_path / "run"), resume=False,
                     val_every=30, checkpoint_every=30, no_export=False, command="test")
    summary = train_risk(args)
    assert summary["validation"]["auc_encoded"] >= 0.9, summary["validation"]
    info = read_model_info(directory)
    assert info.risk["metrics"]["validation"]["auc_encoded"] == summary["validation"]["auc_encoded"]
    assert info.risk["grids"] == [list(info.latent_shape[1:])]  # the cameras' grids it trained on
    assert WorldModelEngine(directory).risk is not None
    # `sora-ros eval` scores the exported head on held-out bags with odometry, by the same rule.
    from sora_ros.cli import main as sora_ros

    assert sora_ros(["eval", str(bags[1]), "--action-topic", "/cmd_vel", "--model", str(directory), "--horizons", "1",
                     "--out", str(tmp_path / "eval")]) == 0
    risk = json.loads((tmp_path / "eval" / "metrics.json").read_text())["risk"]
    assert risk["horizon_steps"] == HORIZON and risk["auc_encoded"] >= 0.9, risk
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"### Risk head: blocked within the next {HORIZON} steps" in report
    assert f"| {risk['auc_encoded']:.3f} | {risk['auc_predicted']:.3f} |" in report, report
    assert f"| encoded latents | {risk['mean_encoded']:.4f} | {risk['positive_share']:.4f} |" in report, report
    shift = info.risk["calibration"]["log_odds_shift"]
    share = summary["data"]["positive_share"]
    assert shift == pytest.approx(math.log(share / (1 - share)), abs=0.1), "log(positives / negatives) of training"
    assert sora_ros(["eval", *map(str, bags), "--action-topic", "/cmd_vel", "--model", str(directory), "--horizons", "1",
                     "--max-clips", "1", "--out", str(tmp_path / "eval1")]) == 0
    assert json.loads((tmp_path / "eval1" / "metrics.json").read_text())["risk"]["clips"] == 1, "--max-clips holds"
    assert sora_ros(["eval", str(bags[1]), "--model", str(directory), "--horizons", "1", "--max-clips", "1",
                     "--out", str(tmp_path / "eval2")]) == 0  # no --action-topic: no labels
    report = (tmp_path / "eval2" / "report.md").read_text()
    assert "Not scored: its labels need the commands (--action-topic)." in report
    # Resumable: more steps continue from risk.pt; a checkpoint of another model's latents is refused.
    args.steps, args.resume, args.no_export = 90, True, True
    assert train_risk(args)["steps"] == 90
    # The run keeps its label rule and class balance: a resume under another rule is refused, and one on
    # data with another share blocked (here fewer) re-exports the run's calibration, not theirs.
    args.horizon_steps = HORIZON + 1
    with pytest.raises(ValueError, match="labels of another rule"):
        train_risk(args)
    fewer = tmp_path / "fewer"
    with BagWriter(fewer) as bag:
        x, fewer_steps = 0.0, ([(0.5, 0.5)] * 17 + [(0.5, 0.0)] * 3) * 3
        for k in range(len(fewer_steps) + 1):
            stamp = T0_NS + k * DT_NS
            bag.write("/odom", m.ODOMETRY, stamp, m.odometry(x, 0.0, 0.0, 0.0, 0.0, stamp, "odom", "base_link"))
            bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(np.full((32, 32, 3), 30, np.uint8), stamp, "camera"))
            if k < len(fewer_steps):
                bag.write("/cmd_vel", m.TWIST, stamp, m.twist(fewer_steps[k][0], 0.0))
                x += fewer_steps[k][1] * DT_NS / NS_PER_S
    args.horizon_steps, args.data, args.no_export = HORIZON, [fewer], False
    train_risk(args)
    assert read_model_info(directory).risk["calibration"]["log_odds_shift"] == shift
    args.model = export_tiny(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="latents of another model"):
        train_risk(args)


def test_labels_match_the_simulators_refused_moves_step_by_step(tmp_path: Path) -> None:
    """The simulator refuses a move into something (sora_ros/sim/world.py); its odometry is written
    as the episode recorder writes it. Driving straight at 0.4 m/s with slow turns hits walls and
    objects: every refused step, and no other, must be labelled blocked."""
    from sora_ros.sim.world import SimWorld, WorldConfig

    config = WorldConfig(width=16, height=16, num_balls=0, other_robot=False)
    refused, period = [], config.period_ns
    with SimWorld(config, seed=3) as world, BagWriter(tmp_path / "sim") as bag:
        for k in range(300):
            stamp, pose = world.stamp_ns, world.pose
            bag.write("/odom", m.ODOMETRY, stamp, m.odometry(pose.x, pose.y, pose.yaw, pose.v, pose.w, stamp, "odom",
                                                             "base_link"))
            if k == 299:
                break
            turn = 0.8 * math.sin(k / 15.0)
            bag.write("/cmd_vel", m.TWIST, stamp, m.twist(0.4, turn))
            before = world.collisions
            world.step(0.4, turn)
            refused.append(world.collisions > before)
    log = read_motion(tmp_path / "sim", "/odom", "/cmd_vel")
    labels = blocked_steps(BlockedRule(), period * np.arange(299, dtype=np.int64), period, log)
    assert 5 <= sum(refused) < len(refused), "the drive should run into things, not only (else it proves nothing)"
    np.testing.assert_array_equal(labels == 1, refused)



def test_the_report_shows_calibration_and_says_n_a_where_a_subset_had_no_sample() -> None:
    from sora_ros.evaluation.report import _risk_lines

    risk = {"horizon_steps": 1, "samples": 10, "positive_share": 0.1, "auc_encoded": 0.8, "auc_predicted": float("nan"),
            "auc_forecast": float("nan"), "mean_encoded": 0.12, "brier_encoded": 0.08, "mean_forecast": None,
            "positive_share_predicted": None, "brier_forecast": None}
    lines = _risk_lines(risk)
    assert "| encoded latents | 0.1200 | 0.1000 | 0.0800 |" in lines
    assert "| forecast | n/a | n/a | n/a |" in lines
    assert not any("calibration" in line for line in _risk_lines({**risk, "mean_encoded": None})), "older metrics"
