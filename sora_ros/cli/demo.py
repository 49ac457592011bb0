"""`sora-ros demo`: the live demo. Launches launch/demo.launch.yaml (the simulated robot, or a
video file, the world model and the example planner) over real DDS for a set time, records
the camera and ~/futures, then writes out/demo/ and prints a summary. The world model's
outputs (~/futures, ~/latents, ~/predicted/image, ~/comparison/image) are also recorded into
out/demo/outputs/, an MCAP bag to open in Foxglove.

    sora-ros demo                          # 60 s of the simulated robot
    sora-ros demo --video clip.mp4 --duration 30
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from functools import partial
from pathlib import Path

from sora_ros.bag.video import MAX_PLAY_FPS
from sora_ros.cli.arguments import non_negative_float, out_dir, out_dir_problem, parameter_value, positive_float, \
    refused, usage_check
from sora_ros.core.patch_grid import ASPECT_POLICIES
from sora_ros.core.paths import PACKAGE, default_model_dir, package_share

DEFAULT_DURATION_S = 60.0
CAMERA_RATE_HZ = 15.0
CAMERA_TOPIC = "/camera/image_raw"
WORLD_MODEL = "/world_model"
FUTURES_TOPIC = f"{WORLD_MODEL}/futures"
PLANNER_NODE = "/planner"
PLANNER_PLAN_TOPIC = f"{PLANNER_NODE}/plan"  # the MPC's chosen future, one per decision
# The planner's parameters the summary reports, as the running node has them (set by the launch file
# or its defaults).
PLANNER_SETTINGS = ("candidates", "horizon", "plan_rate", "risk_weight")
OUTPUTS_BAG = "outputs"


def _camera_rate_problem(args: argparse.Namespace) -> str | None:
    """--camera-rate outside the range of the camera it sets (sora_ros.cli.arguments.usage_check): the
    video camera's `rate` with --video (0: the video's own frame times), else the sim's `rate`."""
    from sora_ros.sim.parameters import SIM_SPECS

    if args.camera_rate is None:
        return None
    sim = SIM_SPECS["rate"]
    low, high, camera = (0.0, MAX_PLAY_FPS, "with --video (0: the video's own frame times)") if args.video else \
        (sim.low, sim.high, "without --video (the sim's camera)")
    if not low <= args.camera_rate <= high:
        return f"--camera-rate must be from {low:g} to {high:g} {camera}, got {args.camera_rate:g}"
    return None


