"""`sora-ros eval` end to end: a recorded sim bag, a tiny exported model, reports, and bad input."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from model_helpers import export_tiny  # noqa: E402

from sora_ros.bag import messages as m  # noqa: E402
from sora_ros.bag.reading import BagReader, find_bags  # noqa: E402
from sora_ros.bag.writing import BagWriter  # noqa: E402
from sora_ros.cli import main as cli  # noqa: E402
from sora_ros.core.units import NS_PER_S  # noqa: E402

import numpy as np  # noqa: E402

HORIZONS = ["1", "2", "4"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def sim_bags(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "runs"
    assert cli(["sim", "record", "--episodes", "2", "--seconds", "2", "--out", str(out),
                "--width", "32", "--height", "32", "--objects", "8", "--quiet"]) == 0  # fmt: skip
    return out


def test_eval_writes_every_horizon_metric_and_baseline(model, sim_bags, tmp_path):
    out = tmp_path / "eval"
    assert cli(["eval", str(sim_bags), "--action-topic", "/cmd_vel", "--model", str(model), "--horizons",
                ",".join(HORIZONS), "--out", str(out), "--write-bag", "--record-in-model", "sim"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"model", "copy-last", "flow", "model (shuffled actions)"}
    for method in metrics["methods"].values():
        assert set(method) == set(HORIZONS)
        # The sim camera is square: its central square is the whole frame, there are no margins.
        assert {"psnr", "ssim", "mse", "moving_psnr", "moving_ssim", "moving_mse", "centre_psnr"} == set(method["1"])
    assert set(metrics["skill"]["model"]) == set(HORIZONS)
    assert set(metrics["action_sensitivity"]["model"]) == set(HORIZONS)
    assert metrics["model_files_sha256"] and len(metrics["bags"]) == 2
    for picture in ("quality_vs_horizon.png", "examples.png", "report.md"):
        assert (out / picture).stat().st_size > 1000, picture
    assert (out / "predictions" / "metadata.yaml").exists()
    assert metrics["vae_reconstruction_psnr"]["n"] == metrics["clips"] * 2  # K = 2 context frames per clip
    recorded = json.loads((model / "model.json").read_text())["evaluation"]["sim"]
    assert recorded["vae_reconstruction_psnr_db"] == metrics["vae_reconstruction_psnr"]["mean"]
    assert recorded["clips"] == metrics["clips"] and set(recorded["psnr_db"]["copy-last"]) == set(HORIZONS)


@pytest.fixture(scope="module")
def wide_bag(tmp_path_factory) -> Path:
    """A 3:2 (48 x 32) sim run: wider than the tiny model's square input."""
    out = tmp_path_factory.mktemp("wide") / "runs"
    assert cli(["sim", "record", "--episodes", "1", "--seconds", "2", "--out", str(out),
                "--width", "48", "--height", "32", "--objects", "8", "--quiet"]) == 0  # fmt: skip
    return out


