"""The `encoder` node (see world_model.py).

    python -m sora_ros.nodes.encoder --ros-args -p model_path:=models/default -r image:=/camera/image_raw
"""

from __future__ import annotations

import sys

from sora_ros.nodes.world_model import run


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C; 1 if its model fails to configure."""
    return run("encoder", sys.argv if args is None else args)


if __name__ == "__main__":
    raise SystemExit(main())
