"""The `world_model` node (see world_model_node.py).

    python -m sora_ros.nodes.world_model --ros-args -p model_path:=models/default -r image:=/camera/image_raw
"""

from __future__ import annotations

import sys

from sora_ros.nodes.world_model_node import run


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C; 1 if its model fails to configure."""
    return run("world_model", sys.argv if args is None else args)


if __name__ == "__main__":
    raise SystemExit(main())