def main(args: argparse.Namespace) -> int:
    from sora_ros.core.machine import machine_description
    from sora_ros.evaluation import live_report
    from sora_ros.harness.launch_file import LaunchFileError, read_launch_file
    from sora_ros.harness.bag_recorder import WORLD_MODEL_OUTPUTS, TopicRecorder
    from sora_ros.harness.launch_runner import LaunchRunner
    from sora_ros.harness.recorder import FutureRecorder
    from sora_ros.runtime.model_dir import ModelDirError, read_model_info
    from sora_ros.runtime.pipeline import as_predicted

    if refused("demo", "--out", out_dir_problem(args.out)):  # before the nodes run, not when the summary is written
        return 2
    model = Path(args.model) if args.model else default_model_dir()
    try:
        info = read_model_info(model)
    except ModelDirError as error:
        print(f"sora-ros demo: {error}\n  train and export a model (sora-ros train, sora-ros export) into "
              f"{model}, or pass --model DIR", file=sys.stderr)
        return 2
    if args.video and not Path(args.video).is_file():
        print(f"sora-ros demo: {args.video}: no such video file", file=sys.stderr)
        return 2
    # The sim renders at --camera-rate; a video plays at its own frame times unless --camera-rate is given.
    camera_rate = args.camera_rate or (0.0 if args.video else CAMERA_RATE_HZ)
    launch_args = {"model": str(model.resolve()), "camera_rate": str(camera_rate), "seed": str(args.seed),
                   "aspect_policy": args.aspect_policy}
    if args.video:  # footage has no cmd_vel: let the model predict without one
        from sora_ros.bag.video import VideoError, VideoReader

        try:
            fps = VideoReader(args.video).fps
        except VideoError as error:
            print(f"sora-ros demo: {error}", file=sys.stderr)
            return 2
        camera_timing = f"{camera_rate:g} Hz (--camera-rate)" if camera_rate else \
            "the video's own frame times" + (f" ({fps:g} fps on average)" if fps else "")
        launch_args.update(use_video="true", video=str(Path(args.video).resolve()), no_command_action="unknown")
    else:
        camera_timing = f"{camera_rate:g} Hz" + ("" if args.camera_rate else " (default)")
    names = [name for name, _ in args.launch_arg]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        print(f"sora-ros demo: --launch-arg {', '.join(repeated)} given more than once; give each once", file=sys.stderr)
        return 2
    own = sorted(set(launch_args) & set(names))
    if own:
        print(f"sora-ros demo: --launch-arg {', '.join(own)}: set by the demo's own options (--model, --camera-rate, "
              "--seed, --aspect-policy, --video); use those", file=sys.stderr)
        return 2
    launch_args.update(args.launch_arg)  # undeclared names are refused by read_launch_file
    try:
        specs = read_launch_file(package_share(PACKAGE) / "launch" / "demo.launch.yaml", launch_args)
    except LaunchFileError as error:
        print(f"sora-ros demo: {error}", file=sys.stderr)
        return 2

    recorder = FutureRecorder(partial(as_predicted, info, aspect_policy=args.aspect_policy), info.dt, CAMERA_TOPIC,
                              FUTURES_TOPIC, node_name="demo_recorder")
    plans, settings = _plan_meter(recorder.node) if not args.video else (None, None)
    outputs_bag = Path(args.out) / OUTPUTS_BAG
    shutil.rmtree(outputs_bag, ignore_errors=True)  # the previous run's
    outputs_bag.parent.mkdir(parents=True, exist_ok=True)
    outputs = TopicRecorder(recorder.node, outputs_bag, [f"{WORLD_MODEL}/{name}" for name in WORLD_MODEL_OUTPUTS])
    runner = LaunchRunner(specs)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: runner.request_stop(f"{signal.Signals(number).name} received"))
    start = time.monotonic()
    try:
        runner.start()
        outcome = runner.supervise(args.duration)
    finally:
        runner.shutdown()
        outputs.close()
        recorder.close()
    print(f"[demo] {'failed' if outcome.exit_code else 'stopped'}: {outcome.reason}", flush=True)
    facts = {"model": f"{info.name}@{info.version} ({model})", "source": args.video or "sim",
             "duration_s": round(time.monotonic() - start, 1), "camera_rate_hz": camera_rate or None,
             "camera_timing": camera_timing, "launch_args": dict(args.launch_arg),
             "machine": machine_description()}
    if plans is not None:
        facts["planner"] = {"settings": settings or None, **_plan_summary(plans)}
    summary = live_report.write(Path(args.out), recorder.recording, facts)
    print(live_report.text_summary(summary, Path(args.out)))
    if plans is not None:
        print(_planner_line(facts["planner"]))
    print(f"the world model's outputs, for Foxglove: {outputs_bag} ("
          + ", ".join(f"{name} {outputs.counts[f'{WORLD_MODEL}/{name}']}" for name in WORLD_MODEL_OUTPUTS) + ")")
    if outcome.exit_code:
        return outcome.exit_code
    if not recorder.recording.futures:
        print("sora-ros demo: no ~/futures arrived; see the node output above", file=sys.stderr)
        return 1
    return 0


def _plan_meter(node) -> tuple[list[tuple[float, float]], dict]:
    """Subscribe `node` (spun elsewhere) to the planner's chosen futures. The list fills with
    (monotonic s of arrival, the ~/rollout call's latency ms) per decision; the dict with
    PLANNER_SETTINGS as the running planner has them, asked of its parameter services at its first
    decision (it is up then; the demo stops it before the summary), empty until it answers."""
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    from sora_ros.core.units import NS_PER_MS, ros_time_ns
    from sora_ros.msg import FutureFrames

    plans: list[tuple[float, float]] = []
    settings: dict = {}
    client = AsyncParameterClient(node, PLANNER_NODE)

    def answered(future) -> None:
        if future.result() is not None:
            settings.update(zip(PLANNER_SETTINGS, map(parameter_value_to_python, future.result().values)))

    def on_plan(msg: FutureFrames) -> None:
        if not plans:
            client.get_parameters(list(PLANNER_SETTINGS), answered)
        plans.append((time.monotonic(), ros_time_ns(msg.latency) / NS_PER_MS))

    node.create_subscription(FutureFrames, PLANNER_PLAN_TOPIC, on_plan, 10)
    return plans, settings


