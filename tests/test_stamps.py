"""Header stamps that cannot be true (zero, constant, another clock): the bag tools align that
stream by receive time instead, and say so (sora_ros.core.stamps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sora_ros import cli
from sora_ros.bag import messages as m
from sora_ros.bag.clip_sources import model_clips
from sora_ros.bag.clips import ClipReader
from sora_ros.bag.writing import BagWriter
from sora_ros.core.stamps import RECEIVE_TOLERANCE_NS, stamp_order_problem, stamp_problem
from sora_ros.core.units import NS_PER_MS, NS_PER_S

IMAGE, CMD = "/camera/image_raw", "/cmd_vel"
T0 = 1_764_000_000 * NS_PER_S  # a wall-clock receive time (2025)
DT = 100 * NS_PER_MS
FIRST, SECOND = (0.5, 0.0), (0.0, 1.0)  # frames 0-19 commanded FIRST, 20-39 SECOND


def write_bag(path: Path, command_stamp, image_stamp=lambda k, t: t) -> Path:
    """40 frames at 10 Hz received at T0 + k dt; a TwistStamped 10 ms before each frame
    (FIRST before frames 0-19, SECOND before 20-39), its header stamp command_stamp(k, t)."""
    with BagWriter(path) as bag:
        for k in range(40):
            t = T0 + k * DT
            v, w = FIRST if k < 20 else SECOND
            command = m.TYPESTORE.types[m.TWIST_STAMPED](header=m.header(command_stamp(k, t - 10 * NS_PER_MS), "base"),
                                                          twist=m.twist(v, w))
            bag.write(CMD, m.TWIST_STAMPED, t - 10 * NS_PER_MS, command)
            bag.write(IMAGE, m.IMAGE, t, m.image(np.full((8, 8, 3), k, np.uint8), image_stamp(k, t), "cam"))
    return path


def expected() -> np.ndarray:
    return np.array([FIRST] * 20 + [SECOND] * 20, np.float32)


LIARS = {
    "zero": lambda k, t: 0,
    "constant": lambda k, t: T0,
    "another clock": lambda k, t: t - T0 + 5 * NS_PER_S,  # sim time from 5 s, recorded against the wall clock
}


@pytest.mark.parametrize("liar", sorted(LIARS))
def test_lying_command_stamps_fall_back_to_receive_time(tmp_path: Path, liar: str) -> None:
    bag = write_bag(tmp_path / "bag", LIARS[liar])
    reader = ClipReader(bag, IMAGE, CMD, dt_ns=DT, clip_length=40, size=(8, 8))
    (clip,) = list(reader)
    np.testing.assert_array_equal(clip.actions, expected())
    assert reader.report.receive_time == [f"{bag}: {CMD}: {stamp_problem(*_stamps(liar))}"]
    assert "aligned by receive time" in reader.report.summary()


def _stamps(liar: str) -> tuple[np.ndarray, np.ndarray]:
    receive = T0 + np.arange(40) * DT - 10 * NS_PER_MS
    return np.array([LIARS[liar](k, t) for k, t in enumerate(receive)], np.int64), receive


def test_true_command_stamps_are_used(tmp_path: Path) -> None:
    # Stamped 60 ms after receipt (within tolerance), so 50 ms after its frame: by header, frame k
    # holds command k - 1, and frame 0 has none yet.
    bag = write_bag(tmp_path / "bag", lambda k, t: t + 60 * NS_PER_MS)
    reader = ClipReader(bag, IMAGE, CMD, dt_ns=DT, clip_length=39, size=(8, 8))
    (clip,) = list(reader)
    assert clip.stamps_ns[0] == T0 + DT
    np.testing.assert_array_equal(clip.actions, expected()[:39])
    assert reader.report.receive_time == []


def test_zero_image_stamps_fall_back_and_eval_notes_say_so(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", lambda k, t: t, image_stamp=lambda k, t: 0)
    notes: list[str] = []
    clips = list(model_clips([bag], IMAGE, CMD, dt=0.1, length=40, size=(8, 8), action_names=("linear_x", "angular_z"),
                             notes=notes))
    assert len(clips) == 1 and [int(f[0, 0, 0]) for f in clips[0].frames] == list(range(40))
    np.testing.assert_array_equal(clips[0].actions, expected())
    assert f"{bag}: aligned by receive time: {bag}: {IMAGE}: 40 of 40 header stamps are zero" in notes


def test_bag_info_warns_about_lying_stamps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_bag(tmp_path / "bag", LIARS["zero"])
    assert cli.main(["bag", "info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert f"WARNING: {CMD}: 40 of 40 header stamps are zero; sora-ros aligns it by receive time" in out
    assert IMAGE + ":" not in out.split("WARNING")[1]  # the image stamps are fine


def test_bag_info_counts_image_stamps_that_step_back_repeat_or_leave_gaps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Frames 0..19 at 10 Hz without 12-14; frame 5 repeats frame 4's stamp, frame 8 is stamped 50 ms
    # before frame 7. Dropped as the clip readers drop them, 5 and 8 leave gaps too (4 -> 6, 7 -> 9).
    stamps = [T0 + k * DT for k in range(20) if k not in (12, 13, 14)]
    stamps[5], stamps[8] = stamps[4], stamps[7] - DT // 2
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        for i, stamp in enumerate(stamps):
            writer.write(IMAGE, m.IMAGE, T0 + i * DT, m.image(np.zeros((8, 8, 3), np.uint8), stamp, "cam"))
        for k in (0, 1, 2, 9, 10):  # odometry that pauses (a driver restart): no missing message to warn of
            writer.write("/odom", m.ODOMETRY, T0 + k * DT, m.odometry(0, 0, 0, 0, 0, T0 + k * DT, "odom", "base_link"))
    assert cli.main(["bag", "info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert (f"WARNING: {IMAGE}: of 17 header stamps, 1 step back, 1 duplicate, 3 gaps "
            "(over 1.5x the median interval, 100.0 ms)") in out.splitlines()
    assert "/odom:" not in out


def test_stamp_order_rule() -> None:
    assert stamp_order_problem(np.arange(5) * DT) is None
    assert stamp_order_problem(np.array([], np.int64)) is None
    # One frame out of order is one step back, not a gap as well.
    assert stamp_order_problem(np.array([0, 1, 3, 2, 4, 5]) * DT) == "of 6 header stamps, 1 step back"
    # A clock reset (bag loop) starts over: one step back, the stamps after it in order.
    assert stamp_order_problem(np.array([0, 1, 2, 0, 1, 2]) * DT) == "of 6 header stamps, 1 step back"
    assert stamp_order_problem(np.array([0, 1, 1, 1, 2]) * DT) == "of 5 header stamps, 2 duplicates"
    assert stamp_order_problem(np.array([0, 1, 2, 4, 5, 8]) * DT) == \
        "of 6 header stamps, 2 gaps (over 1.5x the median interval, 100.0 ms)"
    # Commands and odometry may pause: without gap counting only order faults are reported.
    assert stamp_order_problem(np.array([0, 1, 2, 4, 5, 8]) * DT, count_gaps=False) is None
    assert stamp_order_problem(np.array([0, 1, 1, 5]) * DT, count_gaps=False) == "of 4 header stamps, 1 duplicate"


def test_stamp_problem_rule() -> None:
    receive = np.arange(5, dtype=np.int64) * DT + T0
    assert stamp_problem(receive, receive) is None
    assert stamp_problem(np.array([], np.int64), np.array([], np.int64)) is None
    # A bag written in its own time from 0 (sim, converted video): stamp 0 received at 0 is true.
    own = np.arange(5, dtype=np.int64) * DT
    assert stamp_problem(own, own) is None
    assert stamp_problem(np.where(np.arange(5) == 2, 0, receive), receive) == "1 of 5 header stamps are zero"
    assert stamp_problem(np.full(5, 7), receive) == "all 5 header stamps are the same (7 ns)"
    assert stamp_problem(receive + RECEIVE_TOLERANCE_NS, receive) is None
    assert "median 1.500 s" in stamp_problem(receive + 3 * RECEIVE_TOLERANCE_NS // 2, receive)
