"""`sora-ros bench nodes`: the world-model node through real DDS.

Starts the world_model node in its own process (`--output-size` sets its output_size, `--param
NAME:=VALUE` any parameter it declares), publishes
a 15 Hz camera (128x128 rgb8 by default, `--camera-size 640x480` for a robot camera; a drifting
pattern of CAMERA_LOOP_FRAMES frames made beforehand and replayed, so the camera costs what a
driver's copy costs; stamped with wall time) from this process, and measures: the frames that
reached the node, camera stamp -> ~/futures received (p50/p99), the age of the newest futures
a subscriber holds (averaged over time), ~/rollout round trips for 3 candidates x 8 steps with
images, and the node's resident memory after warm-up and at the end. The latency and memory
figures cover `--duration` seconds after the start-up and the ~/rollout calls.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from sora_ros.core.image import DEFAULT_MAX_PIXELS
from sora_ros.core.units import NS_PER_MS
from sora_ros.harness import processes, service_call

CAMERA_SIZE = (128, 128)  # (H, W) by default
WARM_UP_S = 5.0
SERVICE_CALLS = 20
SERVICE_CANDIDATES, SERVICE_HORIZON = 3, 8
STARTUP_TIMEOUT_S = 120.0
RSS_PERIOD_S = 10.0
# The camera replays this many frames of the drifting pattern, made before it starts: made live, a
# 640x480 frame took 72 ms, a whole core at 15 Hz taken from the node under test on 2 CPUs.
CAMERA_LOOP_FRAMES = 32
NODE_STATUS = "world_model: inference"
INPUT_STATUS = "world_model: input"
STAGES = ("convert", "encode", "rollout", "step", "decode", "camera_to_futures")
KIB = 1024
NODE_LOG_LINES = 20
WORLD_MODEL = "sora_ros.nodes.world_model"


# /proc/PID/status fields: the resident total and its parts (heap and anonymous maps; mapped
# files and libraries; shared memory, where DDS shared-memory transport segments show up).
RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of a process in MiB by RSS_FIELDS (from /proc)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in RSS_FIELDS:
            values[name] = int(rest.split()[0]) / KIB
    if "VmRSS" not in values:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return values


def parse_size(text: str) -> tuple[int, int]:
    """"640x480" (width x height, as cameras are named) -> (H, W) = (480, 640).

    Raises:
        argparse.ArgumentTypeError: not two positive integers joined by x, or more pixels than
            the node takes by default (DEFAULT_MAX_PIXELS; it drops larger frames as image_too_large).
    """
    width, x, height = text.lower().partition("x")
    if not (x and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 640x480")
    if int(width) * int(height) > DEFAULT_MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"{text!r}: more than the {DEFAULT_MAX_PIXELS} pixels the node takes "
                                         "(its max_image_pixels; it would drop every frame as image_too_large)")
    return int(height), int(width)


def parse_parameter(text: str) -> str:
    """"sampler_steps:=2" -> itself, checked: a node parameter as `ros2 run ... -p` takes it (the
    node refuses values of the wrong type or range when it starts).

    Raises:
        argparse.ArgumentTypeError: not NAME:=VALUE with NAME a parameter name (letters, digits, _ and .).
    """
    name, separator, value = text.partition(":=")
    if not (separator and value and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:=VALUE, e.g. sampler_steps:=2")
    return text


def mean_age_ms(received_ns: np.ndarray, stamps_ns: np.ndarray) -> float:
    """Time-averaged age (ms) of the newest futures a subscriber holds: between receipts i and
    i + 1 it holds futures i, whose age rises from r_i - s_i to r_{i+1} - s_i. What a planner
    reading the newest futures at a random moment sees; it counts both the latency and the gap
    between futures. NaN for fewer than two receipts.

    Args:
        received_ns: (n,) receipt times, ascending; stamps_ns: (n,) the futures' camera stamps, same clock.
    """
    if len(received_ns) < 2:
        return float("nan")
    r, s = np.asarray(received_ns, np.float64), np.asarray(stamps_ns, np.float64)
    spans = np.diff(r)  # (n - 1,)
    area = np.sum(spans * ((r[:-1] + r[1:]) / 2 - s[:-1]))
    return float(area / spans.sum() / NS_PER_MS)


def _pattern(t: float, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3): stripes that drift with time, so frames differ."""
    height, width = size
    x = np.arange(width)[None, :, None]
    y = np.arange(height)[:, None, None]
    phase = np.array([0.0, 2.0, 4.0])[None, None, :]
    return (127 + 120 * np.sin(0.15 * x + 0.05 * y + 3.0 * t + phase)).astype(np.uint8)


