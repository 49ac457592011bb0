"""`sora-ros eval --realtime`: replay bags through the live world_model node over DDS, at the
recorded rate, for timing.

The node runs in its own process, exactly as on a robot. This process plays each bag's
camera (and action) messages with the bag player (harness/player.py, `sora-ros bag play`) at
their recorded intervals, restamped onto the wall clock so
that "camera stamp -> ~/futures received" is a true latency, and records what the node
publishes. Between bags it pauses long enough for the node's context to empty, so no rollout
mixes two recordings. The report is the live demo's: PSNR per horizon against copy-last on
the frames the node predicted, latency distributions, counts of published and dropped work.

With `--sim-time` the bags keep their stamps instead: the player publishes /clock from the
bag's time (`sora-ros bag play --clock`), and the node and the recorder run with
use_sim_time:=true, as a node does under `ros2 bag play --clock`. Latency is then
measured on the sim clock, to the resolution of /clock (CLOCK_HZ).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sora_ros.harness import processes

NAMESPACE = "/sora_eval"
CAMERA_TOPIC = f"{NAMESPACE}/camera/image"
ACTION_TOPIC = f"{NAMESPACE}/cmd_vel"
FUTURES_TOPIC = f"{NAMESPACE}/world_model/futures"
STARTUP_TIMEOUT_S = 120.0
# After the last message: time for the last rollouts and one more /diagnostics.
DRAIN_S = 2.0
# /clock rate with --sim-time: the resolution of sim-time latencies.
CLOCK_HZ = 100.0


class ReplayError(Exception):
    """The replay cannot start or the node failed; the message says why."""


def _check_camera_shapes(bags: list[Path], image_topic: str, check: Callable) -> None:
    """Run `check` (uint8 (H0, W0, 3) RGB -> anything; e.g. the model's as_predicted, which raises
    AspectError) on the first decodable image of each bag, so a camera the model refuses fails
    before a replay, naming the bag.

    Raises:
        ReplayError: `check` raised AspectError."""
    from sora_ros.bag.reading import BagReader
    from sora_ros.core.image import ImageConversionError, compressed_to_rgb, image_to_rgb
    from sora_ros.core.patch_grid import AspectError

    for bag in bags:
        for message in BagReader(bag).messages([image_topic]):
            try:
                rgb = compressed_to_rgb(message.msg) if hasattr(message.msg, "format") else image_to_rgb(message.msg)
            except ImageConversionError:
                continue  # the node counts it; the next image tells the shape
            try:
                check(rgb)
            except AspectError as error:
                raise ReplayError(f"{bag}: {error}") from None
            break


def _topic_types(bags: list[Path], image_topic: str, action_topic: str | None) -> tuple[str, str | None]:
    """The image and action message types, the same in every bag.

    Raises:
        BagError: a topic is missing or of the wrong type. ReplayError: typed differently across bags.
    """
    from sora_ros.bag.clips import ACTION_TYPES, IMAGE_TYPES, check_topic_type
    from sora_ros.bag.reading import BagReader

    wanted = {image_topic: IMAGE_TYPES, **({action_topic: ACTION_TYPES} if action_topic else {})}
    found: dict[str, set[str]] = {}
    for bag in bags:
        reader = BagReader(bag)
        reader.require(wanted)
        for topic, allowed in wanted.items():
            check_topic_type(reader, topic, allowed)
            found.setdefault(topic, set()).add(reader.topics[topic].msgtype)
    for topic, types in found.items():
        if len(types) > 1:
            raise ReplayError(f"{topic} has different types in different bags ({', '.join(sorted(types))})")
    return next(iter(found[image_topic])), next(iter(found[action_topic])) if action_topic else None


def _start_node(model: Path, horizon: int, camera_topic: str, compressed: bool, stamped: bool, conditioned: bool,
                providers: str, log, sim_time: bool = False, aspect_policy: str = "refuse",
                precision: str = "float32") -> subprocess.Popen:
    image_remap = "image/compressed" if compressed else "image"
    params = {"model_path": str(model), "horizon": str(horizon), "compressed": str(compressed).lower(),
              "cmd_vel_type": "twist_stamped" if stamped else "twist", "providers": f"[{providers}]",
              # Without recorded commands, predict with the action unknown rather than "stand still".
              "no_command_action": "zero" if conditioned else "unknown",
              "use_sim_time": str(sim_time).lower(), "aspect_policy": aspect_policy,
              "dynamics_precision": precision}  # fmt: skip
    ros_args = ["-r", f"__ns:={NAMESPACE}", "-r", f"{image_remap}:={camera_topic}", "-r", f"cmd_vel:={ACTION_TOPIC}"]
    for name, value in params.items():
        ros_args += ["-p", f"{name}:={value}"]
    return processes.start(processes.node_command("sora_ros.nodes.world_model", ros_args), stdout=log)


def _wait_until_active(node: subprocess.Popen, recorder, sim_time: bool = False) -> None:
    """Until the node reports itself active. On sim time its /diagnostics timer waits for /clock,
    which starts only with playback: ask its lifecycle service (~/get_state) instead."""
    client = None
    if sim_time:
        from lifecycle_msgs.srv import GetState

        client = recorder.node.create_client(GetState, f"{NAMESPACE}/world_model/get_state")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while (_lifecycle_state(client) if client else recorder.lifecycle_state()) != "active":
            if node.poll() is not None:
                raise ReplayError(f"the world_model node exited with code {node.returncode} before it was active")
            if time.monotonic() > deadline:
                raise ReplayError(f"the world_model node was not active within {STARTUP_TIMEOUT_S:g} s")
            time.sleep(0.1)
    finally:
        if client is not None:
            recorder.node.destroy_client(client)


def _lifecycle_state(client) -> str | None:
    """The node's lifecycle state label through ~/get_state, None while it does not answer."""
    from lifecycle_msgs.srv import GetState

    if not client.service_is_ready():
        return None
    future = client.call_async(GetState.Request())
    deadline = time.monotonic() + 2.0
    while not future.done() and time.monotonic() < deadline:  # the recorder's executor spins it
        time.sleep(0.01)
    return future.result().current_state.label if future.done() and future.result() else None


