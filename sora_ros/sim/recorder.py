"""Record simulated episodes straight to rosbag2 MCAP files, without DDS.

Each step: the wander policy picks a command from the range fan, the command
is logged on cmd_vel, the world steps, and the new frame, camera info,
odometry and clock are logged, all stamped with simulated time. So frame k is
taken at k * period and the command logged at that same stamp is the one
that drives the world from frame k to frame k + 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import numpy as np

from sora_ros.bag import messages as m
from sora_ros.bag.writing import BagWriter
from sora_ros.sim.wander import WanderConfig, WanderPolicy
from sora_ros.sim.world import SimWorld, WorldConfig

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
ODOM_TOPIC = "/odom"
CMD_VEL_TOPIC = "/cmd_vel"
CLOCK_TOPIC = "/clock"
CAMERA_FRAME = "camera_optical_frame"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
# Offset between a world's seed and its wander policy's seed, so the two streams differ.
POLICY_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class EpisodeResult:
    path: Path
    seed: int
    frames: int
    collisions: int


def record_episode(
    config: WorldConfig, seed: int, seconds: float, path: Path, on_frame: Callable[[], None] | None = None,
    wander: WanderConfig = WanderConfig(),
) -> EpisodeResult:
    """Simulate one episode and write it as a rosbag2 MCAP bag at `path`.

    Args:
        config: the world's size, rate and resolution.
        seed: decides the world and the commands: same seed, same bag contents.
        seconds: simulated duration; round(seconds * rate) frames.
        path: the bag directory to create (must not exist).
        on_frame: called after each frame is written (progress).
        wander: the driving policy's settings (`blind_share` > 0 for episodes with collisions).

    Returns:
        Where it went, the seed, the frame count and the number of refused moves.

    Raises:
        rosbags.rosbag2.WriterError: `path` exists already.
    """
    frames = max(1, round(seconds * config.rate_hz))
    dt = 1 / config.rate_hz
    with SimWorld(config, seed) as world, BagWriter(path) as bag:
        policy = WanderPolicy(np.random.default_rng(seed + POLICY_SEED_OFFSET), config.limits, wander)
        for index in range(frames):
            stamp = world.stamp_ns
            _write_state(bag, world, stamp)
            if on_frame:
                on_frame()
            if index < frames - 1:  # the last frame ends the episode: no command after it
                v, w = policy.act(world.ranges(), dt)
                bag.write(CMD_VEL_TOPIC, m.TWIST, stamp, m.twist(v, w))
                world.step(v, w)
        return EpisodeResult(path, seed, frames, world.collisions)


def _write_state(bag: BagWriter, world: SimWorld, stamp: int) -> None:
    cfg, pose = world.config, world.pose
    bag.write(CLOCK_TOPIC, m.CLOCK, stamp, m.clock(stamp))
    bag.write(IMAGE_TOPIC, m.IMAGE, stamp, m.image(world.render(), stamp, CAMERA_FRAME))
    bag.write(CAMERA_INFO_TOPIC, m.CAMERA_INFO, stamp, m.camera_info(cfg.width, cfg.height, cfg.vertical_fov_deg, stamp, CAMERA_FRAME))
    bag.write(ODOM_TOPIC, m.ODOMETRY, stamp, m.odometry(pose.x, pose.y, pose.yaw, pose.v, pose.w, stamp, ODOM_FRAME, BASE_FRAME))


def parse_split(text: str) -> dict[str, int]:
    """Parse "train:val:test" weights like "8:1:1" into {"train": 8, "val": 1, "test": 1}.

    Weights are reduced by their common divisor; a zero weight drops the split.

    Raises:
        ValueError: not three non-negative integers, or all zero.
    """
    parts = text.split(":")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--split wants three non-negative integers train:val:test, e.g. 8:1:1; got {text!r}")
    weights = [int(p) for p in parts]
    if not any(weights):
        raise ValueError(f"--split {text!r}: at least one weight must be positive")
    divisor = reduce(math.gcd, weights)
    return {name: w // divisor for name, w in zip(("train", "val", "test"), weights) if w}


def split_of(seed: int, split: dict[str, int]) -> str:
    """The split a seed belongs to: a function of the seed alone, so a seed can
    never land in two splits, whatever runs or episode counts produced it.

    Consecutive seeds fill the splits in proportion: with 8:1:1, of every ten
    consecutive seeds eight go to train, one to val, one to test.
    """
    slot = seed % sum(split.values())
    for name, weight in split.items():
        if slot < weight:
            return name
        slot -= weight
    raise AssertionError("unreachable: slot is below the total weight")


def episode_path(out: Path, seed: int, split: dict[str, int] | None) -> Path:
    """Where the bag of `seed` goes: OUT/[SPLIT/]seed_NNNNNN."""
    name = f"seed_{seed:06d}"
    return out / split_of(seed, split) / name if split else out / name