def run(args: argparse.Namespace) -> int:
    """`sora-ros bench nodes`; 1 when the node fails or measures nothing, 130 on Ctrl-C or SIGTERM."""
    import signal

    def interrupt(_signum: int, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # like Ctrl-C: the finally stops the node process
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("bench nodes: interrupted; the node was stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from sora_ros.core.paths import default_model_dir

    model = args.model or str(default_model_dir())
    size = getattr(args, "camera_size", None) or CAMERA_SIZE
    output_size = getattr(args, "output_size", None)  # (H, W) or None: the camera's
    parameters = ["-p", f"model_path:={model}", "-r", "image:=/bench/image"]
    if output_size:
        parameters += ["-p", f"output_size:=[{output_size[0]}, {output_size[1]}]"]
    extra = getattr(args, "param", None) or []  # NAME:=VALUE
    for parameter in extra:
        parameters += ["-p", parameter]
    frames = [_pattern(i / args.camera_rate, size) for i in range(CAMERA_LOOP_FRAMES)]  # before the node starts
    node_log = tempfile.TemporaryFile("w+")  # shown when the node fails
    node = processes.start(processes.node_command(WORLD_MODEL, parameters), stdout=node_log, text=True)
    try:
        return _measure(args, node, node_log, model, size, frames, output_size, extra)
    finally:
        processes.stop([node])


def _measure(args: argparse.Namespace, node, node_log, model: str, size: tuple[int, int], frames: list[np.ndarray],
             output_size: tuple[int, int] | None, extra: list[str]) -> int:
    """`run` once the node process runs (the caller stops it)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.srv import ListParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    from sora_ros.core.machine import machine_description
    from sora_ros.msg import FutureFrames
    from sora_ros.nodes.messages import header, numpy_to_image, stamp_ns
    from sora_ros.srv import Rollout

    # Not sys.argv: rcl would take --param's NAME:=VALUE for a remap of this process. Ctrl-C and
    # SIGTERM raise KeyboardInterrupt in this thread (`run`), not inside the executor's.
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    duration = args.duration
    probe = rclpy.create_node("bench_nodes")
    receipts: list[tuple[int, int]] = []  # (received, camera stamp) ns of each ~/futures
    lock = threading.Lock()

    def on_futures(msg: FutureFrames) -> None:
        with lock:
            receipts.append((time.time_ns(), stamp_ns(msg.header)))

    probe.create_subscription(FutureFrames, "/world_model/futures", on_futures, QoSProfile(depth=20))
    stages: dict[str, str] = {}
    node_input: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name in (NODE_STATUS, INPUT_STATUS):
                with lock:
                    (stages if status.name == NODE_STATUS else node_input).update({kv.key: kv.value for kv in status.values})

    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, QoSProfile(depth=20))
    camera = probe.create_publisher(Image, "/bench/image", qos_profile_sensor_data)
    client = probe.create_client(Rollout, "/world_model/rollout")
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    start = time.monotonic()
    sent = [0]
    stopping = threading.Event()
    camera_lock = threading.Lock()  # a camera tick under way finishes before the teardown starts

    def publish_frame() -> None:
        with camera_lock:
            if stopping.is_set():  # the executor may run one more tick while the node is torn down
                return
            camera.publish(numpy_to_image(frames[sent[0] % CAMERA_LOOP_FRAMES], "rgb8", header(time.time_ns(), "camera")))
            sent[0] += 1

    camera_timer = probe.create_timer(1.0 / args.camera_rate, publish_frame)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not receipts:
            if node.poll() is not None or time.monotonic() > deadline:
                node_log.seek(0)
                print(f"bench nodes: the world_model node produced no ~/futures (exit code {node.poll()}); its "
                      "last output:\n" + "".join(node_log.readlines()[-NODE_LOG_LINES:]), file=sys.stderr)
                return 1
            time.sleep(0.1)
        names = service_call.call(probe.create_client(ListParameters, "/world_model/list_parameters"),
                                  ListParameters.Request(), STARTUP_TIMEOUT_S).result.names
        if unknown := [name for name in (p.partition(":=")[0] for p in extra) if name not in names]:
            print(f"bench nodes: the world_model node has no parameter {', '.join(unknown)} (a node ignores "
                  "unknown ones; README, \"Nodes and the demo\", lists them)", file=sys.stderr)
            return 1
        actions = np.array([[[0.3, w]] * SERVICE_HORIZON for w in (0.8, 0.0, -0.8)], np.float32)  # (3, 8, 2)

        def call(seed: int) -> tuple[float, float, str | None]:
            """(round trip ms, the node's total_ms, None) of an answered call; a refused one's message last."""
            request = Rollout.Request(actions=actions.reshape(-1).tolist(), candidates=SERVICE_CANDIDATES,
                                      horizon=SERVICE_HORIZON, action_dim=2, samples=1, return_images=True, seed=seed)
            sent = time.perf_counter()
            response = service_call.call(client, request, STARTUP_TIMEOUT_S)
            return 1e3 * (time.perf_counter() - sent), response.total_ms, None if response.success else response.message

        try:
            call(0)  # warm-up: the node allocates the buffers of this batch size once
            time.sleep(WARM_UP_S)
            calls = [call(seed) for seed in range(1, SERVICE_CALLS + 1)]
        except service_call.ServiceTimeout as error:
            print(f"bench nodes: {error}", file=sys.stderr)
            return 1
        answered = [c for c in calls if c[2] is None]  # a refusal's round trip is no rollout's
        refusals = sorted({c[2] for c in calls if c[2] is not None})
        service_ms, service_total_ms = [c[0] for c in answered] or [np.nan], [c[1] for c in answered] or [np.nan]
        rss = [rss_mib(node.pid)]  # after every kind of work ran once: later growth would be a leak
        with lock:
            receipts.clear()
            counted_from = (sent[0], int(node_input.get("frames_received", 0)))
        measured_from = time.monotonic()  # `duration` is measured from here, after the warm-up
        while (left := duration - (time.monotonic() - measured_from)) > 0:
            time.sleep(min(RSS_PERIOD_S, left))
            rss.append(rss_mib(node.pid))
        measured_s = time.monotonic() - measured_from
        with lock:
            received, stamps = np.array(receipts, np.int64).reshape(-1, 2).T  # (n,) each
            values = (received - stamps) / NS_PER_MS
            counted = (sent[0] - counted_from[0], int(node_input.get("frames_received", 0)) - counted_from[1])
    finally:
        with camera_lock:
            stopping.set()
        probe.destroy_timer(camera_timer)  # before the executor stops: no publish on a destroyed publisher
        executor.shutdown()
        spinner.join()  # before rclpy shuts down under it
        probe.destroy_node()
        rclpy.try_shutdown()
    if values.size < 2:
        print(f"bench nodes: {values.size} ~/futures arrived in the {measured_s:.0f} s measured after the warm-up: "
              "nothing to measure (a longer --duration, or the node's drops in its /diagnostics)", file=sys.stderr)
        return 1
    print(f"machine: {machine_description()}")
    print(f"model: {model}; camera {size[1]}x{size[0]} rgb8 at {args.camera_rate:g} Hz, predicted frames "
          f"{'at the camera size' if not output_size else f'{output_size[1]}x{output_size[0]}'}, "
          f"{measured_s:.0f} s measured after {measured_from - start:.0f} s of start-up and ~/rollout calls"
          + "".join(f", {parameter}" for parameter in extra))
    print(f"camera frames reaching the node after warm-up: {counted[1]} of {counted[0]} sent "
          f"({100 * counted[1] / max(counted[0], 1):.0f}%, from its /diagnostics)")
    print(f"camera stamp -> ~/futures received: p50 {np.percentile(values, 50):.1f} ms, "
          f"p99 {np.percentile(values, 99):.1f} ms (n={values.size}, {values.size / measured_s:.1f} futures/s); "
          f"age of the newest futures, time average {mean_age_ms(received, stamps):.1f} ms")
    print("in the node, p50/p99 ms: " + ", ".join(
        f"{stage} {stages.get(f'{stage}_ms_p50', '?')}/{stages.get(f'{stage}_ms_p99', '?')}" for stage in STAGES))
    print(f"~/rollout {SERVICE_CANDIDATES} candidates x {SERVICE_HORIZON} steps with images, round trip: "
          f"p50 {np.percentile(service_ms, 50):.1f} ms, p99 {np.percentile(service_ms, 99):.1f} ms "
          f"(in the node: p50 {np.percentile(service_total_ms, 50):.1f} ms; {len(answered)} of {len(calls)} answered)"
          + (f"; refused: {'; '.join(refusals)}" if refusals else ""))
    total = [r["VmRSS"] for r in rss]
    print(f"node RSS every {RSS_PERIOD_S:g} s (MiB): {' '.join(f'{r:.0f}' for r in total)}; "
          f"start {total[0]:.1f}, end {total[-1]:.1f} ({total[-1] - total[0]:+.1f})")
    print("  of which, start -> end (MiB): " + ", ".join(
        f"{field} {rss[0][field]:.1f} -> {rss[-1][field]:.1f}" for field in RSS_FIELDS[1:] if field in rss[0]))
    return 0
