"""The `world_model` node: the encoder and predictor roles in one process (camera ->
~/latents, ~/futures, ~/predicted/image, ~/comparison/image, ~/rollout). An adapter around
sora_ros.runtime.pipeline.WorldModelPipeline, which does the work; see encoder.py,
predictor.py and model_node.py for the parts.

    python -m sora_ros.nodes.world_model --ros-args -p model_path:=models/default -r image:=/camera/image_raw
"""

from __future__ import annotations

import sys

from sora_ros.nodes import spin_lifecycle
from sora_ros.nodes.encoder import EncoderNode
from sora_ros.nodes.predictor import EXECUTOR_THREADS, PredictorNode


class WorldModelNode(EncoderNode, PredictorNode):
    """Encodes each camera frame and adds it, as the model saw it, to its own context."""

    def __init__(self, name: str = "world_model") -> None:
        super().__init__(name)


def main(args: list[str] | None = None) -> int:
    """The `world_model` executable; 1 if its model fails to configure."""
    return spin_lifecycle(WorldModelNode, sys.argv if args is None else args, EXECUTOR_THREADS)


if __name__ == "__main__":
    raise SystemExit(main())
