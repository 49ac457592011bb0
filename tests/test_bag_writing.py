"""Bags we write read back as rosbag2 (Kilted, MCAP storage) writes them: offered QoS in
metadata.yaml and in each MCAP channel, the RIHS01 type hash under `topic_type_hash`, and
`ros_distro: kilted`; for `sim record` and `bag from-video` too."""

from __future__ import annotations

import json
import sys
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import yaml
from rosbags.rosbag2.storage_mcap import McapReader, read_string

from sora_ros.bag import messages as m
from sora_ros.bag.from_video import video_to_bag
from sora_ros.bag.writing import BagWriter
from sora_ros.core.paths import package_share
from sora_ros.sim import recorder
from sora_ros.sim.world import WorldConfig


def installed_hash(msgtype: str) -> str:
    """The RIHS01 hash rosidl generated for `msgtype` (share/<pkg>/msg/<Name>.json), as a publisher announces it."""
    package, _, name = msgtype.split("/")
    share = Path(sys.prefix) / "share" / package  # the ROS wheels and `make setup` install into the venv
    description = json.loads(((share if share.is_dir() else package_share(package)) / "msg" / f"{name}.json").read_text())
    return description["type_hashes"][0]["hash_string"]


def metadata_topics(bag: Path) -> dict[str, dict]:
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["ros_distro"] == "kilted"
    return {t["topic_metadata"]["name"]: t["topic_metadata"] for t in info["topics_with_message_count"]}


def mcap_channels(bag: Path) -> dict[str, dict[str, str]]:
    """topic -> the MCAP channel's metadata map; checks the rosbag2 metadata record says kilted."""
    (path,) = bag.glob("*.mcap")
    reader = McapReader(path)
    reader.open()
    try:
        channels = {}
        for channel in reader.channels.values():
            bio, entries = BytesIO(channel.metadata), {}
            while bio.tell() < len(channel.metadata):
                key = read_string(bio)
                entries[key] = read_string(bio)
            channels[channel.topic] = entries
    finally:
        reader.close()
    assert b"ros_distro: kilted" in path.read_bytes() and b"ros_distro: rosbags" not in path.read_bytes()
    return channels


def check_faithful(bag: Path, best_effort: set[str], history: str = "keep_last") -> dict[str, dict]:
    """Every topic: offered QoS (best effort for `best_effort`, reliable otherwise) in both places,
    and the installed RIHS01 hash in metadata.yaml and the channel's topic_type_hash."""
    topics, channels = metadata_topics(bag), mcap_channels(bag)
    assert set(topics) == set(channels)
    for name, topic in topics.items():
        (profile,) = topic["offered_qos_profiles"]
        assert profile["reliability"] == ("best_effort" if name in best_effort else "reliable"), name
        assert profile["durability"] == "volatile" and profile["history"] == history
        assert yaml.safe_load(channels[name]["offered_qos_profiles"])[0]["reliability"] == profile["reliability"]
        assert topic["type_description_hash"] == channels[name]["topic_type_hash"] == installed_hash(topic["type"]), name
    return topics


def test_writer_records_qos_type_hash_and_distro(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b") as bag:
        for k in range(3):
            bag.write("/cam", m.IMAGE, k, m.image(np.zeros((4, 6, 3), np.uint8), k, "cam"))
            bag.write("/cmd", m.TWIST, k, m.twist(0.1, 0.0))
    topics = check_faithful(tmp_path / "b", best_effort={"/cam"})
    assert topics["/cam"]["offered_qos_profiles"][0]["depth"] == 5


def test_sim_record_bag_is_faithful(tmp_path: Path) -> None:
    bag = tmp_path / "ep"
    recorder.record_episode(WorldConfig(width=16, height=16, rate_hz=10.0, num_objects=4), 1, 0.5, bag)
    check_faithful(bag, best_effort={recorder.IMAGE_TOPIC, recorder.CAMERA_INFO_TOPIC})


def test_bag_from_video_is_faithful(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for k in range(5):
        writer.write(np.full((24, 32, 3), 30 * k, np.uint8))
    writer.release()
    for compressed in (False, True):
        bag = tmp_path / f"bag_{compressed}"
        video_to_bag(video, bag, **({"compressed": True} if compressed else {}))
        topics = check_faithful(bag, best_effort=set(metadata_topics(bag)))
        assert {t["type"] for t in topics.values()} == {m.COMPRESSED_IMAGE if compressed else m.IMAGE}
