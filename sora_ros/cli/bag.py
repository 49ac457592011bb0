"""`sora-ros bag`: make bags from video files, describe bags, play them over DDS.

    sora-ros bag from-video VIDEO OUT [--fps F] [--topic T] [--compressed] [--begin S] [--end S]
    sora-ros bag info BAG [BAG ...]
    sora-ros bag play BAG [BAG ...] [--rate R] [--loop] [--clock [HZ]] [--topics T ...] [--remap FROM:=TO ...]
    sora-ros bag record OUT TOPIC [TOPIC ...] [--duration S]   (Ctrl-C or SIGTERM stops, the bag complete)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from sora_ros.bag.video import MAX_FPS, MIN_FPS
from sora_ros.cli.arguments import finite_float, float_between, new_dir_problem, non_negative_float, out_dir, refused, \
    topic_name, usage_check


def from_video(args: argparse.Namespace) -> int:
    from rosbags.rosbag2 import WriterError

    from sora_ros.bag.from_video import video_to_bag
    from sora_ros.bag.info import summarize
    from sora_ros.bag.video import EmptyWindowError, VideoError

    if refused("bag from-video", "OUT", new_dir_problem(args.out)):  # before the video is decoded
        return 2
    if args.end is not None and args.end <= args.begin:
        print(f"sora-ros bag from-video: --end {args.end:g} must be after --begin {args.begin:g}", file=sys.stderr)
        return 2
    notes: list[str] = []
    try:
        count = video_to_bag(args.video, args.out, fps=args.fps, topic=args.topic, compressed=args.compressed,
                             begin_s=args.begin, end_s=args.end, notes=notes)
    except EmptyWindowError as error:  # the window the user chose, not the video, is at fault
        print(f"sora-ros bag from-video: {error}; choose --begin/--end around some frames", file=sys.stderr)
        return 2
    except (VideoError, WriterError) as error:
        print(f"sora-ros bag from-video: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the bag's folder cannot be made beside OUT
        print(f"sora-ros bag from-video: cannot write {args.out}: {error}", file=sys.stderr)
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


# bag play's ranges, above 0 (at 0 nothing would play, no /clock would tick): playback speeds up to
# 1000x (beyond it every wait is below a timer's resolution), /clock up to once a millisecond.
MAX_PLAY_RATE = 1000.0
MAX_CLOCK_HZ = 1000.0

PLAY_HELP = """Publish the bags' messages over DDS at the recorded rate, one bag after another, with
the QoS each topic was recorded with (reliable, keep last 10 where the bag does not say), as
`ros2 bag play` does. Ctrl-C stops.

    sora-ros bag play my_runs/ --loop --remap /front/image:=/camera/image_raw
    sora-ros bag play run1.mcap --clock --topics /camera/image_raw /cmd_vel   (nodes with use_sim_time)
