"""The planner node in this process against a stand-in ~/rollout, its clock set by hand. It keeps
one clock, its timers' own: under use_sim_time a plan's steps last the model's dt of simulated
time however the wall clock runs (a simulation slower than real time, or paused). An answer that
cannot be scored is logged and ignored; odometry counts from when it was measured; settings that
~/rollout would refuse end the node at start."""

from __future__ import annotations

import contextlib
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


def _no_futures(request: Rollout.Request, response: Rollout.Response) -> Rollout.Response:
    """A success that answers nothing (a broken or foreign server)."""
    response.success = True
    return response


@contextlib.contextmanager
def _planner_and(answer, *parameters: str):
    """A PlannerNode on sim time at START_S beside a stand-in ~/rollout that answers with `answer`,
    and the executor spinning them; cmd_vel goes to `node.sent`, warnings to `node.warnings`."""
    from sora_ros.nodes.planner import PlannerNode

    rclpy.init(args=["--ros-args", "-p", "use_sim_time:=true", "-p", f"plan_rate:={PLAN_RATE_HZ}", *parameters])
    node, server = PlannerNode(), rclpy.create_node("rollout_stand_in")
    server.create_service(Rollout, "rollout", answer)
    node.get_clock().set_ros_time_override(Time(nanoseconds=int(START_S * 1e9)))
    executor = SingleThreadedExecutor()
    for each in (node, server):
        executor.add_node(each)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not node._client.service_is_ready():
            assert time.monotonic() < deadline, "the stand-in ~/rollout never appeared"
            executor.spin_once(timeout_sec=0.05)
        node.sent, node.warnings = [], []
        node._cmd_pub = SimpleNamespace(publish=node.sent.append)
        logger = node.get_logger()
        node.get_logger = lambda: SimpleNamespace(info=logger.info, warning=lambda text, **_: node.warnings.append(text))
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        server.destroy_node()
        rclpy.try_shutdown()


def _decide(node, executor) -> None:
    """One decision: a request now (the clock stands still, so no timer asks by itself), spun until
    it is answered."""
    node._plan_step()
    deadline = time.monotonic() + TIMEOUT_S
    while node._pending is not None:
        assert time.monotonic() < deadline, "no answer"
        executor.spin_once(timeout_sec=0.05)


@pytest.fixture
def planner():
    """The planner beside a stand-in that answers every candidate, with one decision made."""
    with _planner_and(_answer) as (node, executor):
        _decide(node, executor)
        assert node.decisions == 1
        yield node


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


def test_an_answer_without_futures_is_ignored_not_a_crash() -> None:
    with _planner_and(_no_futures) as (node, executor):
        _decide(node, executor)
        assert node.decisions == 0 and node._plan is None
        assert any("rollout answered 0 futures for 32 candidates: ignored" in text for text in node.warnings)


def test_odometry_counts_from_when_it_was_measured_unless_its_stamp_cannot_be_true(planner) -> None:
    from std_msgs.msg import Header

    now_ns = int(START_S * 1e9)
    late = Header(stamp=Time(nanoseconds=now_ns - 150_000_000).to_msg())  # measured 150 ms ago
    assert planner._measured_ns(late, now_ns) == now_ns - 150_000_000 and not planner.warnings
    assert planner._measured_ns(Header(), now_ns) == now_ns  # stamp 0: unset
    assert "using arrival times" in planner.warnings[-1]


@pytest.mark.parametrize("settings, problem", [
    (["-p", "samples:=3"], "candidates x samples = 96 exceeds the cap of 64"),
    (["-p", "elites:=40"], "elites must be 1..candidates (32)"),
    (["-p", "base_frame:=''"], "base_frame must name a frame"),
    (["-p", "max_accel:=0.0"], "max_accel"),
])
def test_settings_the_planner_cannot_work_with_end_it_at_start_with_one_line(settings, problem) -> None:
    from live_helpers import start_node

    process = start_node("sora_ros.nodes.planner", *settings, "-r", "__node:=base_planner")
    output, _ = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 1 and problem in output and "Traceback" not in output, output
    assert "[base_planner]" in output, f"logged under the node's own (remapped) name: {output}"


def _odometry(x: float, stamp_s: float, frame: str = "odom"):
    from sora_ros.nodes.messages import odometry

    return odometry(x, 0.0, 0.0, 0.0, 0.0, round(stamp_s * 1e9), frame, "base_link")


def _goal(x: float, frame: str):
    from geometry_msgs.msg import PoseStamped

    message = PoseStamped()
    message.header.frame_id = frame
    message.pose.position.x = x
    return message


def test_a_goal_is_approached_slowly_enough_to_stop_at_it_and_dropped_if_odometry_is_in_another_frame() -> None:
    """A base braking at 0.1 m/s^2 0.35 m from its goal may not drive faster than sqrt(2 x 0.1 x 0.35)
    m/s; a goal in 'map' that came before any odometry is dropped once odometry says 'odom'."""
    with _planner_and(_answer, "-p", "max_accel:=0.1") as (node, executor):
        node._on_odometry(_odometry(0.0, START_S))
        node._on_goal(_goal(0.35, "odom"))
        _decide(node, executor)
        assert node._proposal[:, :, 0].max() <= (2 * 0.1 * 0.35) ** 0.5 + 1e-6 < 0.6
    with _planner_and(_answer) as (node, executor):
        node._on_goal(_goal(2.0, "map"))  # no odometry yet: its frame is not known
        node._on_odometry(_odometry(0.0, START_S))
        _decide(node, executor)
        assert node._pursuit is None and node.decisions == 1, "dropped; exploring as before"
        assert any("ignoring a goal in frame 'map'" in text for text in node.warnings)


def test_a_goal_without_fresh_odometry_stops_the_robot_at_once() -> None:
    """Odometry 1.2 s old: the answer to a request made before is not followed, and the robot stops."""
    with _planner_and(_answer) as (node, executor):
        node._on_odometry(_odometry(0.0, START_S))
        node._on_goal(_goal(2.0, "odom"))
        _decide(node, executor)
        assert node.decisions == 1
        node._plan_step()  # asked while odometry is fresh...
        node.get_clock().set_ros_time_override(Time(nanoseconds=int((START_S + 1.2) * 1e9)))
        deadline = time.monotonic() + TIMEOUT_S
        while node._pending is not None:  # ...answered once it is 1.2 s old
            assert time.monotonic() < deadline, "no answer"
            executor.spin_once(timeout_sec=0.05)
        assert node.decisions == 1, "the answer was not followed"
        assert not node._may_plan_for_goal() and node._plan is None
        assert (node.sent[-1].linear.x, node.sent[-1].angular.z) == (0.0, 0.0)
