"""`sora-ros bench nodes --camera-size / --output-size`: parsed as a camera is named (WIDTHxHEIGHT);
`--param NAME:=VALUE` as `ros2 run -p` takes it."""

import argparse

import pytest

from sora_ros.cli import build_parser
from sora_ros.harness.bench_nodes import CAMERA_SIZE, parse_parameter, parse_size


def test_camera_size_is_width_by_height() -> None:
    assert parse_size("640x480") == (480, 640)
    for bad in ("640", "640x", "x480", "0x480", "640x-1", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


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