def test_a_wide_camera_is_scored_on_its_own_grid_centre_and_margins(model, wide_bag, tmp_path):
    """The tiny model gives a 48x32 camera 3x5 tokens (a 40x24 input): the margins are predicted and scored."""
    out = tmp_path / "eval"
    assert cli(["eval", str(wide_bag), "--model", str(model), "--horizons", "1,2", "--out", str(out),
                "--record-in-model", "wide"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frame_shapes"] == [{"camera": [32, 48], "scored": [24, 40]}]
    assert metrics["margins_note"] is None
    for method in metrics["methods"].values():
        assert {"centre_psnr", "margin_psnr"} <= set(method["1"])
    report = (out / "report.md").read_text()
    assert "### PSNR on the camera's central square" in report
    recorded = json.loads((model / "model.json").read_text())["evaluation"]["wide"]
    assert recorded["margin_psnr_db"]["model"]["1"] == metrics["methods"]["model"]["1"]["margin_psnr"]["mean"]


def test_a_square_only_model_crops_a_wide_camera_when_asked_and_says_it_has_no_margins(model, wide_bag, tmp_path,
                                                                                        capsys):
    import shutil

    square = shutil.copytree(model, tmp_path / "square")
    meta = json.loads((square / "model.json").read_text())
    meta["input"]["aspect_range"] = meta["config"]["aspect_range"] = [1.0, 1.0]  # served: square cameras only
    (square / "model.json").write_text(json.dumps(meta))
    out = tmp_path / "eval"
    for realtime in ([], ["--realtime"]):  # --realtime refuses before it starts a node and replays
        assert cli(["eval", str(wide_bag), "--model", str(square), *realtime]) == 1
        refused = capsys.readouterr().err
        assert "aspect ratio 1.5" in refused and "--aspect-policy crop" in refused and str(wide_bag) in refused
    assert cli(["eval", str(wide_bag), "--model", str(square), "--horizons", "1,2", "--out", str(out),
                "--aspect-policy", "crop"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frame_shapes"] == [{"camera": [32, 48], "scored": [32, 32]}]
    assert "central square of the 48x32 camera" in metrics["margins_note"]
    assert any("cropped" in note and "48x32" in note for note in metrics["notes"])
    for method in metrics["methods"].values():
        assert "centre_psnr" in method["1"] and "margin_psnr" not in method["1"]
    # Scored on the crop, the central square is the whole scored frame.
    assert metrics["methods"]["model"]["2"]["centre_psnr"] == metrics["methods"]["model"]["2"]["psnr"]
    assert metrics["margins_note"] in (out / "report.md").read_text()


def test_anchored_model_scores_the_margins_of_a_wide_camera(model, wide_bag, tmp_path):
    """An anchored decoder predicts at the camera's resolution: the margins the crop dropped are scored."""
    import shutil

    from sora_ros.model.anchor import AnchorConfig, AnchorNet
    from sora_ros.model.export import export_anchor
    from sora_ros.runtime.model_dir import read_model_info

    anchored = shutil.copytree(model, tmp_path / "anchored")
    torch.manual_seed(0)
    export_anchor(AnchorNet(AnchorConfig(width=8, horizon=2), read_model_info(anchored).latent_shape[0]).eval(),
                  anchored)  # fmt: skip
    out = tmp_path / "eval"
    assert cli(["eval", str(wide_bag), "--model", str(anchored), "--horizons", "1,2", "--out", str(out),
                "--record-in-model", "wide_anchored"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frame_shapes"] == [{"camera": [32, 48], "scored": [32, 48]}] and metrics["margins_note"] is None
    for name, method in metrics["methods"].items():
        for h in ("1", "2"):
            assert method[h]["margin_psnr"]["n"] == method[h]["centre_psnr"]["n"] == metrics["clips"], (name, h)
    report = (out / "report.md").read_text()
    margins = report.split("### PSNR on the margins")[1].split("###")[0]
    assert "| model |" in margins and "| copy-last |" in margins
    recorded = json.loads((anchored / "model.json").read_text())["evaluation"]["wide_anchored"]
    assert recorded["margin_psnr_db"]["copy-last"]["2"] == metrics["methods"]["copy-last"]["2"]["margin_psnr"]["mean"]
    assert recorded["margins_note"] is None


def write_camera_bag(path: Path, frames: int, rate_hz: float) -> Path:
    import numpy as np

    with BagWriter(path) as bag:
        for k in range(frames):
            stamp = round(k * NS_PER_S / rate_hz)
            bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(np.full((32, 32, 3), 4 * k % 256, np.uint8), stamp, "cam"))
    return path


def test_bag_shorter_than_context_plus_horizon_says_so(model, tmp_path, capsys):
    bag = write_camera_bag(tmp_path / "short", frames=4, rate_hz=10)
    assert cli(["eval", str(bag), "--model", str(model), "--horizons", "1,8"]) == 1
    err = capsys.readouterr().err
    assert "no clip of 2 + 8 frames at dt 0.1 s" in err
    assert "the sources are too short: the longest continuous run is 4 frames (4 frames read)" in err


def test_bag_slower_than_the_model_is_refused_with_the_reason(model, tmp_path, capsys):
    bag = write_camera_bag(tmp_path / "slow", frames=40, rate_hz=4)  # the model steps at 10 Hz
    assert cli(["eval", str(bag), "--model", str(model), "--horizons", "1"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "x no frame within dt/2 of the next step (gap: frame rate below 1/dt" in last and "of 40 frames read" in last


def test_a_video_too_small_for_the_model_is_refused_naming_the_file_size_and_minimum(tmp_path, capsys):
    import cv2

    from sora_ros.core.paths import default_model_dir
    from sora_ros.runtime.model_dir import read_model_info

    video = tmp_path / "tiny.avi"  # 8x8: OpenCV writes no smaller video; the shipped model takes 64x64
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (8, 8))
    for k in range(30):
        writer.write(np.full((8, 8, 3), 8 * k, np.uint8))
    writer.release()
    assert cli(["eval", str(video), "--horizons", "1"]) == 1
    err = capsys.readouterr().err
    height, width = read_model_info(default_model_dir()).input_size((8, 8))
    assert err == (f"sora-ros eval: {video}: 8x8 image, too small for the model: it takes {width}x{height} for it and "
                   f"upscales at most 4x, so it needs at least {-(-width // 4)}x{-(-height // 4)}; use footage (camera, "
                   "video) of that size or larger\n")


def test_faster_bag_is_resampled_to_the_model_dt(model, tmp_path):
    bag = write_camera_bag(tmp_path / "fast", frames=60, rate_hz=30)
    out = tmp_path / "eval"
    assert cli(["eval", str(bag), "--model", str(model), "--horizons", "1", "--out", str(out)]) == 0
    # 60 frames at 30 Hz -> 20 at 10 Hz -> clips of 3 every 4 frames.
    assert json.loads((out / "metrics.json").read_text())["clips"] == 5


def test_failed_eval_names_the_dominant_cause_and_leaves_no_bag(model, tmp_path, capsys):
    """Every image undecodable: the last line says so with the count (not "too short"); no
    OUT/predictions bag is left behind."""
    with BagWriter(tmp_path / "bad") as bag:
        for k in range(30):
            stamp = k * NS_PER_S // 10
            image = m.image(np.zeros((32, 32, 3), np.uint8), stamp, "cam")
            image.encoding = "no_such_encoding"
            bag.write("/camera/image_raw", m.IMAGE, stamp, image)
    out = tmp_path / "eval"
    assert cli(["eval", str(tmp_path / "bad"), "--model", str(model), "--horizons", "1", "--out", str(out),
                "--write-bag"]) == 1  # fmt: skip
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("sora-ros eval: no clip of 2 + 1 frames at dt 0.1 s in ")
    assert "30 x image not decodable (first: " in last and "no_such_encoding" in last and "of 30 frames read" in last
    assert not (out / "predictions").exists()


def test_eval_failing_midway_removes_its_half_written_bag(model, sim_bags, tmp_path, monkeypatch, capsys):
    from sora_ros.evaluation import predictors

    calls = []

    def failing(lookahead):
        def predictor(context, actions):
            calls.append(1)
            if len(calls) > 2:
                raise ValueError("predictor broke on clip 3")
            return np.repeat(context[-1:], lookahead, axis=0)
        return {"copy-last": predictor}

    monkeypatch.setattr(predictors, "baseline_predictors", failing)
    out = tmp_path / "eval"
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(out), "--write-bag"]) == 1
    assert "predictor broke on clip 3" in capsys.readouterr().err
    assert not (out / "predictions").exists()


def test_progress_bar_stays_quiet_off_a_terminal(model, sim_bags, capsys):
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1"]) == 0
    assert "evaluating" not in capsys.readouterr().err  # pytest's capture is no terminal


def test_unreadable_bag_and_missing_model_are_clear_errors(model, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.mcap").write_bytes(b"not an mcap file at all")
    assert cli(["eval", str(broken), "--model", str(model)]) == 1
    assert "broken" in capsys.readouterr().err
    assert cli(["eval", str(broken), "--model", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_model_predictor_rolls_out_under_the_actions_after_the_last_context_frame(model):
    """actions[t] drives frame t -> t + 1: predicting frames K.. uses actions[K - 1 : K - 1 + L]."""
    import numpy as np

    from sora_ros.evaluation.predictors import ModelPredictor
    from sora_ros.runtime.engine import WorldModelEngine
    from sora_ros.runtime.pipeline import WorldModelPipeline

    engine = WorldModelEngine(model)
    k, horizon = engine.info.context_frames, 3
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, (k, *engine.info.image_size, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (k + horizon, 2)).astype(np.float32)
    predicted = ModelPredictor(WorldModelPipeline(engine), horizon)(context, actions)
    latents = engine.encode(context)
    expected = engine.decode(engine.rollout(latents, actions[k - 1 : k - 1 + horizon], samples=1, seed=0).latents[0, 0])
    shifted = engine.decode(engine.rollout(latents, actions[k : k + horizon], samples=1, seed=0).latents[0, 0])
    np.testing.assert_array_equal(predicted, expected)
    assert not np.array_equal(predicted, shifted)


def test_realtime_replays_the_bags_through_the_live_node(model, sim_bags, tmp_path):
    """Through real DDS: every recorded message is published, the node's futures are scored and timed."""
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    out = tmp_path / "realtime"
    result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "eval", str(sim_bags), "--realtime",
                             "--action-topic", "/cmd_vel", "--model", str(model), "--horizons", "1,2",
                             "--out", str(out)], capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    recorded = [BagReader(bag).topics for bag in find_bags([sim_bags])]
    images = sum(topics["/camera/image_raw"].count for topics in recorded)
    assert summary["mode"] == "realtime" and images == 40  # 2 episodes x 2 s at 10 Hz
    assert summary["messages_published"] == images + sum(topics["/cmd_vel"].count for topics in recorded)
    assert images // 2 < summary["camera_frames_received"] <= images  # best-effort camera QoS
    assert summary["futures_received"] > 0 and summary["node_counts"]["published/futures"] > 0
    latency = summary["latency_ms"]["camera_to_futures_dds"]
    assert latency["n"] == summary["futures_received"] and 0 < latency["p50"] < 5000
    assert set(summary["psnr_per_horizon"]) == {"h1", "h2"}
    assert "eval --realtime:" in result.stdout and (out / "latency.png").stat().st_size > 0


def test_realtime_refuses_offline_only_options(model, sim_bags, capsys):
    assert cli(["eval", str(sim_bags), "--realtime", "--model", str(model), "--write-bag"]) == 2
    assert "--write-bag" in capsys.readouterr().err


def test_realtime_bad_input_is_a_clear_error_before_any_node_starts(model, sim_bags, tmp_path, capsys):
    pytest.importorskip("rclpy")
    assert cli(["eval", str(sim_bags), "--realtime", "--model", str(model), "--action-topic", "/nope"]) == 1
    assert "no topic '/nope'" in capsys.readouterr().err
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a bag")
    assert cli(["eval", str(video), "--realtime", "--model", str(model)]) == 1
    assert "no rosbag2 bag" in capsys.readouterr().err


def test_eval_bag_keeps_the_source_stamps_and_frame_id(model, tmp_path):
    """Two bags over the same time range: every image in the prediction bag carries a source
    frame's header stamp and frame_id exactly; only the log times are laid end to end."""
    bags = tmp_path / "bags"
    bags.mkdir()
    sources = [write_camera_bag(bags / name, frames=12, rate_hz=10) for name in ("a", "b")]
    source_stamps = {ros_time(msg.msg.header.stamp) for msg in BagReader(sources[0]).messages(["/camera/image_raw"])}
    out = tmp_path / "eval"
    assert cli(["eval", str(bags), "--model", str(model), "--horizons", "1,2", "--out", str(out), "--write-bag"]) == 0
    reader = BagReader(out / "predictions")
    real = list(reader.messages(["/eval/real"]))
    assert len(real) == 2 * 12  # each bag's frames once (3 clips of 2 + 2 frames)
    assert [ros_time(msg.msg.header.stamp) for msg in real] == 2 * sorted(source_stamps)
    assert {msg.msg.header.frame_id for msg in real} == {"cam"}
    assert {ros_time(msg.msg.header.stamp) for msg in real} <= source_stamps
    logs = [msg.log_time_ns for msg in real]
    assert logs == sorted(logs) and len(set(logs)) == len(logs)  # laid end to end
    predicted = list(reader.messages(["/eval/model/h2"]))
    assert predicted and {msg.msg.header.frame_id for msg in predicted} == {"cam"}
    assert {ros_time(msg.msg.header.stamp) for msg in predicted} <= source_stamps


def ros_time(stamp) -> int:
    return stamp.sec * NS_PER_S + stamp.nanosec


def test_realtime_in_sim_time_replays_with_clock(model, sim_bags, tmp_path):
    """--sim-time: the bags keep their stamps (the sim's start at 0 s), /clock carries the bag's
    time, and the node and the recorder run on it: futures come out, and latency and the node's
    stamp age are sim-time sized (on the wall clock, stamps near 0 s would be ~56 years old)."""
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    out = tmp_path / "realtime_sim"
    result = subprocess.run([sys.executable, "-m", "sora_ros.cli", "eval", str(sim_bags), "--realtime", "--sim-time",
                             "--action-topic", "/cmd_vel", "--model", str(model), "--horizons", "1,2",
                             "--out", str(out)], capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clock"].startswith("sim time")
    assert summary["futures_received"] > 0 and summary["node_counts"]["published/futures"] > 0
    latency = summary["latency_ms"]["camera_to_futures_dds"]
    assert latency["n"] == summary["futures_received"] and 0 <= latency["p50"] < 5000
    assert set(summary["psnr_per_horizon"]) == {"h1", "h2"}
    assert abs(float(summary["node_stamp_age_s_max"])) < 5  # the node is on sim time too


def test_sim_time_needs_realtime(model, sim_bags, capsys):
    assert cli(["eval", str(sim_bags), "--model", str(model), "--sim-time"]) == 2
    assert "--sim-time applies to --realtime only" in capsys.readouterr().err


def test_out_under_a_file_is_refused_before_any_scoring(model, sim_bags, tmp_path, capsys):
    """--out whose parent is a file: one line and exit 2 before the model runs, not a
    NotADirectoryError after all the scoring."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(afile / "sub"),
                "--write-bag"]) == 2  # fmt: skip
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"sora-ros eval: --out {afile / 'sub'}: {afile} is a file, not a directory; "
                                    "choose another output path")
    assert "PSNR" not in captured.out, "no scoring before the refusal"
    assert afile.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_action_topic_that_no_bag_has_is_refused_naming_the_topics(model, sim_bags, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--action-topic", "/typo",
                "--out", str(out)]) == 2  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("sora-ros eval: --action-topic /typo is in none of the bags; they have: ") and "\n" not in err
    assert "/cmd_vel (geometry_msgs/msg/Twist" in err and "/camera/image_raw (sensor_msgs/msg/Image)" in err
    assert "action gap" not in captured.out and not out.exists()
    video = tmp_path / "clip.avi"
    video.write_bytes(b"not read: videos carry no actions")
    assert cli(["eval", str(video), "--model", str(model), "--action-topic", "/cmd_vel"]) == 2
    assert "video files carry no actions" in capsys.readouterr().err


def test_bags_without_the_action_topic_are_left_out_of_the_action_gap(model, sim_bags, tmp_path, capsys):
    """One bag with /cmd_vel, one without: every clip is scored, the gap only on the clips with
    recorded actions, and the output says so."""
    bags = tmp_path / "bags"
    bags.mkdir()
    for bag in find_bags([sim_bags])[:1]:
        (bags / bag.name).symlink_to(bag.resolve(), target_is_directory=bag.is_dir())
    write_camera_bag(bags / "camera_only", frames=30, rate_hz=10)
    out = tmp_path / "eval"
    assert cli(["eval", str(bags), "--model", str(model), "--horizons", "1", "--action-topic", "/cmd_vel",
                "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["action_clips"] < metrics["clips"]
    assert metrics["methods"]["model (shuffled actions)"]["1"]["psnr"]["n"] == metrics["action_clips"]
    assert f"action gap: on the {metrics['action_clips']} of {metrics['clips']} clips with /cmd_vel recorded" in text
    assert "no /cmd_vel: actions unknown" in text


BAD_EVAL_NUMBERS = {
    "max-clips 0": (["--max-clips", "0"], "argument --max-clips: must be at least 1, got 0"),
    "max-clips negative": (["--max-clips", "-3"], "argument --max-clips: must be at least 1, got -3"),
    "stride 0": (["--stride", "0"], "argument --stride: must be at least 1, got 0"),
    "stride negative": (["--stride", "-4"], "argument --stride: must be at least 1, got -4"),
    "stride NaN": (["--stride", "nan"], "argument --stride: must be an integer, got 'nan'"),
    "samples 0": (["--samples", "0"], "argument --samples: invalid choice: 0"),
    "samples above the cap": (["--samples", "99"], "argument --samples: invalid choice: 99"),
    "horizon above the cap": (["--horizons", "1,64"], "horizons must be 1..32 (the rollout cap), got '1,64'"),
    "seed negative": (["--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
}


@pytest.mark.parametrize("words, message", BAD_EVAL_NUMBERS.values(), ids=BAD_EVAL_NUMBERS.keys())
def test_a_count_that_is_not_positive_is_refused_at_parsing(model, sim_bags, tmp_path, capsys, words, message):
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as stop:
        cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(out), *words])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err and not captured.out
    assert not out.exists()


def test_write_bag_without_out_is_refused_at_parsing(model, sim_bags, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["eval", str(sim_bags), "--model", str(model), "--write-bag"])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "sora-ros eval: error: --write-bag writes OUT/predictions: give --out too" in captured.err
    assert not captured.out


@pytest.mark.parametrize("blocker", ["a folder named metrics.json", "an unwritable report.md", "an earlier bag"])
def test_report_files_that_cannot_be_written_are_refused_before_scoring(model, sim_bags, tmp_path, capsys,
                                                                        monkeypatch, blocker):
    import os

    out = tmp_path / "eval"
    out.mkdir()
    if blocker == "a folder named metrics.json":
        (out / "metrics.json").mkdir()
        expected = f"sora-ros eval: {out / 'metrics.json'} is a directory, where the report writes a file"
    elif blocker == "an unwritable report.md":
        (out / "report.md").write_text("an old report")
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != "report.md" and real_access(path, mode))
        expected = f"sora-ros eval: {out / 'report.md'} is not writable"
    else:
        (out / "predictions").mkdir()
        expected = f"sora-ros eval: {out / 'predictions'} exists (an earlier run's bag?)"
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(out),
                "--write-bag", "--force"]) == 2  # fmt: skip
    captured = capsys.readouterr()
    assert captured.err.startswith(expected) and captured.err.count("\n") == 1, captured.err
    assert "PSNR" not in captured.out, "no scoring before the refusal"


def test_an_out_with_a_report_is_refused_without_force(model, sim_bags, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()  # empty: taken
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(out)]) == 0
    (out / "metrics.json").write_text("the earlier report")
    capsys.readouterr()
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"sora-ros eval: --out {out} is not empty (examples.png, metrics.json, quality_vs_horizon.png,"
                            " ...); add --force to write this report there (files of the same names are replaced), or "
                            "choose another --out\n")
    assert "PSNR" not in captured.out and (out / "metrics.json").read_text() == "the earlier report"
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["clips"] > 0


def _break_the_baselines(monkeypatch) -> None:
    from sora_ros.evaluation import predictors

    def failing(lookahead):
        def predictor(context, actions):
            raise ValueError("predictor broke")
        return {"copy-last": predictor}

    monkeypatch.setattr(predictors, "baseline_predictors", failing)


def test_a_failed_run_removes_the_out_it_created_and_keeps_one_that_was_there(model, sim_bags, tmp_path, monkeypatch,
                                                                              capsys):
    _break_the_baselines(monkeypatch)
    new = tmp_path / "new" / "eval"
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(new), "--write-bag"]) == 1
    assert "predictor broke" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "neither OUT nor the parent the run made"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert cli(["eval", str(sim_bags), "--model", str(model), "--horizons", "1", "--out", str(kept), "--write-bag",
                "--force"]) == 1  # fmt: skip
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("key", ["", "a b", "../x", "sim/test", "wide\n"])
def test_a_record_key_that_is_no_name_is_refused_at_parsing(model, sim_bags, capsys, key):
    with pytest.raises(SystemExit) as stop:
        cli(["eval", str(sim_bags), "--model", str(model), "--record-in-model", key])
    assert stop.value.code == 2
    assert "argument --record-in-model: must be a non-empty name of letters, digits" in capsys.readouterr().err


def test_an_existing_record_is_overwritten_only_with_replace_record(model, sim_bags, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(model, tmp_path / "model")
    meta = json.loads((copy / "model.json").read_text())
    meta["evaluation"] = {"sim_test": {"clips": -1}}
    (copy / "model.json").write_text(json.dumps(meta))
    before = (copy / "model.json").read_text()
    words = ["eval", str(sim_bags), "--model", str(copy), "--horizons", "1", "--max-clips", "1",
             "--record-in-model", "sim_test"]  # fmt: skip
    assert cli(words) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"sora-ros eval: --record-in-model sim_test: {copy / 'model.json'} has "
                                    "evaluation.sim_test already; add --replace-record to overwrite it, or choose "
                                    "another KEY (it has: sim_test)")
    assert "PSNR" not in captured.out and (copy / "model.json").read_text() == before
    assert cli([*words, "--replace-record"]) == 0
    assert json.loads((copy / "model.json").read_text())["evaluation"]["sim_test"]["clips"] == 1
    with pytest.raises(SystemExit):
        cli(["eval", str(sim_bags), "--model", str(copy), "--replace-record"])  # nothing to replace


def test_model_json_is_rewritten_atomically(model, sim_bags, tmp_path, monkeypatch, capsys):
    """A failure while recording (here: the rename) leaves model.json as it was, whole, and no temporary file."""
    import os
    import shutil

    copy = shutil.copytree(model, tmp_path / "model")
    before = (copy / "model.json").read_text()

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert cli(["eval", str(sim_bags), "--model", str(copy), "--horizons", "1", "--max-clips", "1",
                "--record-in-model", "atomic_check"]) == 1  # fmt: skip
    assert f"sora-ros eval: cannot record in {copy / 'model.json'}: [Errno 28] No space left" in capsys.readouterr().err
    assert (copy / "model.json").read_text() == before
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in model.iterdir())