def _plan_summary(plans: list[tuple[float, float]]) -> dict:
    """Decisions, their rate from the first to the last, and the median ~/rollout latency."""
    import numpy as np

    times = [t for t, _ in plans]
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    return {"decisions": len(plans), "decisions_per_s": round(rate, 2),
            "rollout_ms_p50": round(float(np.median([ms for _, ms in plans])), 1) if plans else None}


def _planner_line(planner: dict) -> str:
    """The summary's planner line: the settings it ran with (`_plan_meter`'s), then what it did."""
    settings = planner["settings"]
    ran = "settings not read" if settings is None else (
        f"{settings['candidates']} candidates x {settings['horizon']} steps at {settings['plan_rate']:g} Hz, "
        f"risk weight {settings['risk_weight']:g}")
    did = "no decision" if not planner["decisions"] else (
        f"{planner['decisions']} decisions ({planner['decisions_per_s']} per s while deciding), its ~/rollout "
        f"calls p50 {planner['rollout_ms_p50']} ms")  # no decision: no latency either
    return f"  planner: {ran}; {did}"


def _launch_argument(text: str) -> tuple[str, str]:
    name, separator, value = text.partition(":=")
    if not (separator and name and value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:=VALUE with both parts, e.g. planner_candidates:=32")
    return name, value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.sim.parameters import SIM_SPECS

    rate = SIM_SPECS["rate"]
    parser = subparsers.add_parser(
        "demo",
        help="live demo: sim (or a video) + world model + planner over DDS, then out/demo/",
        description="Launch the simulated robot (or play --video), the world model and the example planner over "
        "real DDS for --duration seconds; write real vs predicted futures per horizon (futures.png), the latency "
        "distribution (latency.png), counts (summary.json) and an MCAP bag of the world model's outputs (outputs/) "
        "into --out, and print a summary.",
    )
    parser.add_argument("--duration", type=positive_float, default=DEFAULT_DURATION_S,
                        help="seconds to run, above 0 (default 60)")
    parser.add_argument("--model", help="model directory (default: the package's models/default)")
    parser.add_argument("--video", help="play this video file as the camera instead of the sim (no planner)")
    parser.add_argument("--out", type=out_dir, default="out/demo", help="output directory (default out/demo)")
    # The range depends on --video (which may come later on the line): checked after parsing.
    parser.add_argument("--camera-rate", type=non_negative_float,
                        help=f"camera frames per second: the sim's, {rate.low:g} to {rate.high:g} (default "
                        f"{CAMERA_RATE_HZ:g}); with --video, 0 to {MAX_PLAY_FPS:g} (default, or 0: the video's own "
                        "frame times)")
    parser.add_argument("--seed", type=parameter_value(SIM_SPECS["seed"]), default=0,
                        help=f"sim world seed, 0 to {SIM_SPECS['seed'].high} (default 0)")
    parser.add_argument("--launch-arg", type=_launch_argument, action="append", default=[], metavar="NAME:=VALUE",
                        help="an argument of launch/demo.launch.yaml, as `ros2 launch sora_ros demo.launch.yaml` "
                        "takes it (a number with a dot is a float, without one an integer); repeatable, e.g. "
                        "--launch-arg planner_candidates:=32 --launch-arg plan_rate:=4.0")
    parser.add_argument("--aspect-policy", choices=ASPECT_POLICIES, default="refuse",
                        help="a camera (video) outside the model's aspect range: refuse its frames (default) or crop "
                        "it into the range")
    parser.set_defaults(func=main, check_usage=usage_check(parser, _camera_rate_problem))
