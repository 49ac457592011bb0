"""The `planner` node: an example of the planner side of the product.

Each cycle it asks `rollout` (the world model's ~/rollout) what the camera would
see under a few candidate cmd_vel sequences (straight, left, right), scores the
predicted frames with the image-space cost of sora_ros/core/planner.py (obstacle
pixels just ahead of the robot) and publishes the winner's command on `cmd_vel`
at `command_rate` until the next decision.

    python -m sora_ros.nodes.planner --ros-args -r rollout:=/world_model/rollout -r image:=/camera/image_raw
"""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from sora_ros.core.image import ImageConversionError, image_to_numpy, image_to_rgb
from sora_ros.core import planner as scoring
from sora_ros.core.requests import MAX_HORIZON, MAX_SAMPLES
from sora_ros.nodes import messages as lm
from sora_ros.nodes import spin
from sora_ros.srv import Rollout

LOG_THROTTLE_S = 5.0
# A decision older than this many plan periods is stale: the robot stops rather than keep
# driving on it (the world model stopped answering).
STALE_PLAN_PERIODS = 4


class PlannerNode(Node):
    """Asks ~/rollout about candidate commands and drives with the best one."""

    def __init__(self) -> None:
        super().__init__("planner")
        p = self.declare_parameter
        plan_rate = p("plan_rate", 2.0, lm.float_descriptor("decisions per second", 0.1, 30.0, True)).value
        command_rate = p("command_rate", 10.0, lm.float_descriptor("cmd_vel messages per second", 1.0, 100.0, True)).value
        speed = p("speed", 0.3, lm.float_descriptor("forward speed of every candidate, m/s", 0.0, 5.0, True)).value
        turn = p("turn_rate", 0.8, lm.float_descriptor("turn rate of the left/right candidates, rad/s", 0.0, 5.0, True)).value
        horizon = p("horizon", 8, lm.int_descriptor("steps each candidate looks ahead", 1, MAX_HORIZON, True)).value
        self._samples = p("samples", 1, lm.int_descriptor("samples per candidate", 1, MAX_SAMPLES, True)).value
        self._stale_s = STALE_PLAN_PERIODS / plan_rate
        self._candidates = scoring.turn_candidates(speed, turn, horizon)
        self._floor: np.ndarray | None = None
        self._command: Twist | None = None
        self._pending = None
        self._pending_since = 0.0  # time.monotonic() of the request in flight
        self._decided_at = 0.0  # time.monotonic() of the command in force
        self._seed = 0
        self.decisions = 0
        self._client = self.create_client(Rollout, "rollout")
        self._cmd_pub = self.create_publisher(Twist, "cmd_vel", 10)
        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_timer(1.0 / plan_rate, self._plan)
        self.create_timer(1.0 / command_rate, self._publish_command)
        self.get_logger().info(f"planner: candidates {list(self._candidates.names)}, {horizon} steps, "
                               f"{speed:g} m/s, turns {turn:g} rad/s")

    def _on_image(self, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg)
        except ImageConversionError as error:
            self.get_logger().warning(f"ignoring camera frame: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._floor = scoring.update_floor(self._floor, frame)

    def _plan(self) -> None:
        if self._pending is not None and time.monotonic() - self._pending_since > self._stale_s:
            # The server died or hung mid-call: give up on this request and ask again.
            self._client.remove_pending_request(self._pending)
            self._pending = None
            self.get_logger().warning("rollout request timed out", throttle_duration_sec=LOG_THROTTLE_S)
        if self._pending is not None or self._floor is None or not self._client.service_is_ready():
            return
        actions = self._candidates.actions  # (N, H, A)
        self._seed += 1
        request = Rollout.Request(actions=actions.reshape(-1).tolist(), candidates=actions.shape[0],
                                  horizon=actions.shape[1], action_dim=actions.shape[2], samples=self._samples,
                                  return_images=True, seed=self._seed)
        self._pending = self._client.call_async(request)
        self._pending_since = time.monotonic()
        self._pending.add_done_callback(self._on_response)

    def _on_response(self, future) -> None:
        if future is not self._pending:
            return  # a request given up on by _plan
        self._pending = None
        response = future.result()
        if response is None or not response.success:
            why = "no response" if response is None else response.message
            self.get_logger().warning(f"rollout refused: {why}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        frames = np.stack([np.stack([image_to_numpy(image) for image in futures.frames])
                           for futures in response.futures])  # (N, H, Hi, Wi, 3)
        costs = scoring.candidate_costs(frames, self._floor)
        names = self._candidates.names
        best = scoring.choose(names, costs)
        linear_x, angular_z = self._candidates.actions[best, 0]
        self._command = Twist()
        self._command.linear.x, self._command.angular.z = float(linear_x), float(angular_z)
        self._decided_at = time.monotonic()
        self.decisions += 1
        self.get_logger().info(
            f"{names[best]} (costs {', '.join(f'{n} {c:.3f}' for n, c in zip(names, costs))}; "
            f"rollout {response.total_ms:.0f} ms)", throttle_duration_sec=1.0)

    def _publish_command(self) -> None:
        if self._command is None:
            return
        if time.monotonic() - self._decided_at > self._stale_s:
            self._command = Twist()  # stale decision: stop until the world model answers again
            self.get_logger().warning("no fresh decision: stopping", throttle_duration_sec=LOG_THROTTLE_S)
        self._cmd_pub.publish(self._command)


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown."""
    return spin(PlannerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
