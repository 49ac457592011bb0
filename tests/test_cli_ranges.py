"""Every numeric option of the command line (and of scripts/*.py) refuses a value outside its range at parsing: one
usage error naming the option, the value and the range (exit 2), before any work, never a
traceback or a run with NaN, a negative count or a zero interval. The other numeric options are
covered beside their commands (eval: tests/test_eval_command.py, bag from-video:
tests/test_bag_video.py, bag record: tests/test_bag_record.py, bench --repeats:
tests/test_bench_options.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from sora_ros.cli import build_parser, main
from sora_ros.cli.arguments import float_between, int_between, random_seed

TRAIN = ["train", "--data", "runs/", "--out", "out/t"]
ANCHOR = ["train-anchor", "--data", "runs/", "--out", "out/a"]
RISK = ["train-risk", "--data", "runs/", "--out", "out/r"]
RECORD = ["sim", "record", "--episodes", "1", "--seconds", "1", "--out", "out/s"]

# words -> what the error says after "argument OPTION: "
REFUSED = {
    # sora-ros bench
    "bench nodes --duration NaN": (["bench", "nodes", "--duration", "nan"], "must be a finite number above 0, got 'nan'"),
    "bench nodes --duration inf": (["bench", "nodes", "--duration", "inf"], "must be a finite number above 0, got 'inf'"),
    "bench nodes --duration 0": (["bench", "nodes", "--duration", "0"], "must be above 0, got 0"),
    "bench nodes --duration -5": (["bench", "nodes", "--duration", "-5"], "must be above 0, got -5"),
    "bench nodes --camera-rate NaN": (["bench", "nodes", "--camera-rate", "nan"],
                                      "must be a finite number from 0.001 to 1000, got 'nan'"),
    "bench nodes --camera-rate 0": (["bench", "nodes", "--camera-rate", "0"], "must be from 0.001 to 1000, got 0"),
    "bench nodes --camera-rate -15": (["bench", "nodes", "--camera-rate", "-15"], "must be from 0.001 to 1000, got -15"),
    "bench closed-loop --seconds NaN": (["bench", "closed-loop", "--seconds", "nan"], "must be a finite number above 0"),
    "bench closed-loop --seconds 0": (["bench", "closed-loop", "--seconds", "0"],
                                     "must be above 0 and 86400 or less, got 0"),
    "bench closed-loop --seconds -inf": (["bench", "closed-loop", "--seconds=-inf"], "must be a finite number above 0"),
    "bench closed-loop --first-seed -1": (["bench", "closed-loop", "--first-seed", "-1"], "must be 0 or more, got -1"),
    "bench closed-loop --seconds 1e308": (["bench", "closed-loop", "--seconds", "1e308"],
                                          "must be above 0 and 86400 or less, got 1e+308"),
    "bench closed-loop --candidates 1": (["bench", "closed-loop", "--candidates", "1"], "must be from 2 to 64, got 1"),
    "bench closed-loop --candidates 65": (["bench", "closed-loop", "--candidates", "65"],
                                          "must be from 2 to 64, got 65"),
    "bench closed-loop --horizon 0": (["bench", "closed-loop", "--horizon", "0"], "must be from 1 to 32, got 0"),
    "bench closed-loop --horizon 33": (["bench", "closed-loop", "--horizon", "33"], "must be from 1 to 32, got 33"),
    "bench fine-tune --minutes NaN": (["bench", "fine-tune", "--minutes", "2", "nan"], "must be a finite number above 0"),
    "bench fine-tune --minutes 0": (["bench", "fine-tune", "--minutes", "0"], "must be above 0, got 0"),
    "bench fine-tune --minutes -2": (["bench", "fine-tune", "--minutes", "-2"], "must be above 0, got -2"),
    # sora-ros bag play
    "bag play --rate NaN": (["bag", "play", "b.mcap", "--rate", "nan"], "must be a finite number above 0 and 1000 or less"),
    "bag play --rate 0": (["bag", "play", "b.mcap", "--rate", "0"], "must be above 0 and 1000 or less, got 0"),
    "bag play --rate -1": (["bag", "play", "b.mcap", "--rate", "-1"], "must be above 0 and 1000 or less, got -1"),
    "bag play --rate inf": (["bag", "play", "b.mcap", "--rate", "inf"], "must be a finite number above 0"),
    "bag play --clock NaN": (["bag", "play", "b.mcap", "--clock", "nan"], "must be a finite number above 0"),
    "bag play --clock 0": (["bag", "play", "b.mcap", "--clock", "0"], "must be above 0 and 1000 or less, got 0"),
    "bag play --clock -40": (["bag", "play", "b.mcap", "--clock", "-40"], "must be above 0 and 1000 or less, got -40"),
    "bag play --clock 1e6": (["bag", "play", "b.mcap", "--clock", "1e6"], "must be above 0 and 1000 or less, got 1e+06"),
    # sora-ros train
    "train --seed -1": ([*TRAIN, "--seed", "-1"], "must be 0 or more, got -1"),
    "train --seed 2**40": ([*TRAIN, "--seed", str(2**40)], "must be at most 4294967295 (32 bits)"),
    "train --vae-steps -1": ([*TRAIN, "--vae-steps", "-1"], "must be 0 or more, got -1"),
    "train --dit-steps -5": ([*TRAIN, "--dit-steps", "-5"], "must be 0 or more, got -5"),
    "train --warmup-steps -1": ([*TRAIN, "--warmup-steps", "-1"], "must be 0 or more, got -1"),
    "train --vae-batch 0": ([*TRAIN, "--vae-batch", "0"], "must be at least 1, got 0"),
    "train --dit-batch -32": ([*TRAIN, "--dit-batch", "-32"], "must be at least 1, got -32"),
    "train --dit-targets 0": ([*TRAIN, "--dit-targets", "0"], "must be at least 1, got 0"),
    "train --sequence-frames 0": ([*TRAIN, "--sequence-frames", "0"], "must be at least 1, got 0"),
    "train --vae-lr NaN": ([*TRAIN, "--vae-lr", "nan"], "must be a finite number above 0, got 'nan'"),
    "train --dit-lr 0": ([*TRAIN, "--dit-lr", "0"], "must be above 0, got 0"),
    "train --dit-lr -1e-4": ([*TRAIN, "--dit-lr=-1e-4"], "must be above 0, got -0.0001"),
    "train --val-every 0": ([*TRAIN, "--val-every", "0"], "must be at least 1, got 0"),
    "train --checkpoint-every 0": ([*TRAIN, "--checkpoint-every", "0"], "must be at least 1, got 0"),
    "train --log-every 0": ([*TRAIN, "--log-every", "0"], "must be at least 1, got 0"),
    "train --minutes NaN": ([*TRAIN, "--minutes", "nan"], "must be a finite number above 0"),
    "train --minutes 0": ([*TRAIN, "--minutes", "0"], "must be above 0, got 0"),
    "train --snapshot-minutes -1": ([*TRAIN, "--snapshot-minutes", "1", "-1"], "must be above 0, got -1"),
    "train --action-scale 0": ([*TRAIN, "--action-scale", "0.5", "0"], "must be above 0, got 0"),
    "train --action-offset NaN": ([*TRAIN, "--action-offset", "nan"], "must be a finite number, got 'nan'"),
    # sora-ros train-anchor
    "train-anchor --steps 0": ([*ANCHOR, "--steps", "0"], "must be at least 1, got 0"),
    "train-anchor --batch 0": ([*ANCHOR, "--batch", "0"], "must be at least 1, got 0"),
    "train-anchor --lr inf": ([*ANCHOR, "--lr", "inf"], "must be a finite number above 0, got 'inf'"),
    "train-anchor --teacher-fraction 1.5": ([*ANCHOR, "--teacher-fraction", "1.5"], "must be from 0 to 1, got 1.5"),
    "train-anchor --seed -3": ([*ANCHOR, "--seed", "-3"], "must be 0 or more, got -3"),
    "train-anchor --width 0": ([*ANCHOR, "--width", "0"], "must be at least 1, got 0"),
    "train-anchor --val-every 0": ([*ANCHOR, "--val-every", "0"], "must be at least 1, got 0"),
    "train-anchor --checkpoint-every -1": ([*ANCHOR, "--checkpoint-every", "-1"], "must be at least 1, got -1"),
    # sora-ros train-risk
    "train-risk --horizon-steps 0": ([*RISK, "--horizon-steps", "0"], "must be at least 1, got 0"),
    "train-risk --min-command -0.1": ([*RISK, "--min-command", "-0.1"], "must be 0 or more, got -0.1"),
    "train-risk --progress-fraction 1": ([*RISK, "--progress-fraction", "1"], "must be above 0 and below 1, got 1"),
    "train-risk --progress-fraction 0": ([*RISK, "--progress-fraction", "0"], "must be above 0 and below 1, got 0"),
    "train-risk --command-timeout 0": ([*RISK, "--command-timeout", "0"], "must be above 0, got 0"),
    "train-risk --frames -1": ([*RISK, "--frames", "-1"], "must be 0 or more, got -1"),
    "train-risk --hidden 0": ([*RISK, "--hidden", "0"], "must be at least 1, got 0"),
    "train-risk --steps 0": ([*RISK, "--steps", "0"], "must be at least 1, got 0"),
    "train-risk --lr NaN": ([*RISK, "--lr", "nan"], "must be a finite number above 0, got 'nan'"),
    "train-risk --weight-decay -1": ([*RISK, "--weight-decay", "-1"], "must be 0 or more, got -1"),
    "train-risk --teacher-fraction NaN": ([*RISK, "--teacher-fraction", "nan"], "must be a finite number from 0 to 1"),
    "train-risk --val-every 0": ([*RISK, "--val-every", "0"], "must be at least 1, got 0"),
    # sora-ros sim record
    "sim record --episodes 0": (["sim", "record", "--seconds", "1", "--out", "o", "--episodes", "0"],
                                "must be at least 1, got 0"),
    "sim record --seconds NaN": (["sim", "record", "--episodes", "1", "--out", "o", "--seconds", "nan"],
                                 "must be a finite number above 0 and 86400 or less, got 'nan'"),
    "sim record --seconds 0": (["sim", "record", "--episodes", "1", "--out", "o", "--seconds", "0"],
                               "must be above 0 and 86400 or less, got 0"),
    "sim record --seconds 1e308": (["sim", "record", "--episodes", "1", "--out", "o", "--seconds", "1e308"],
                                   "must be above 0 and 86400 or less, got 1e+308"),
    "sim record --seed -1": ([*RECORD, "--seed", "-1"], "must be from 0 to 2147483647, got -1"),
    "sim record --rate 0": ([*RECORD, "--rate", "0"], "must be from 0.5 to 60, got 0"),
    "sim record --rate NaN": ([*RECORD, "--rate", "nan"], "must be a finite number from 0.5 to 60, got 'nan'"),
    "sim record --width 0": ([*RECORD, "--width", "0"], "must be from 8 to 1024, got 0"),
    "sim record --height 5000": ([*RECORD, "--height", "5000"], "must be from 8 to 1024, got 5000"),
    "sim record --world-size 1": ([*RECORD, "--world-size", "1"], "must be from 3 to 50, got 1"),
    "sim record --objects -1": ([*RECORD, "--objects", "-1"], "must be from 0 to 300, got -1"),
    "sim record --camera-height 0": ([*RECORD, "--camera-height", "0"], "must be above 0, got 0"),
    "sim record --camera-pitch 120": ([*RECORD, "--camera-pitch", "120"], "must be from -90 to 90, got 120"),
    "sim record --fov 180": ([*RECORD, "--fov", "180"], "must be above 0 and below 180, got 180"),
    "sim record --blind-share 2": ([*RECORD, "--blind-share", "2"], "must be from 0 to 1, got 2"),
    "sim record --workers 0": ([*RECORD, "--workers", "0"], "must be at least 1, got 0"),
    # the others
    "demo --duration 0": (["demo", "--duration", "0"], "must be above 0, got 0"),
    "demo --duration NaN": (["demo", "--duration", "nan"], "must be a finite number above 0, got 'nan'"),
    "demo --camera-rate -1": (["demo", "--camera-rate", "-1"], "must be 0 or more, got -1"),
    "demo --camera-rate NaN": (["demo", "--camera-rate", "nan"], "must be a finite number 0 or more, got 'nan'"),
    "demo --seed -1": (["demo", "--seed", "-1"], "must be from 0 to 2147483647, got -1"),
    "launch --duration -1": (["launch", "x.launch.yaml", "--duration", "-1"], "must be above 0, got -1"),
    "launch --duration NaN": (["launch", "x.launch.yaml", "--duration", "nan"], "must be a finite number above 0"),
    "quantize --seed -1": (["quantize", "--seed", "-1"], "must be 0 or more, got -1"),
    "export --seed 2**33": (["export", "--preset", "cpu64", "--out", "m", "--seed", str(2**33)],
                            "must be at most 4294967295 (32 bits)"),
    "export --version ''": (["export", "--preset", "cpu64", "--out", "m", "--version", ""],
                            "must be 1 to 64 letters, digits and . _ + - starting with a letter or digit"),
    "export --version ../../etc": (["export", "--preset", "cpu64", "--out", "m", "--version", "../../etc"],
                                   "must be 1 to 64 letters, digits and . _ + - starting with a letter or digit, "
                                   "e.g. 1.2.0; got '../../etc'"),
    "video-camera --rate -10": (["video-camera", "v.mp4", "--rate", "-10"], "must be from 0 to 240, got -10"),
    "video-camera --rate NaN": (["video-camera", "v.mp4", "--rate", "nan"], "must be a finite number from 0 to 240"),
    "view --port 0": (["view", "--port", "0"], "must be from 1 to 65535, got 0"),
    "view --port 70000": (["view", "--port", "70000"], "must be from 1 to 65535, got 70000"),
}


@pytest.mark.parametrize("words, message", REFUSED.values(), ids=REFUSED.keys())
def test_a_value_outside_its_range_is_a_usage_error_at_parsing(words, message, capsys) -> None:
    option = next(word for word in reversed(words) if word.startswith("--")).split("=")[0]
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(words)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: {message}" in err, err
    assert len(err.strip().splitlines()[-1]) < 200 and "Traceback" not in err


def test_the_values_at_the_edges_of_the_ranges_are_taken() -> None:
    parser = build_parser()
    args = parser.parse_args([*TRAIN, "--vae-steps", "0", "--dit-steps", "0", "--warmup-steps", "0", "--seed",
                              str(2**32 - 1), "--minutes", "0.5", "--action-offset", "-1"])  # fmt: skip
    assert (args.vae_steps, args.dit_steps, args.warmup_steps, args.seed) == (0, 0, 0, 2**32 - 1)
    assert parser.parse_args(["bag", "play", "b.mcap", "--rate", "1000", "--clock"]).clock == 40.0
    assert parser.parse_args(["video-camera", "v.mp4", "--rate", "0"]).rate == 0.0
    args = parser.parse_args([*RECORD, "--blind-share", "1", "--objects", "0", "--camera-pitch", "-90"])
    assert (args.blind_share, args.objects, args.camera_pitch, args.rate, args.width) == (1.0, 0, -90.0, 10.0, 128)


# The last seed of a run, first + episodes - 1, needs both options: checked after parsing, before any work.
SEED_SPANS = {
    "sim record": ([*RECORD[:3], "2", *RECORD[4:], "--seed", "2147483647"],
                   "--seed 2147483647 with --episodes 2 runs seeds up to 2147483648; --seed + --episodes - 1 must be "
                   "at most 2147483647, the largest seed"),
    "bench closed-loop": (["bench", "closed-loop", "--first-seed", str(2**32 - 3), "--episodes", "4"],
                          "--first-seed 4294967293 with --episodes 4 runs seeds up to 4294967296; --first-seed + "
                          "--episodes - 1 must be at most 4294967295, the largest seed"),
    "bench closed-loop, default --episodes": (["bench", "closed-loop", "--first-seed", str(2**32 - 1)],
                                              "--first-seed 4294967295 with --episodes 20 runs seeds up to"),
}


@pytest.mark.parametrize("words, message", SEED_SPANS.values(), ids=SEED_SPANS.keys())
def test_seeds_past_the_largest_are_a_usage_error_naming_both_options(words, message, capsys) -> None:
    args = build_parser().parse_args(words)
    with pytest.raises(SystemExit) as stop:
        args.check_usage(args)  # as sora_ros.cli.main does right after parsing, before the command's work
    assert stop.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("words", [[*RECORD[:3], "2", *RECORD[4:], "--seed", "2147483646"],
                                   ["bench", "closed-loop", "--first-seed", str(2**32 - 4), "--episodes", "4"]])
def test_seeds_up_to_the_largest_are_taken(words) -> None:
    args = build_parser().parse_args(words)
    args.check_usage(args)  # no SystemExit


# demo --camera-rate sets the sim's `rate` (0.5 to 60), or with --video the video camera's (0 to 240,
# 0: the video's own frame times): checked after parsing, when both options are known.
DEMO_CAMERA_RATES = {
    "sim 500": (["demo", "--camera-rate", "500"], "--camera-rate must be from 0.5 to 60 without --video (the "
                "sim's camera), got 500"),
    "sim 0": (["demo", "--camera-rate", "0"], "--camera-rate must be from 0.5 to 60 without --video (the sim's "
              "camera), got 0"),
    "video 500": (["demo", "--video", "v.mp4", "--camera-rate", "500"], "--camera-rate must be from 0 to 240 with "
                  "--video (0: the video's own frame times), got 500"),
}


@pytest.mark.parametrize("words, message", DEMO_CAMERA_RATES.values(), ids=DEMO_CAMERA_RATES.keys())
def test_demo_camera_rate_outside_its_modes_range_is_a_usage_error(words, message, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(words)  # the check runs before any work: no model, video or ROS needed
    assert stop.value.code == 2
    assert f"sora-ros demo: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("words", [["--camera-rate", "0.5"], ["--camera-rate", "60"], ["--video", "v.mp4", "--camera-rate", "0"],
                                   ["--video", "v.mp4", "--camera-rate", "240"]])  # fmt: skip
def test_demo_camera_rate_takes_its_modes_range(words) -> None:
    args = build_parser().parse_args(["demo", *words])
    args.check_usage(args)  # no SystemExit


SCRIPTS = Path(__file__).parents[1] / "scripts"
SWEEP_TRAIN = [str(SCRIPTS / "vae_sweep.py"), "train", "frames.npz", "--name", "n"]
# scripts/*.py take the same converters: refused at parsing, before torch or any data is loaded.
SCRIPT_REFUSED = {
    "vae_sweep dump --train-every 0": ([str(SCRIPTS / "vae_sweep.py"), "dump", "bags/", "--val", "v", "--test", "t",
                                        "--out", "f.npz", "--train-every", "0"], "must be at least 1, got 0"),
    "vae_sweep train --steps 0": ([*SWEEP_TRAIN, "--steps", "0"], "must be at least 1, got 0"),
    "vae_sweep train --batch -1": ([*SWEEP_TRAIN, "--batch", "-1"], "must be at least 1, got -1"),
    "vae_sweep train --lr NaN": ([*SWEEP_TRAIN, "--lr", "nan"], "must be a finite number above 0, got 'nan'"),
    "vae_sweep train --eval-every 0": ([*SWEEP_TRAIN, "--eval-every", "0"], "must be at least 1, got 0"),
    "vae_sweep train --max-seconds 0": ([*SWEEP_TRAIN, "--max-seconds", "0"], "must be above 0, got 0"),
    "vae_sweep train --seed -1": ([*SWEEP_TRAIN, "--seed", "-1"], "must be 0 or more, got -1"),
    "vae_sweep train --set bad JSON": ([*SWEEP_TRAIN, "--set", "latent_channels=3x2"],
                                       "latent_channels's value '3x2' is not JSON"),
    "vae_sweep train --set unknown field": ([*SWEEP_TRAIN, "--set", "latent=32"], "must be FIELD=JSON with FIELD one of"),
}


@pytest.mark.parametrize("words, message", SCRIPT_REFUSED.values(), ids=SCRIPT_REFUSED.keys())
def test_a_scripts_value_outside_its_range_is_a_usage_error_at_parsing(words, message) -> None:
    option = next(word for word in reversed(words) if word.startswith("--"))
    result = subprocess.run([sys.executable, *words], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"error: argument {option}: {message}" in result.stderr, result.stderr


def test_the_converters_name_the_range_in_words() -> None:
    cases = {float_between(0.0, 1.0): ("2", "must be from 0 to 1, got 2"),
             float_between(0.0, above=True): ("0", "must be above 0, got 0"),
             float_between(high=5.0, below=True): ("5", "must be below 5, got 5"),
             float_between(-1.0, 1.0, above=True): ("nan", "must be a finite number above -1 and 1 or less, got 'nan'"),
             float_between(): ("x", "must be a number, got 'x'"),
             int_between(1, 3): ("4", "must be from 1 to 3, got 4"),
             random_seed: ("1.5", "must be an integer, got '1.5'")}
    for convert, (text, message) in cases.items():
        with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            convert(text)
    assert float_between(0.0, 1.0)("1") == 1.0 and int_between(1, 3)("3") == 3


def test_train_risk_labels_the_next_step_by_default():
    # The planner's MPC sums a one-step head's readings over a candidate's own commands (README, "The planner").
    assert build_parser().parse_args(RISK).horizon_steps == 1
