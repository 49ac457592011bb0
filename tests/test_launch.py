"""The YAML launch runner: parsing, a real two-node graph over DDS, clean stop, and a dying node."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sora_ros.harness.launch_file import LaunchFileError, parse_launch_arguments, read_launch_file

HELPERS = Path(__file__).parent / "helpers"
SORA_ROS = [sys.executable, "-m", "sora_ros.cli"]


@pytest.fixture
def ament_prefix(tmp_path, monkeypatch):
    """An ament prefix holding package `demo` with executables talker, listener and crasher."""
    prefix = tmp_path / "prefix"
    (prefix / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (prefix / "share/ament_index/resource_index/packages/demo").touch()
    bin_dir = prefix / "lib/demo"
    bin_dir.mkdir(parents=True)
    scripts = {
        "talker": f'exec "{sys.executable}" "{HELPERS / "launch_nodes.py"}" talker "$@"',
        "listener": f'exec "{sys.executable}" "{HELPERS / "launch_nodes.py"}" listener "$@"',
        "crasher": "sleep 1; echo 'crasher: giving up' >&2; exit 3",
    }
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{prefix}{os.pathsep}{os.environ.get('AMENT_PREFIX_PATH', '')}")
    return prefix


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GRAPH = """
launch:
- arg: {name: text, default: hi}
- arg: {name: out}
- let: {name: topic, value: /shared/topic}
- group:
  - push_ros_namespace: {namespace: robot}
  - node:
      pkg: demo
      exec: talker
      name: speaker
      param: [{name: text, value: $(var text)}]
      remap: [{from: chatter, to: $(var topic)}]
- node:
    pkg: demo
    exec: listener
    param: [{name: out, value: $(var out)}]
    remap: [{from: heard, to: $(var topic)}]
"""


def test_parse_applies_args_namespaces_params_and_remaps(ament_prefix, tmp_path):
    specs = read_launch_file(write(tmp_path / "g.launch.yaml", GRAPH), {"out": "/tmp/x", "text": "yo"})
    assert [s.name for s in specs] == ["/robot/speaker", "/listener"]
    talker = specs[0].cmd
    assert talker[0] == str(ament_prefix / "lib/demo/talker")
    assert talker[talker.index("--ros-args") :] == [
        "--ros-args", "-r", "__node:=speaker", "-r", "__ns:=/robot",
        "-p", "text:=yo", "-r", "chatter:=/shared/topic",
    ]  # fmt: skip
    assert "out:=/tmp/x" in specs[1].cmd and "__ns:=/" not in " ".join(specs[1].cmd)


def test_parse_errors_name_the_problem(ament_prefix, tmp_path):
    with pytest.raises(LaunchFileError, match="arg 'out' is required: pass out:=VALUE"):
        read_launch_file(write(tmp_path / "a.launch.yaml", GRAPH), {})
    with pytest.raises(LaunchFileError, match="launch argument\\(s\\) typo not declared; this file and its includes take: out, text"):
        read_launch_file(write(tmp_path / "b.launch.yaml", GRAPH), {"out": "x", "typo": "1"})
    missing = "launch:\n- node: {pkg: demo, exec: nope}\n"
    with pytest.raises(LaunchFileError, match="executable 'nope' of package 'demo' not found"):
        read_launch_file(write(tmp_path / "c.launch.yaml", missing), {})
    with pytest.raises(LaunchFileError, match="entity 'timer' is not supported"):
        read_launch_file(write(tmp_path / "d.launch.yaml", "launch:\n- timer: {period: 1}\n"), {})
    with pytest.raises(LaunchFileError, match=r"\$\(var nothing\): no arg or let"):
        read_launch_file(write(tmp_path / "e.launch.yaml", "launch:\n- let: {name: a, value: $(var nothing)}\n"), {})
    with pytest.raises(LaunchFileError, match="not a ROS 2 YAML launch file"):
        read_launch_file(write(tmp_path / "f.launch.yaml", "nodes: []\n"), {})
    with pytest.raises(LaunchFileError, match="not of the form name:=value"):
        parse_launch_arguments(["image=/cam"])
    with pytest.raises(LaunchFileError, match="has no value"):
        parse_launch_arguments(["image:="])


@pytest.mark.parametrize("entity, message", [
    ("node: {pkg: demo, exec: talker, respawn: 'true'}", "node: unknown attribute\\(s\\) 'respawn'"),
    ("node: {pkg: demo, exec: talker, remap: [{from: a}]}", "each remap entry must be \\{from, to\\}"),
    ("node: {pkg: demo, exec: talker, if: true}", 'if: True must be a string.*if: "true"'),
    ("arg: {name: rate, default: 15.0}", "arg: default: 15.0 must be a string"),
    ("node: {pkg: demo, exec: talker, if: 'true', unless: 'false'}", "'if' and 'unless' together"),
])  # fmt: skip
def test_what_ros2_launch_refuses_is_refused(ament_prefix, tmp_path, entity, message):
    with pytest.raises(LaunchFileError, match=message):
        read_launch_file(write(tmp_path / "bad.launch.yaml", f"launch:\n- {entity}\n"), {})


def test_command_line_args_reach_included_files_and_empty_strings_stay_strings(ament_prefix, tmp_path):
    inner = "launch:\n- arg: {name: who, default: nobody}\n- arg: {name: text, default: ''}\n" \
            "- node: {pkg: demo, exec: talker, name: $(var who), param: [{name: text, value: $(var text)}]}\n"
    write(tmp_path / "inner.launch.yaml", inner)
    outer = write(tmp_path / "outer.launch.yaml", "launch:\n- include: {file: $(dirname)/inner.launch.yaml}\n")
    (spec,) = read_launch_file(outer, {"who": "cli_talker"})
    assert spec.name == "/cli_talker"
    assert "text:=''" in spec.cmd  # rcl refuses a bare `text:=`
    given = write(tmp_path / "given.launch.yaml",
                  "launch:\n- include: {file: $(dirname)/inner.launch.yaml, arg: [{name: who, value: given}]}\n")
    assert [s.name for s in read_launch_file(given, {"who": "cli_talker"})] == ["/given"]  # the include's arg wins


def test_an_include_refuses_an_arg_that_only_its_parent_declares(ament_prefix, tmp_path):
    """An include's `arg` must be one the included file declares (the module's rule: a likely typo
    otherwise). That the including file declares the same name does not make it the included
    file's: the check is per file for includes, across all files only for the command line."""
    write(tmp_path / "inner.launch.yaml", "launch:\n- arg: {name: who, default: nobody}\n"
                                          "- node: {pkg: demo, exec: talker, name: $(var who)}\n")
    outer = write(tmp_path / "outer.launch.yaml", """
launch:
- arg: {name: rate, default: '5'}
- include:
    file: $(dirname)/inner.launch.yaml
    arg: [{name: who, value: inner_talker}, {name: rate, value: $(var rate)}]
""")
    with pytest.raises(LaunchFileError, match=r"inner\.launch\.yaml: launch argument\(s\) rate not declared; "
                                              r"this file takes: who$"):
        read_launch_file(outer, {})
    # The same name on the command line is fine: the parent declares it, and it reaches every file.
    fixed = write(tmp_path / "fixed.launch.yaml", outer.read_text().replace(", {name: rate, value: $(var rate)}", ""))
    assert [s.name for s in read_launch_file(fixed, {"rate": "7"})] == ["/inner_talker"]


