"""The planner node keeps one clock, its timers' own: under use_sim_time a plan's steps last the
model's dt of simulated time however the wall clock runs (a simulation slower than real time, or
paused). The node runs in this process against a stand-in ~/rollout; its clock is set by hand."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.time import Time  # noqa: E402

from live_helpers import TIMEOUT_S  # noqa: E402
from sora_ros.msg import FutureFrames  # noqa: E402
from sora_ros.srv import Rollout  # noqa: E402

DT_S = 0.1  # the stand-in model's step
PLAN_RATE_HZ = 10.0  # a plan is stale after 4 periods: 0.4 s
START_S = 100.0


def _answer(request: Rollout.Request, response: Rollout.Response) -> Rollout.Response:
    """Every candidate predicted free of risk, DT_S apart (a world model with a risk head)."""
    response.success = True
    response.futures = [FutureFrames(horizon=request.horizon, dt=DT_S, risk=[0.0] * request.horizon)
                        for _ in range(request.candidates)]
    return response


@pytest.fixture
def planner():
    """A PlannerNode on sim time at START_S, with one decision made; cmd_vel goes to `planner.sent`."""
    from sora_ros.nodes.planner import PlannerNode

    rclpy.init(args=["--ros-args", "-p", "use_sim_time:=true", "-p", f"plan_rate:={PLAN_RATE_HZ}"])
    node, server = PlannerNode(), rclpy.create_node("rollout_stand_in")
    server.create_service(Rollout, "rollout", _answer)
    node.get_clock().set_ros_time_override(Time(nanoseconds=int(START_S * 1e9)))
    executor = SingleThreadedExecutor()
    for each in (node, server):
        executor.add_node(each)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not node._client.service_is_ready():
            assert time.monotonic() < deadline, "the stand-in ~/rollout never appeared"
            executor.spin_once(timeout_sec=0.05)
        node._plan_step()  # the clock stands still: no timer asks by itself
        while not node.decisions:
            assert time.monotonic() < deadline, "no decision"
            executor.spin_once(timeout_sec=0.05)
        node.sent = []
        node._cmd_pub = SimpleNamespace(publish=node.sent.append)
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        server.destroy_node()
        rclpy.try_shutdown()


def _command_at(node, sim_s: float) -> tuple[float, float]:
    node.get_clock().set_ros_time_override(Time(nanoseconds=int(sim_s * 1e9)))
    node._publish_command()
    return node.sent[-1].linear.x, node.sent[-1].angular.z


def test_a_plan_step_lasts_the_models_dt_of_the_nodes_clock(planner) -> None:
    plan = planner._plan  # (H, A)
    assert not np.allclose(plan[0], plan[2]), "steps 0 and 2 must differ to tell them apart"
    # 0.25 s of sim time in no wall time (a sim that runs ahead of the wall clock, or a bag at 10x): step 2.
    assert _command_at(planner, START_S + 0.25) == pytest.approx(tuple(plan[2]))
    # The sim paused for longer than a plan stays fresh on the wall clock: the plan is as fresh as it was.
    time.sleep(0.5)
    assert _command_at(planner, START_S + 0.25) == pytest.approx(tuple(plan[2]))
    # Stale after 4 plan periods of sim time: the robot stops.
    assert _command_at(planner, START_S + 0.45) == (0.0, 0.0)
