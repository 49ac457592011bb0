"""A node started with a parameter of the wrong type or out of its range exits 1 with one error line
naming the parameter, not a traceback (sora_ros.nodes.spin / spin_lifecycle)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, parameter, says", [
    ("sora_ros.nodes.world_model", "sampler_steps:=99", "sampler_steps out of range"),
    ("sora_ros.nodes.world_model", "horizon:=many", "'horizon' to 'many' of type 'STRING', expecting type 'INTEGER'"),
    ("sora_ros.nodes.planner", "plan_rate:=fast", "'plan_rate' to 'fast' of type 'STRING', expecting type 'DOUBLE'"),
])
def test_a_bad_parameter_ends_the_node_with_one_error_line(module: str, parameter: str, says: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--ros-args", "-p", parameter],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert says in output and "Nodes and the demo" in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("parameter, says", [
    ("rollout_trigger:=Arrival", "rollout_trigger must be one of newest, arrival, got 'Arrival'"),
    ("image_reliability:=bogus", "image_reliability must be one of best_effort, reliable, got 'bogus'"),
    ("x:=[1,", "cannot start: failed to initialize rcl: Couldn't parse parameter override rule"),
])
def test_a_value_outside_its_choices_or_not_yaml_ends_the_world_model_with_one_error_line(parameter: str,
                                                                                         says: str) -> None:
    result = subprocess.run([sys.executable, "-m", "sora_ros.nodes.world_model", "--ros-args", "-p", parameter],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert says in output, output
    assert "Traceback" not in output, output