def test_include_conditions_and_nested_substitutions(ament_prefix, tmp_path):
    write(tmp_path / "inner.launch.yaml", "launch:\n- arg: {name: who}\n- node: {pkg: demo, exec: talker, name: $(var who)}\n")
    outer = """
launch:
- arg: {name: use_inner, default: 'true'}
- let: {name: file, value: inner.launch.yaml}
- include:
    file: $(dirname)/$(var file)
    if: $(var use_inner)
    arg: [{name: who, value: inner_talker}]
- node: {pkg: demo, exec: listener, unless: $(var use_inner)}
"""
    path = write(tmp_path / "outer.launch.yaml", outer)
    assert [s.name for s in read_launch_file(path, {})] == ["/inner_talker"]
    assert [s.name for s in read_launch_file(path, {"use_inner": "false"})] == ["/listener"]


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.1)


def text_of(path: Path) -> str:
    """The file's text; "" while it does not exist yet."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_runner_starts_graph_and_stops_cleanly_on_ctrl_c(ament_prefix, tmp_path):
    heard = tmp_path / "heard.txt"
    launch = write(tmp_path / "graph.launch.yaml", GRAPH)
    runner = subprocess.Popen([*SORA_ROS, "launch", str(launch), f"out:={heard}", "text:=remapped"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        # Wait for the text, not the file: the listener truncates it, then writes, on every message.
        wait_for(lambda: text_of(heard) == "remapped from /robot/speaker", 30,
                 "the listener to hear the talker through the remapped topic")
        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=30)
    finally:
        runner.kill()
    assert runner.returncode == 0, output
    assert "[launch] stopped: SIGINT received" in output
    assert "started /robot/speaker" in output and "started /listener" in output


def test_runner_exits_nonzero_and_names_the_node_that_died(ament_prefix, tmp_path):
    launch = write(tmp_path / "dies.launch.yaml", """
launch:
- node: {pkg: demo, exec: talker}
- node: {pkg: demo, exec: crasher, name: fragile}
""")
    result = subprocess.run([*SORA_ROS, "launch", str(launch)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "[launch] failed: /fragile exited with code 3" in result.stderr
    assert "[/fragile] crasher: giving up" in result.stdout


def test_runner_duration_stops_everything(ament_prefix, tmp_path):
    launch = write(tmp_path / "short.launch.yaml", "launch:\n- node: {pkg: demo, exec: talker}\n")
    result = subprocess.run([*SORA_ROS, "launch", str(launch), "--duration", "2"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "[launch] stopped: duration of 2 s reached" in result.stdout
