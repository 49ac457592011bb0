"""`sora-ros view`: watch the camera and the world model's predictions live in the Foxglove app.

    sora-ros launch launch/world_model.launch.yaml image:=/camera/image_raw &   # the world model
    sora-ros view --image /camera/image_raw      # then open ws://localhost:8765 in Foxglove

In the Foxglove app (desktop or app.foxglove.dev): Open connection -> Foxglove WebSocket ->
ws://localhost:8765; then Layouts -> Import from file -> config/foxglove_layout.json puts the
camera, the predictions at each horizon and the comparison image side by side. Needs
foxglove-sdk (`pip install -e '.[view]'`; `make setup` installs it).
"""

from __future__ import annotations

import argparse
import sys

from sora_ros.cli.arguments import int_between

# TCP ports are 16 bits; 0 (any free port) is refused: the Foxglove app must be told the port.
MAX_PORT = 65535


def main(args: argparse.Namespace) -> int:
    try:
        import foxglove  # noqa: F401
    except ImportError:
        print("sora-ros view needs the Foxglove SDK: pip install -e '.[view]'", file=sys.stderr)
        return 2
    from sora_ros.harness.foxglove_view import serve

    return serve(args.image, args.world_model, args.compressed, args.host, args.port)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.harness.foxglove_view import DEFAULT_PORT

    parser = subparsers.add_parser("view", help="serve the camera and the world model's outputs to the Foxglove app",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="/camera/image_raw", help="camera topic (default %(default)s)")
    parser.add_argument("--compressed", action="store_true", help="show IMAGE/compressed (JPEG/PNG) instead")
    parser.add_argument("--world-model", default="/world_model",
                        help="the world model node's full name, whose ~/ topics are shown (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 serves other machines too (default %(default)s)")
    parser.add_argument("--port", type=int_between(1, MAX_PORT), default=DEFAULT_PORT,
                        help=f"WebSocket port, 1 to {MAX_PORT} (default %(default)s)")
    parser.set_defaults(func=main)
