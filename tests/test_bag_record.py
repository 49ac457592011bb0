"""`sora-ros bag record` over real DDS: the world model's output types (FutureFrames, PatchLatents,
images) recorded from another process into an MCAP bag that decodes from its own schemas (as
Foxglove decodes it), with the publishers' QoS and type hashes, and `ros_distro: kilted`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from test_bag_writing import check_faithful, mcap_channels  # noqa: E402

from sora_ros.bag.reading import BagReader  # noqa: E402
from sora_ros.core.units import ros_time_ns  # noqa: E402
from sora_ros.msg import FutureFrames, PatchLatents  # noqa: E402
from sora_ros.nodes.messages import numpy_to_image  # noqa: E402

RECORD_S = 8.0
PERIOD_S = 0.1
TOPICS = {"futures": "/rec_test/world_model/futures", "latents": "/rec_test/world_model/latents",
          "predicted": "/rec_test/world_model/predicted/image"}  # fmt: skip


def latents_msg(k: int) -> PatchLatents:
    msg = PatchLatents(header=Header(stamp=Time(sec=100, nanosec=k), frame_id="camera_optical_frame"),
                       model_id="tiny", channels=2, height=3, width=4, patch_size=8, dtype="float32")  # fmt: skip
    msg.data = np.full((2, 3, 4), k, np.float32).tobytes()
    return msg


def futures_msg(k: int) -> FutureFrames:
    frame = numpy_to_image(np.full((6, 8, 3), k % 256, np.uint8), "rgb8", Header(stamp=Time(sec=101, nanosec=k)))
    return FutureFrames(header=Header(stamp=Time(sec=100, nanosec=k), frame_id="camera_optical_frame"),
                        model_id="tiny", dt=0.1, horizon=1, frames=[frame], latents=[latents_msg(k)])  # fmt: skip


def test_bag_record_writes_the_world_model_outputs(tmp_path: Path) -> None:
    rclpy.init()
    node = rclpy.create_node("bag_record_test")
    publishers = {"futures": node.create_publisher(FutureFrames, TOPICS["futures"], 10),
                  "latents": node.create_publisher(PatchLatents, TOPICS["latents"], 10),
                  "predicted": node.create_publisher(Image, TOPICS["predicted"], qos_profile_sensor_data)}  # fmt: skip
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    out = tmp_path / "outputs"
    recorder = subprocess.Popen([sys.executable, "-m", "sora_ros.cli", "bag", "record", str(out), *TOPICS.values(),
                                 "--duration", str(RECORD_S)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        k = 0
        while recorder.poll() is None:
            publishers["futures"].publish(futures_msg(k))
            publishers["latents"].publish(latents_msg(k))
            publishers["predicted"].publish(numpy_to_image(np.full((6, 8, 3), k % 256, np.uint8), "rgb8",
                                                           Header(stamp=Time(sec=101, nanosec=k))))  # fmt: skip
            k += 1
            time.sleep(PERIOD_S)
        output = recorder.stdout.read()
    finally:
        if recorder.poll() is None:
            recorder.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    assert recorder.returncode == 0, output

    reader = BagReader(out)  # decodes with the bag's own message definitions only
    for name, topic in TOPICS.items():
        messages = list(reader.messages([topic]))
        assert len(messages) >= 0.5 * RECORD_S / PERIOD_S, f"{name}: {len(messages)} messages\n{output}"
    futures = [message.msg for message in reader.messages([TOPICS["futures"]])]
    last = futures[-1]
    k = last.header.stamp.nanosec
    assert (last.model_id, last.header.frame_id, ros_time_ns(last.header.stamp)) == ("tiny", "camera_optical_frame", 100 * 10**9 + k)
    assert last.frames[0].data.reshape(6, 8, 3).tolist() == np.full((6, 8, 3), k % 256).tolist()
    assert np.frombuffer(bytes(last.latents[0].data), np.float32).tolist() == [float(k)] * 24
    channels = mcap_channels(out)
    # The schema Foxglove decodes FutureFrames with holds the nested definitions (the summary is not compressed).
    assert b"MSG: sora_ros/PatchLatents" in next(out.glob("*.mcap")).read_bytes()
    assert all(channels[topic]["topic_type_hash"].startswith("RIHS01_") for topic in TOPICS.values())
    # As from the ROS graph: history and depth are not announced (rosbag2 records "unknown", 0 too).
    check_faithful(out, best_effort={TOPICS["predicted"]}, history="unknown")


def test_sigterm_ends_the_recording_with_a_complete_bag_and_a_topic_named_twice_is_recorded_once(tmp_path: Path) -> None:
    import signal

    topic = "/rec_term_test/image"
    rclpy.init()
    node = rclpy.create_node("bag_record_term_test")
    publisher = node.create_publisher(Image, topic, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    out = tmp_path / "bag"
    recorder = subprocess.Popen([sys.executable, "-m", "sora_ros.cli", "bag", "record", str(out), topic, topic],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lines = [recorder.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("recording"):
            lines.append(recorder.stdout.readline())
        for k in range(60):  # 6 s: discovery, then messages
            publisher.publish(numpy_to_image(np.full((6, 8, 3), k, np.uint8), "rgb8", Header(stamp=Time(sec=1, nanosec=k))))
            time.sleep(PERIOD_S)
        recorder.send_signal(signal.SIGTERM)
        output = "".join(lines) + recorder.communicate(timeout=60)[0]
    finally:
        if recorder.poll() is None:
            recorder.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    assert recorder.returncode == 0, output
    assert f"note: {topic} named 2 times; recorded once" in output and "stopped by SIGTERM" in output, output
    assert f"recording {topic} into" in output and f"{topic}, {topic}" not in output
    messages = list(BagReader(out).messages([topic]))  # closed: metadata.yaml and the MCAP summary written
    assert len(messages) >= 5 and len({m.msg.header.stamp.nanosec for m in messages}) == len(messages), output


def test_record_arguments_are_checked_before_any_node_starts(tmp_path: Path, monkeypatch, capsys) -> None:
    from sora_ros.cli import main as cli

    def no_node(*args, **kwargs):
        raise AssertionError("a node started before the arguments were checked")

    monkeypatch.setattr(rclpy, "init", no_node)
    with pytest.raises(SystemExit) as stop:
        cli(["bag", "record", str(tmp_path / "bag"), "/a", "--duration", "-1"])
    assert stop.value.code == 2 and "argument --duration: must be 0 or more, got -1" in capsys.readouterr().err
    existing = tmp_path / "existing"
    existing.mkdir()
    assert cli(["bag", "record", str(existing), "/a"]) == 2
    assert capsys.readouterr().err.strip() == (f"sora-ros bag record: OUT {existing} exists; a bag is written into a "
                                               "new directory: remove it or choose another path")
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert cli(["bag", "record", str(afile / "bag"), "/a"]) == 2
    assert f"{afile} is a file, not a directory" in capsys.readouterr().err
