"""`sora-ros video-camera VIDEO`: play a video file as a ROS 2 camera topic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sora_ros.bag.video import MAX_PLAY_FPS
from sora_ros.cli.arguments import float_between


def main(args: argparse.Namespace) -> int:
    """Play the video through the video_camera node; 1, after one line, when there is no file to play
    (checked before ROS starts) or the node cannot decode it (its log line says so)."""
    from sora_ros.nodes import video_camera as video_camera_node

    problem = video_camera_node.video_file_problem(args.video, "sora-ros video-camera clip.mp4")
    if problem:
        print(f"sora-ros video-camera: {problem}", file=sys.stderr)
        return 1
    ros_args = ["-p", f"video:={args.video}", "-p", f"loop:={str(not args.no_loop).lower()}"]
    if args.rate:
        ros_args += ["-p", f"rate:={float(args.rate)}"]
    return video_camera_node.main(["sora-ros-video-camera", "--ros-args", *ros_args, *(args.ros_args or [])])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "video-camera",
        help="play a video file as a camera (camera/image_raw), looping with monotonic stamps",
        description="Publish a video file on camera/image_raw at its own rate or --rate; loops unless --no-loop.",
    )
    parser.add_argument("video", type=Path, help="any video file OpenCV can decode")
    parser.add_argument("--rate", type=float_between(0.0, MAX_PLAY_FPS),
                        help=f"frames per second, 0 to {MAX_PLAY_FPS:g} (default, or 0: the video's own)")
    parser.add_argument("--no-loop", action="store_true", help="stop at the end instead of looping")
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, dest="ros_args", help="further ROS arguments")
    parser.set_defaults(func=main)
