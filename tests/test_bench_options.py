"""`sora-ros bench nodes --camera-size / --output-size`: parsed as a camera is named (WIDTHxHEIGHT);
`--param NAME:=VALUE` as `ros2 run -p` takes it."""

import argparse

import numpy as np
import pytest

from sora_ros.cli import build_parser
from sora_ros.harness.bench_nodes import CAMERA_SIZE, mean_age_ms, parse_parameter, parse_size


def test_camera_size_is_width_by_height() -> None:
    assert parse_size("640x480") == (480, 640)
    for bad in ("640", "640x", "x480", "0x480", "640x-1", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)
    assert parse_size("4096x4096") == (4096, 4096)  # the node's default max_image_pixels
    with pytest.raises(argparse.ArgumentTypeError, match="image_too_large"):
        parse_size("20000x20000")  # refused before anything is made or started


def test_bench_nodes_takes_a_camera_size() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "nodes", "--camera-size", "640x480"]).camera_size == (480, 640)
    assert parser.parse_args(["bench", "nodes"]).camera_size is None and CAMERA_SIZE == (128, 128)


def test_bench_nodes_takes_an_output_size() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "nodes", "--output-size", "320x240"]).output_size == (240, 320)
    assert parser.parse_args(["bench", "nodes"]).output_size is None


def test_bench_nodes_takes_node_parameters() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "nodes", "--param", "sampler_steps:=2", "--param", "output_size:=[240, 320]"])
    assert args.param == ["sampler_steps:=2", "output_size:=[240, 320]"]
    assert parser.parse_args(["bench", "nodes"]).param is None
    for bad in ("sampler_steps", "sampler_steps=2", "sampler_steps:=", ":=2", "2x:=1", "a b:=1", "-p:=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_parameter(bad)


def _bench_options() -> dict[str, argparse.Action]:
    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    return {action.dest: action for action in bench._actions if action.option_strings and action.dest != "help"}


def test_every_bench_option_names_the_targets_that_read_it_and_defaults_to_none() -> None:
    from sora_ros.cli.bench import BENCHMARKS, READ_BY

    options = _bench_options()
    assert set(options) == set(READ_BY)
    assert all(set(targets) <= set(BENCHMARKS) for targets in READ_BY.values())
    assert all(action.default is None for action in options.values()), "a default hides whether it was given"


UNREAD = {
    "--episodes for model": (["model", "--episodes", "3"], "--episodes is read by bench closed-loop, not by bench model"),
    "--episodes at its default": (["model", "--episodes", "20"], "--episodes is read by bench closed-loop, not by bench model"),
    "--repeats for nodes": (["nodes", "--repeats", "5"], "--repeats is read by bench image and model, not by bench nodes"),
    "--model for image": (["image", "--model", "m"], "--model is read by bench closed-loop, fine-tune, model and nodes, "
                                                     "not by bench image"),
    "--dynamics-precision at its default": (["nodes", "--dynamics-precision", "float32"],
                                            "--dynamics-precision is read by bench closed-loop, not by bench nodes"),
    "--out for model": (["model", "--out", "somewhere"], "--out is read by bench closed-loop and fine-tune, not by bench model"),
    "--force for fine-tune": (["fine-tune", "--force"], "--force is read by bench closed-loop, not by bench fine-tune"),
    "--checkpoint without --model": (["model", "--checkpoint", "c.pt"],
                                     "--checkpoint is read with --model, the directory exported from it"),
    "--preset with --model": (["model", "--model", "m", "--preset", "tiny"],
                              "--preset times random weights of its own, not --model's"),
}


@pytest.mark.parametrize("words, message", UNREAD.values(), ids=UNREAD.keys())
def test_an_option_the_target_does_not_read_is_refused_naming_who_reads_it(words, message, capsys) -> None:
    from sora_ros.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", *words])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"sora-ros bench: error: {message}; leave it out" in err and "Traceback" not in err


@pytest.mark.parametrize("repeats", ["0", "-2", "x"])
def test_repeats_must_be_at_least_one(repeats, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["bench", "image", "--repeats", repeats])
    assert stop.value.code == 2 and "argument --repeats: must be" in capsys.readouterr().err


def test_options_not_given_get_their_defaults_per_target() -> None:
    from sora_ros.cli.bench import DEFAULT_REPEATS, apply_defaults

    args = apply_defaults(build_parser().parse_args(["bench", "image"]))
    assert args.repeats == DEFAULT_REPEATS["image"] and args.out is None and args.duration == 60.0
    args = apply_defaults(build_parser().parse_args(["bench", "image", "--repeats", "3"]))
    assert args.repeats == 3


def test_mean_age_of_the_newest_futures_counts_latency_and_gaps() -> None:
    ms = 1_000_000
    # Futures 100 ms after their frame, every 100 ms: the age runs from 100 to 200 ms, 150 on average.
    received = np.arange(5) * 100 * ms + 100 * ms
    assert mean_age_ms(received, received - 100 * ms) == pytest.approx(150.0)
    # The same latency, a future every 200 ms: older on average.
    assert mean_age_ms(received[::2], received[::2] - 100 * ms) == pytest.approx(200.0)
    # Uneven gaps weigh by their length: 0 -> 100 ms (age 50 -> 150) then 100 -> 400 ms (age 50 -> 350).
    assert mean_age_ms(np.array([50, 150, 450]) * ms, np.array([0, 100, 400]) * ms) == pytest.approx(
        (100 * 100 + 300 * 200) / 400)
    assert np.isnan(mean_age_ms(received[:1], received[:1]))


def test_closed_loop_refuses_an_out_that_holds_files_before_any_episode(tmp_path, capsys) -> None:
    """As eval and export: another run's (or anyone's) files are not overwritten without --force."""
    from sora_ros.cli import main

    (tmp_path / "metrics.json").write_text("an earlier run's")
    assert main(["bench", "closed-loop", "--out", str(tmp_path), "--model", str(tmp_path / "no_model")]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"sora-ros bench closed-loop: --out {tmp_path} is not empty (metrics.json); add --force to "
                            "replace the files of the same names there, or choose another --out\n")
    assert captured.out == "" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    # With --force the run goes on, to the model it cannot load (exit 2 as well, naming it).
    assert main(["bench", "closed-loop", "--out", str(tmp_path), "--model", str(tmp_path / "no_model"), "--force"]) == 2
    assert "no_model" in capsys.readouterr().err
    assert (tmp_path / "metrics.json").read_text() == "an earlier run's"
