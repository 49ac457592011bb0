"""`sora-ros demo`: the live demo. Launches launch/demo.launch.yaml (the simulated robot, or a
video file, the world model and the example planner) over real DDS for a set time, records
the camera and ~/futures, then writes out/demo/ and prints a summary.

    sora-ros demo                          # 60 s of the simulated robot
    sora-ros demo --video clip.mp4 --duration 30
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from sora_ros.launch_file import LaunchFileError, package_share, read_launch_file

DEFAULT_DURATION_S = 60.0
CAMERA_RATE_HZ = 15.0
CAMERA_TOPIC = "/camera/image_raw"
FUTURES_TOPIC = "/world_model/futures"
WORLD_MODEL_STATUS = "world_model: inference"
WORLD_MODEL_INPUT = "world_model: input"


class Recorder:
    """An rclpy node in a background thread that records the camera, ~/futures and /diagnostics."""

    def __init__(self, image_size: tuple[int, int], dt_s: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from sora_ros.live.demo_report import Recording
        from sora_ros.msg import FutureFrames

        self.image_size = image_size
        self.recording = Recording(dt_ns=round(dt_s * 1e9))
        self.lock = threading.Lock()
        rclpy.init()
        self.node = rclpy.create_node("demo_recorder")
        self.node.create_subscription(Image, CAMERA_TOPIC, self._on_image, qos_profile_sensor_data)
        self.node.create_subscription(FutureFrames, FUTURES_TOPIC, self._on_futures, QoSProfile(depth=20))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=20))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_image(self, msg) -> None:
        from sora_ros.image_conversion import ImageConversionError, image_to_rgb
        from sora_ros.nodes.live_messages import stamp_ns
        from sora_ros.preprocess import fit_frame

        try:
            frame = fit_frame(image_to_rgb(msg), self.image_size)
        except ImageConversionError:
            return
        with self.lock:
            self.recording.real[stamp_ns(msg.header)] = frame.copy()
            self.recording.camera_frames += 1

    def _on_futures(self, msg) -> None:
        import numpy as np

        from sora_ros.image_conversion import image_to_numpy
        from sora_ros.live.demo_report import RecordedFuture
        from sora_ros.nodes.live_messages import stamp_ns

        received_ns = time.time_ns()
        origin = stamp_ns(msg.header)
        frames = np.stack([image_to_numpy(image).copy() for image in msg.frames]) if msg.frames else None
        latency = msg.latency.sec * 1e3 + msg.latency.nanosec / 1e6
        with self.lock:
            self.recording.futures.append(RecordedFuture(origin, frames, latency, (received_ns - origin) / 1e6,
                                                         msg.sampler_steps))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name in (WORLD_MODEL_STATUS, WORLD_MODEL_INPUT):
                with self.lock:
                    self.recording.diagnostics.update({kv.key: kv.value for kv in status.values})

    def close(self):
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def main(args: argparse.Namespace) -> int:
    from sora_ros.bench import machine_description
    from sora_ros.launch_runner import LaunchRunner
    from sora_ros.live import demo_report
    from sora_ros.runtime.model_dir import ModelDirError, read_model_info

    model = Path(args.model) if args.model else package_share("sora_ros") / "models" / "default"
    try:
        info = read_model_info(model)
    except ModelDirError as error:
        print(f"sora-ros demo: {error}\n  train and export a model (sora-ros train, sora-ros export) into "
              f"{model}, or pass --model DIR", file=sys.stderr)
        return 2
    if args.video and not Path(args.video).is_file():
        print(f"sora-ros demo: {args.video}: no such video file", file=sys.stderr)
        return 2
    launch_args = {"model": str(model.resolve()), "camera_rate": str(args.camera_rate), "seed": str(args.seed)}
    if args.video:  # footage has no cmd_vel: let the model predict without one
        launch_args.update(use_video="true", video=str(Path(args.video).resolve()), no_command_action="unknown")
    try:
        specs = read_launch_file(package_share("sora_ros") / "launch" / "demo.launch.yaml", launch_args)
    except LaunchFileError as error:
        print(f"sora-ros demo: {error}", file=sys.stderr)
        return 2

    recorder = Recorder(info.image_size, info.dt)
    runner = LaunchRunner(specs)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: runner.request_stop(f"{signal.Signals(number).name} received"))
    start = time.monotonic()
    try:
        runner.start()
        outcome = runner.supervise(args.duration)
    finally:
        runner.shutdown()
        recorder.close()
    print(f"[demo] {'failed' if outcome.exit_code else 'stopped'}: {outcome.reason}", flush=True)
    facts = {"model": f"{info.name}@{info.version} ({model})", "source": args.video or "sim",
             "duration_s": round(time.monotonic() - start, 1), "camera_rate_hz": args.camera_rate,
             "machine": machine_description()}
    summary = demo_report.write(Path(args.out), recorder.recording, facts)
    print(demo_report.text_summary(summary, Path(args.out)))
    if outcome.exit_code:
        return outcome.exit_code
    if not recorder.recording.futures:
        print("sora-ros demo: no ~/futures arrived; see the node output above", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="live demo: sim (or a video) + world model + planner over DDS, then out/demo/",
        description="Launch the simulated robot (or play --video), the world model and the example planner over "
        "real DDS for --duration seconds; write real vs predicted futures per horizon (futures.png), the latency "
        "distribution (latency.png) and counts (summary.json) into --out, and print a summary.",
    )
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds to run (default 60)")
    parser.add_argument("--model", help="model directory (default: the package's models/default)")
    parser.add_argument("--video", help="play this video file as the camera instead of the sim (no planner)")
    parser.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    parser.add_argument("--camera-rate", type=float, default=CAMERA_RATE_HZ, help="camera frames per second")
    parser.add_argument("--seed", type=int, default=0, help="sim world seed")
    parser.set_defaults(func=main)
