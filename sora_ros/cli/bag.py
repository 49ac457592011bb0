"""`sora-ros bag`: make bags from video files and describe bags.

    sora-ros bag from-video VIDEO OUT [--fps F] [--topic T] [--compressed] [--begin S] [--end S]
    sora-ros bag info BAG [BAG ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def from_video(args: argparse.Namespace) -> int:
    from rosbags.rosbag2 import WriterError

    from sora_ros.bag.from_video import video_to_bag
    from sora_ros.bag.info import summarize
    from sora_ros.bag.video import VideoError

    notes: list[str] = []
    try:
        count = video_to_bag(args.video, args.out, fps=args.fps, topic=args.topic, compressed=args.compressed,
                             begin_s=args.begin, end_s=args.end, notes=notes)
    except (VideoError, WriterError) as error:
        print(f"sora-ros bag from-video: {error}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {args.video}: {note}")
    print(f"wrote {count} frames to {args.out}" + (f", stamped at {args.fps:g} fps" if args.fps else
                                                   ", stamped by their presentation times"))
    print(summarize(args.out).format())
    return 0


def info(args: argparse.Namespace) -> int:
    from sora_ros.bag.info import summarize
    from sora_ros.bag.reading import BagError, find_bags

    status = 0
    try:
        bags = find_bags(args.bags)
    except FileNotFoundError as error:
        print(f"sora-ros bag info: {error}", file=sys.stderr)
        return 1
    for index, bag in enumerate(bags):
        if index:
            print()
        try:
            summary = summarize(bag)
        except (BagError, FileNotFoundError) as error:
            print(f"sora-ros bag info: {error}", file=sys.stderr)
            status = 1
            continue
        print(summary.format())
        status |= summary.stop_reason is not None
    return status


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bag", help="rosbag2 tools: video to bag, bag info", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)

    convert = actions.add_parser("from-video", help="write a video file as a rosbag2 MCAP bag of camera images")
    convert.add_argument("video", type=Path, help="any video file OpenCV can decode")
    convert.add_argument("out", type=Path, help="bag directory to create")
    convert.add_argument("--fps", type=float, help="stamp frame k at k / FPS (default: each frame's own "
                         "presentation time, variable frame rate kept)")
    convert.add_argument("--topic", default="/camera/image_raw", help="image topic (default %(default)s)")
    convert.add_argument("--compressed", action="store_true", help="JPEG CompressedImage on TOPIC/compressed")
    convert.add_argument("--begin", type=float, default=0.0, metavar="S", help="first second of the video to keep")
    convert.add_argument("--end", type=float, metavar="S", help="keep frames before this second (default: to the end)")
    convert.set_defaults(func=from_video)

    describe = actions.add_parser("info", help="topics, types, counts, rates, duration, first/last stamp")
    describe.add_argument("bags", nargs="+", type=Path, help="bags (directories, .mcap, .db3) or folders of them")
    describe.set_defaults(func=info)
