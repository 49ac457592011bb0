"""A bag's motion record for the risk labels: forward commands (cmd_vel) and odometry positions;
and clips of bags with their frames' labels.

    log = read_motion(bag, odom_topic="/odom", cmd_topic="/cmd_vel", report=report)
    labels = blocked_within(rule, clip.stamps_ns, dt_ns, log)      # sora_ros/core/risk.py
    for clip, labels in labelled_clips(paths, "/camera/image_raw", "/cmd_vel", "/odom", rule, ...): ...

Commands are read as the clip reader reads actions (`read_twists`: TwistStamped header stamps,
else receive times). Odometry (nav_msgs/Odometry) is stamped by its header, or by receive time when
the header stamps cannot be true (sora_ros.core.stamps), as images are.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sora_ros.bag import messages as m
from sora_ros.bag.clips import ACTION_TYPES, Clip, ClipError, ClipReader, ClipReport, check_topic_type, message_stamps, \
    read_twists
from sora_ros.bag.reading import BagReader, find_bags
from sora_ros.core.risk import BlockedRule, MotionLog, blocked_within
from sora_ros.core.twist import twist_indices
from sora_ros.core.units import NS_PER_S, ros_time_ns

ODOM_TYPES = (m.ODOMETRY,)
NON_FINITE_ODOMETRY = "odometry position with NaN or Inf"


def read_motion(bag: Path | str, odom_topic: str, cmd_topic: str, report: ClipReport | None = None) -> MotionLog:
    """The commands and odometry of one bag.

    Args:
        bag: a rosbag2 bag.
        odom_topic: nav_msgs/Odometry topic.
        cmd_topic: geometry_msgs/Twist or TwistStamped topic (the robot's commands).
        report: if given, receives what was dropped and how streams were stamped.

    Returns:
        The MotionLog, odometry sorted by stamp (duplicate stamps: the first kept).

    Raises:
        TopicNotFoundError: the bag lacks one of the topics (the message names it and the topics it has).
        BagError: a topic of the wrong type, an unreadable bag.
    """
    report = ClipReport() if report is None else report
    reader = BagReader(bag)
    reader.require([odom_topic, cmd_topic])
    check_topic_type(reader, odom_topic, ODOM_TYPES)
    check_topic_type(reader, cmd_topic, ACTION_TYPES)
    command_ns, command = read_twists(reader, cmd_topic, twist_indices(("linear_x",)), report)
    headers, receipts, poses = [], [], []
    for message in reader.messages([odom_topic]):
        position = message.msg.pose.pose.position
        value = (position.x, position.y)
        if not all(math.isfinite(v) for v in value):
            report.skip(NON_FINITE_ODOMETRY, f"at {message.log_time_ns} ns")
            continue
        headers.append(ros_time_ns(message.msg.header.stamp))
        receipts.append(message.log_time_ns)
        poses.append(value)
    stamps = message_stamps(reader, odom_topic, headers, receipts, report)
    stamps, first = np.unique(stamps, return_index=True)  # sorted; np.interp needs increasing times
    return MotionLog(command_ns, command[:, 0], stamps, np.array(poses, np.float64).reshape(-1, 2)[first])


def motion_bags(paths: list[str | Path], action_topic: str, odom_topic: str, notes: list[str]) -> list[Path]:
    """The bags of `paths` (folders expanded) that have both odometry and commands, in order; a note
    for each one skipped.

    Raises:
        ValueError: no bag has both topics (naming them, and what each bag lacks).
        FileNotFoundError, BagError: unreadable bags.
    """
    usable = []
    for bag in find_bags(paths):
        missing = [topic for topic in (odom_topic, action_topic) if topic not in BagReader(bag).topics]
        if missing:
            notes.append(f"{bag}: no {' or '.join(missing)}: skipped (the risk labels need odometry and commands)")
        else:
            usable.append(bag)
    if not usable:
        raise ValueError(f"no bag has both {odom_topic} (nav_msgs/Odometry) and {action_topic} (Twist): the risk "
                         f"labels come from odometry and commands; name other topics with --odom-topic / "
                         f"--action-topic\n  " + "\n  ".join(notes))
    return usable


def labelled_clips(paths: list[str | Path], image_topic: str, action_topic: str, odom_topic: str, rule: BlockedRule,
                   *, dt: float, length: int, stride: int, size: tuple[int, int] | None,
                   action_names: tuple[str, ...], notes: list[str]) -> Iterator[tuple[Clip, np.ndarray]]:
    """Clips of the bags that have odometry and commands, each with its frames' risk labels.

    Args:
        paths: rosbag2 bags or folders of them.
        image_topic, action_topic, odom_topic: camera, cmd_vel (Twist/TwistStamped), nav_msgs/Odometry.
        rule: the label rule (sora_ros/core/risk.py).
        dt, length, stride, size, action_names: as `ClipReader` (dt in seconds).
        notes: receives one line per bag skipped (a topic missing, too short for one clip) and per
            kind of odometry or command message dropped in a bag (NaN, bad stamps).

    Returns:
        An iterator of (clip, float32 (T,) labels: 1 blocked within rule.horizon_steps steps, 0 not,
        NaN unknown); the bags' topics are checked now, their clips read as it is iterated.

    Raises:
        ValueError: no bag has both topics (naming them, and what each bag lacks).
        FileNotFoundError, BagError: unreadable bags.
    """
    dt_ns = round(dt * NS_PER_S)
    usable = motion_bags(paths, action_topic, odom_topic, notes)

    def clips() -> Iterator[tuple[Clip, np.ndarray]]:
        for bag in tqdm(usable, desc="risk data", unit="bag", dynamic_ncols=True, disable=None):
            report = ClipReport()
            motion = read_motion(bag, odom_topic, action_topic, report)
            for reason, count in report.skipped.most_common():
                first = f" (first {report.first_error[reason]})" if reason in report.first_error else ""
                notes.append(f"{bag}: {count} x {reason} dropped{first}")
            motion_notes = [f"{bag}: stopped early: {note}" for note in report.stopped]
            motion_notes += [f"{bag}: aligned by receive time: {note}" for note in report.receive_time]
            reader = ClipReader(bag, image_topic, action_topic, dt_ns=dt_ns, clip_length=length, size=size,
                                stride=stride, action_names=action_names)
            try:
                for clip in reader:
                    yield clip, blocked_within(rule, clip.stamps_ns, dt_ns, motion)
            except ClipError as error:
                notes.append(f"{bag}: no clip: {str(error).splitlines()[0]}")
            else:  # what the clips lost (undecodable images, bad stamps, gaps), as model_clips notes it
                motion_notes += [f"{bag}: {line.strip()}" for line in reader.report.summary().splitlines()[1:]]
            notes.extend(note for note in dict.fromkeys(motion_notes) if note not in notes)  # the cmd_vel ones once

    return clips()
