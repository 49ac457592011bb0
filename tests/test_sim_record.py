"""Recorded episodes: counts, stamps, sizes, seed reproducibility, splits, and the world's rules."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from sora_ros.bag.clips import ClipReader
from sora_ros.bag.info import summarize
from sora_ros.bag.reading import BagReader
from sora_ros.sim import recorder
from sora_ros.core.units import NS_PER_S, ros_time_ns
from sora_ros.sim.drive import Pose2D
from sora_ros.sim.wander import WanderConfig
from sora_ros.sim.world import SimWorld, WorldConfig, _c_stdout_discarded

RATE_HZ = 10.0
CONFIG = WorldConfig(width=32, height=24, rate_hz=RATE_HZ, num_objects=12)
FRAMES = 20


def record(path: Path, seed: int) -> Path:
    recorder.record_episode(CONFIG, seed, FRAMES / RATE_HZ, path)
    return path


def frames_of(bag: Path) -> np.ndarray:
    """uint8 (N, H, W, 3) of every recorded frame."""
    return np.stack([msg.msg.data.reshape(msg.msg.height, msg.msg.width, 3) for msg in BagReader(bag).messages([recorder.IMAGE_TOPIC])])


def test_episode_reads_back_with_counts_stamps_and_sizes(tmp_path: Path) -> None:
    bag = record(tmp_path / "ep", seed=5)
    topics = {t.topic: t for t in summarize(bag).topics}
    for topic in (recorder.IMAGE_TOPIC, recorder.CAMERA_INFO_TOPIC, recorder.ODOM_TOPIC, recorder.CLOCK_TOPIC):
        assert topics[topic].count == FRAMES
    assert topics[recorder.CMD_VEL_TOPIC].count == FRAMES - 1  # no command after the last frame
    images = [msg.msg for msg in BagReader(bag).messages([recorder.IMAGE_TOPIC])]
    stamps = np.array([ros_time_ns(img.header.stamp) for img in images])
    np.testing.assert_array_equal(np.diff(stamps), round(NS_PER_S / RATE_HZ))
    assert {(img.width, img.height, img.encoding) for img in images} == {(32, 24, "rgb8")}
    clip = next(iter(ClipReader(bag, recorder.IMAGE_TOPIC, recorder.CMD_VEL_TOPIC, dt_ns=100_000_000, clip_length=FRAMES, size=(24, 32))))
    assert np.abs(clip.actions[:-1, 0]).max() > 0.05  # the wander policy drove somewhere


def test_same_seed_same_frames_other_seed_different(tmp_path: Path) -> None:
    first, again, other = (frames_of(record(tmp_path / name, seed)) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 10


def test_splits_depend_on_the_seed_alone() -> None:
    split = recorder.parse_split("80:10:10")
    assert split == {"train": 8, "val": 1, "test": 1}
    names = [recorder.split_of(seed, split) for seed in range(100)]
    assert names.count("train") == 80 and names.count("val") == 10 and names.count("test") == 10
    assert recorder.split_of(1234, split) == recorder.split_of(1234, recorder.parse_split("8:1:1"))
    with pytest.raises(ValueError, match="three non-negative integers"):
        recorder.parse_split("8:2")


def test_connecting_prints_no_pybullet_banner_on_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    with SimWorld(WorldConfig(width=8, height=8, num_objects=0, num_balls=0, other_robot=False), seed=1):
        print("after connect")
    assert capfd.readouterr().out == "after connect\n"  # no "argv[0]=" line
    with _c_stdout_discarded():  # native code's stderr, where pybullet's errors go, still shows
        os.write(1, b"banner\n")
        os.write(2, b"error\n")
    assert capfd.readouterr() == ("", "error\n")


def test_walls_stop_the_robot_and_turns_follow_the_sign() -> None:
    with SimWorld(WorldConfig(width=8, height=8, num_objects=0, num_balls=0, other_robot=False), seed=1) as world:
        start_yaw = world.pose.yaw
        for _ in range(5):
            world.step(0.0, 1.0)
        turned = math.remainder(world.pose.yaw - start_yaw, 2 * math.pi)
        assert 0.3 < turned < 1.0  # positive w turns left (counter-clockwise), within the accel limit
        for _ in range(300):  # 30 s at full speed: far more than the room
            world.step(1.0, 0.0)
        half = world.config.world_size / 2
        assert max(abs(world.pose.x), abs(world.pose.y)) < half
        assert world.collisions > 0 and world.pose.v == 0.0


@pytest.mark.parametrize("pitch", [90.0, -90.0])
def test_a_camera_pitched_straight_up_or_down_sees_the_room(pitch: float) -> None:
    # Beside a wall, facing it: straight up the wall's top edge shows, straight down the floor and the wall's foot.
    config = WorldConfig(width=32, height=24, num_objects=0, num_balls=0, other_robot=False, camera_pitch_deg=pitch)
    with SimWorld(config, seed=3) as world:
        world.pose = Pose2D(config.world_size / 2 - 0.3, 0.0, 0.0)
        frame = world.render()
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 1, "a single colour: the view matrix is degenerate"


def test_blind_goals_drive_into_things(tmp_path: Path) -> None:
    world = WorldConfig(width=16, height=16, rate_hz=RATE_HZ, num_objects=12)
    careful, blind = ([recorder.record_episode(world, seed, 12.0, tmp_path / f"{share}_{seed}",
                                               wander=WanderConfig(blind_share=share)).collisions
                       for seed in (3, 4)] for share in (0.0, 1.0))
    assert sum(blind) > sum(careful) + 10  # the careful policy steers clear; blind goals hit walls
    with pytest.raises(ValueError, match="blind_share"):
        WanderConfig(blind_share=1.5)