"""


def _remap(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":=")
    if not (sep and source and target):
        raise argparse.ArgumentTypeError(f"{text!r}: write FROM:=TO")
    return source, target


def _play_usage_problem(args: argparse.Namespace) -> str | None:
    """Options that contradict each other (sora_ros.cli.arguments.usage_check), before rclpy starts."""
    if args.clock and args.restamp:
        return ("--clock and --restamp together: /clock carries the bag's time, --restamp moves the stamps onto the "
                "wall clock; choose one")
    return None


def play(args: argparse.Namespace) -> int:
    try:
        import rclpy
    except ImportError:
        print("sora-ros bag play needs ROS 2 (rclpy): run `make setup`, or see `sora-ros doctor`", file=sys.stderr)
        return 2
    from rclpy.signals import SignalHandlerOptions

    from sora_ros.bag.reading import BagError, find_bags
    from sora_ros.harness.player import BagPlayer, PlayError

    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: KeyboardInterrupt, here
    node = rclpy.create_node("bag_player")
    status, player = 0, None
    try:
        bags = find_bags(args.bags)
        player = BagPlayer(node, bags, topics=args.topics, remap=dict(args.remap), rate=args.rate,
                           clock_hz=args.clock or 0.0, restamp=args.restamp)  # fmt: skip
        for topic, why in player.skipped.items():
            print(f"not playing {topic}: {why}")
        print("playing " + ", ".join(f"{t} -> {player.topic_name(t)}" if player.topic_name(t) != t else t
                                     for t in player.publishers) + f" at {args.rate:g}x" + (", looping" if args.loop else ""),
              flush=True)  # fmt: skip
        while True:
            for bag in bags:
                began, before = time.monotonic(), sum(player.published.values())
                stopped = player.play(bag)
                print(f"{bag}: {sum(player.published.values()) - before} messages in {time.monotonic() - began:.1f} s"
                      + (f" (stopped early: {stopped})" if stopped else ""), flush=True)  # fmt: skip
                status |= stopped is not None
            if not args.loop:
                break
    except (PlayError, BagError, FileNotFoundError) as error:
        print(f"sora-ros bag play: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print(f"\nstopped by Ctrl-C after {sum(player.published.values()) if player else 0} messages")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return status


def record(args: argparse.Namespace) -> int:
    """`sora-ros bag record`: subscribe to the topics over DDS and write them into an MCAP bag
    until --duration passes, Ctrl-C or SIGTERM (the bag is closed and complete either way)."""
    if refused("bag record", "OUT", new_dir_problem(args.out)):  # before any node starts
        return 2
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print("sora-ros bag record needs ROS 2 (rclpy): run `make setup`, or see `sora-ros doctor`", file=sys.stderr)
        return 2
    topics = _named_once(args.topics)
    stop = SignalStop(signal.SIGINT, signal.SIGTERM)
    try:
        return _record(args, topics, stop)
    finally:
        stop.restore()


def _record(args: argparse.Namespace, topics: list[str], stop: SignalStop) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rosbags.rosbag2 import WriterError

    from sora_ros.harness.bag_recorder import TopicRecorder

    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)  # `stop` handles them: between messages, not in one
    node = rclpy.create_node("sora_bag_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        recorder = TopicRecorder(node, args.out, topics, compress=not args.no_compress)
    except (WriterError, OSError) as error:
        print(f"sora-ros bag record: {error}", file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    print(f"recording {', '.join(topics)} into {args.out}"
          + (f" for {args.duration:g} s" if args.duration else " until Ctrl-C"), flush=True)  # fmt: skip
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.1)
    finally:
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if stop.is_set():
        print(f"stopped by {stop.signal_name}")
    print(f"{args.out}: " + (", ".join(f"{t} {recorder.counts[t]}" for t in topics)) + " messages")
    return 0


def _named_once(topics: list[str]) -> list[str]:
    """`topics` in order without repeats; a note for each one named more than once."""
    for topic, count in Counter(topics).items():
        if count > 1:
            print(f"note: {topic} named {count} times; recorded once")
    return list(dict.fromkeys(topics))


class SignalStop(threading.Event):
    """An event the given signals set (SIGINT raises no KeyboardInterrupt, SIGTERM does not kill), so
    that a loop stops between two messages and closes what it writes; `restore()` puts the previous
    handlers back. Create it in the main thread (Python's rule for signal handlers)."""

    def __init__(self, *signals: int) -> None:
        super().__init__()
        self.signal_name = ""
        self._previous = {number: signal.signal(number, self._handle) for number in signals}

    def _handle(self, number: int, frame) -> None:
        self.signal_name = signal.Signals(number).name
        self.set()

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bag", help="rosbag2 tools: video to bag, bag info, play, record", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)

    convert = actions.add_parser("from-video", help="write a video file as a rosbag2 MCAP bag of camera images")
    convert.add_argument("video", type=Path, help="any video file OpenCV can decode")
    convert.add_argument("out", type=out_dir, help="bag directory to create (it must not exist)")
    convert.add_argument("--fps", type=float_between(MIN_FPS, MAX_FPS),
                         help=f"stamp frame k at k / FPS, {MIN_FPS:g} to {MAX_FPS:g} (default: each frame's own "
                         "presentation time, variable frame rate kept); --begin/--end still cut by the video's "
                         "own time")
    convert.add_argument("--topic", default="/camera/image_raw", type=topic_name,
                         help="image topic, fully qualified (default %(default)s)")
    convert.add_argument("--compressed", action="store_true", help="JPEG CompressedImage on TOPIC/compressed")
    convert.add_argument("--begin", type=non_negative_float, default=0.0, metavar="S",
                         help="first second of the video to keep, in the video's own presentation time (what a "
                         "player shows), with or without --fps (default 0)")
    convert.add_argument("--end", type=finite_float, metavar="S",
                         help="keep frames before this second of the video's own presentation time, after "
                         "--begin (default: to the end); a window "
                         "that holds no frame is refused, and nothing is written")
    convert.set_defaults(func=from_video)

    describe = actions.add_parser("info", help="topics, types, counts, rates, duration, first/last stamp")
    describe.add_argument("bags", nargs="+", type=Path, help="bags (directories, .mcap, .db3) or folders of them")
    describe.set_defaults(func=info)

    player = actions.add_parser("play", help="publish bags over DDS at the recorded rate (ros2 bag play without ROS)",
                                description=PLAY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    player.add_argument("bags", nargs="+", type=Path, help="bags (directories, .mcap, .db3) or folders of them")
    player.add_argument("--rate", type=float_between(0.0, MAX_PLAY_RATE, above=True), default=1.0,
                        help=f"playback speed, above 0 and up to {MAX_PLAY_RATE:g}: 2 plays twice as fast (default 1)")
    player.add_argument("--loop", action="store_true", help="start over after the last bag, until Ctrl-C")
    player.add_argument("--clock", type=float_between(0.0, MAX_CLOCK_HZ, above=True), nargs="?", const=40.0,
                        metavar="HZ", help=f"publish /clock with the bag's time, HZ times a second (above 0, up to "
                        f"{MAX_CLOCK_HZ:g}; 40 without HZ), for nodes with use_sim_time:=true")
    player.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics (default: every topic)")
    player.add_argument("--remap", nargs="+", type=_remap, default=[], metavar="FROM:=TO",
                        help="publish bag topic FROM on TO")
    player.add_argument("--restamp", action="store_true",
                        help="move header stamps onto the wall clock (the bag's first stamp becomes now), for "
                             "nodes on wall-clock time that compare stamps with their clock; not with --clock")  # fmt: skip
    player.set_defaults(func=play, check_usage=usage_check(player, _play_usage_problem))

    recorder = actions.add_parser("record", help="record topics from DDS into an MCAP bag (ros2 bag record without ROS)",
                                  description="Subscribe to TOPICs with the QoS their publishers offer and write every "
                                  "message as received into a rosbag2 MCAP bag (zstd chunks) that ros2 bag, rosbags "
                                  "and Foxglove read; our own messages (~/futures, ~/latents) included.")
    recorder.add_argument("out", type=out_dir, help="bag directory to create (it must not exist)")
    recorder.add_argument("topics", nargs="+", metavar="TOPIC", type=topic_name, help="fully qualified topic names")
    recorder.add_argument("--duration", type=non_negative_float, metavar="S",
                          help="stop after S seconds (default, or 0: at Ctrl-C or SIGTERM)")
    recorder.add_argument("--no-compress", action="store_true", help="write uncompressed MCAP chunks")
    recorder.set_defaults(func=record)
