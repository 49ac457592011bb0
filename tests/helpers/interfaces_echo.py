"""A second process for the DDS round-trip test: echoes what it receives.

Subscribes `in/latents` and `in/futures` and republishes each message unchanged
on `out/latents` and `out/futures`; serves `rollout`, answering with the
request's actions in one FutureFrames per candidate so the caller can check
that every request field arrived.
"""

from rclpy.node import Node
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.nodes import spin
from sora_ros.srv import Rollout


class InterfacesEcho(Node):
    def __init__(self) -> None:
        super().__init__("interfaces_echo")
        for kind, msg_type in (("latents", PatchLatents), ("futures", FutureFrames)):
            publisher = self.create_publisher(msg_type, f"out/{kind}", 10)
            self.create_subscription(msg_type, f"in/{kind}", publisher.publish, 10)
        self.create_service(Rollout, "rollout", self.on_rollout)

    def on_rollout(self, request: Rollout.Request, response: Rollout.Response) -> Rollout.Response:
        per_candidate = request.horizon * request.action_dim
        for c in range(request.candidates):
            future = FutureFrames(horizon=request.horizon, samples=request.samples, action_dim=request.action_dim)
            future.actions = request.actions[c * per_candidate : (c + 1) * per_candidate]
            response.futures.append(future)
        response.success = True
        response.message = f"seed {request.seed} images {request.return_images}"
        return response


def main() -> int:
    return spin(InterfacesEcho)


if __name__ == "__main__":
    raise SystemExit(main())