def _check_alive(node: subprocess.Popen, bag: Path) -> None:
    """Raises ReplayError when the world_model node has exited."""
    if node.poll() is not None:
        raise ReplayError(f"the world_model node exited with code {node.returncode} during {bag.name}")


def run(args: argparse.Namespace) -> int:
    """The --realtime path of `sora-ros eval`; the arguments are eval's. Ctrl-C stops the
    replay early and still reports what was recorded."""
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print("sora-ros eval --realtime needs ROS 2 (rclpy): run `make setup`, or see `sora-ros doctor`", file=sys.stderr)
        return 2

    from sora_ros.bag import messages as m
    from sora_ros.bag.reading import BagError, find_bags
    from sora_ros.core.machine import machine_description
    from sora_ros.evaluation import live_report
    from sora_ros.harness.player import BagPlayer, PlayError
    from sora_ros.harness.recorder import FutureRecorder
    from sora_ros.runtime.model_dir import ModelDirError, read_model_info
    from sora_ros.runtime.pipeline import as_predicted

    try:
        info = read_model_info(args.model)
        bags = find_bags(args.bags)  # videos too raise FileNotFoundError: --realtime replays bags only
        image_type, action_type = _topic_types(bags, args.image_topic, args.action_topic)
        _check_camera_shapes(bags, args.image_topic, partial(as_predicted, info, aspect_policy=args.aspect_policy))
    except (ModelDirError, BagError, ReplayError, FileNotFoundError) as error:
        print(f"sora-ros eval --realtime: {error}", file=sys.stderr)
        return 1
    compressed = image_type == m.COMPRESSED_IMAGE
    conditioned = info.action_dim > 0 and action_type is not None
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sora_eval_realtime_"))
    out.mkdir(parents=True, exist_ok=True)
    node_log_path = out / "world_model_node.log"
    camera_topic = f"{CAMERA_TOPIC}/compressed" if compressed else CAMERA_TOPIC
    recorder = FutureRecorder(partial(as_predicted, info, aspect_policy=args.aspect_policy), info.dt, camera_topic,
                              FUTURES_TOPIC, compressed=compressed, node_name="eval_realtime",
                              sim_time=args.sim_time)  # fmt: skip
    remap = {args.image_topic: camera_topic, **({args.action_topic: ACTION_TOPIC} if conditioned else {})}
    try:
        player = BagPlayer(recorder.node, bags, topics=list(remap), remap=remap, restamp=not args.sim_time,
                           clock_hz=CLOCK_HZ if args.sim_time else 0.0)  # fmt: skip
    except PlayError as error:
        recorder.close()
        print(f"sora-ros eval --realtime: {error}", file=sys.stderr)
        return 1
    start = time.monotonic()
    notes: list[str] = []
    with open(node_log_path, "w") as node_log:
        node = _start_node(args.model, max(args.horizons), camera_topic, compressed, action_type == m.TWIST_STAMPED,
                           conditioned, args.providers, node_log, sim_time=args.sim_time,
                           aspect_policy=args.aspect_policy, precision=args.dynamics_precision)  # fmt: skip
        try:
            _wait_until_active(node, recorder, args.sim_time)
            print(f"replaying {len(bags)} bag(s) at the recorded rate through the world_model node ...", flush=True)
            for index, bag in enumerate(bags):
                if index:  # an empty context before the next recording
                    time.sleep((info.context_frames + 1) * info.dt)
                before = sum(player.published.values())
                stopped = player.play(bag, check=lambda bag=bag: _check_alive(node, bag))
                count = sum(player.published.values()) - before
                print(f"  {bag.name}: {count} messages" + (f" (stopped early: {stopped})" if stopped else ""),
                      flush=True)  # fmt: skip
                if stopped:
                    notes.append(f"{bag.name}: {stopped}")
            time.sleep(max(args.horizons) * info.dt + DRAIN_S)
        except (BagError, ReplayError) as error:
            print(f"sora-ros eval --realtime: {error}; the node's output is in {node_log_path}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            notes.append("stopped early by Ctrl-C")
            print("\nstopped by Ctrl-C; reporting what was recorded", flush=True)
        finally:
            processes.stop([node])
            recorder.close()
    facts = {"mode": "realtime", "clock": "sim time (/clock from the bags)" if args.sim_time else "wall clock (restamped)", "model": f"{info.name}@{info.version} ({args.model})",
             "source": ", ".join(bag.name for bag in bags), "bags": [str(bag) for bag in bags],
             "messages_published": sum(player.published.values()), "duration_s": round(time.monotonic() - start, 1),
             "notes": notes, "machine": machine_description(),
             # node clock - header stamp at the node, as its last /diagnostics said: near 0 when the clocks agree
             "node_stamp_age_s_max": recorder.recording.diagnostics.get("stamp_age_s_max")}  # fmt: skip
    summary = live_report.write(out, recorder.recording, facts)
    print(live_report.text_summary(summary, out, title="eval --realtime"))
    if not recorder.recording.futures:
        print(f"sora-ros eval --realtime: the node published no ~/futures; its output is in {node_log_path}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
