"""`sora-ros eval`: replay bags through the runtime engine and score predictions per horizon.

    sora-ros eval runs/test --image-topic /camera/image_raw --action-topic /cmd_vel \\
        --model models/default --horizons 1,2,4,8 --out out/eval

Offline (the default), every usable step of every bag (one clip every --stride frames) is predicted
by the model, copy-last-frame and optical-flow extrapolation, and each
predicted frame is scored against the real frame at that time. With an action
topic, the model is also run under other clips' actions (action sensitivity). With a model that
has a risk head, an action topic and bags with odometry (--odom-topic), the head's held-out ROC
AUC of "blocked within the next k steps" is reported too, on encoder and on predicted latents.

With --realtime, the bags are instead played at their recorded rate through the live
world_model node over DDS, as on a robot: camera-to-futures latency, drops, and the PSNR
of the futures it published against copy-last.
"""

from __future__ import annotations

import argparse
import dataclasses
import contextlib
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from sora_ros.cli.arguments import action_topic_status, \
    first_missing, occupied_dir_problem, out_dir, out_dir_problem, positive_int, \
    random_seed, record_key, refused, usage_check
from sora_ros.core.patch_grid import ASPECT_POLICIES
from sora_ros.core.requests import MAX_HORIZON, MAX_SAMPLER_STEPS, MAX_SAMPLES
from sora_ros.runtime.model_dir import PRECISIONS

MODEL_NAME = "model"
PREDICTIONS_BAG = "predictions"  # --write-bag's bag in --out
# The risk head's calibration figures (sora_ros.runtime.risk.risk_metrics) model.json's evaluation records.
RISK_CALIBRATION_KEYS = ("mean_encoded", "positive_share", "brier_encoded", "mean_forecast", "positive_share_predicted",
                         "brier_forecast")


def _parse_horizons(text: str) -> list[int]:
    try:
        horizons = sorted({int(h) for h in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"horizons must be comma-separated integers, got {text!r}") from None
    if not horizons or horizons[0] < 1 or horizons[-1] > MAX_HORIZON:
        raise argparse.ArgumentTypeError(f"horizons must be 1..{MAX_HORIZON} (the rollout cap), got {text!r}")
    return horizons


def _terminal_table(summary: dict, horizons: list[int]) -> str:
    def cell(value: float) -> str:
        return "inf" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value:.2f}"

    lines = [f"{'PSNR dB (SSIM)':24s}" + "".join(f"{'h=' + str(h):>16s}" for h in horizons)]
    for name, by_horizon in summary["methods"].items():
        cells = [f"{cell(by_horizon[h]['psnr']['mean'])} ({by_horizon[h]['ssim']['mean']:.3f})" for h in horizons]
        lines.append(f"{name:24s}" + "".join(f"{c:>16s}" for c in cells))
    if MODEL_NAME in summary["skill"]:
        lines.append(f"{'skill vs copy-last':24s}" + "".join(f"{summary['skill'][MODEL_NAME][h]:>+16.3f}" for h in horizons))
    for gaps in summary["action_sensitivity"].values():
        lines.append(f"{'action gap dB':24s}" + "".join(f"{cell(gaps[h]):>16s}" for h in horizons))
    if summary["margins_note"]:
        return "\n".join([*lines, summary["margins_note"]])
    lines.append(f"{'PSNR dB centre / margins':24s}")
    for name, by_horizon in summary["methods"].items():
        cells = [f"{cell(by_horizon[h]['centre_psnr']['mean'])} / {cell(by_horizon[h]['margin_psnr']['mean'])}"
                 for h in horizons]  # fmt: skip
        lines.append(f"{name:24s}" + "".join(f"{c:>16s}" for c in cells))
    return "\n".join(lines)


def record_in_model(model_dir: Path, key: str, metrics: dict) -> None:
    """Store the headline numbers under evaluation[key] in model.json (not hashed: it lists the hashes),
    rewritten atomically: a reader (a node loading the model) never sees half a model.json.

    Raises:
        OSError: model.json cannot be read or replaced.
    """
    from sora_ros.evaluation.report import json_safe
    from sora_ros.runtime.model_dir import MODEL_JSON, write_model_json

    path = model_dir / MODEL_JSON
    model = json.loads(path.read_text())
    evaluation = model.get("evaluation") or {}
    evaluation[key] = json_safe(metrics)
    model["evaluation"] = evaluation
    write_model_json(model_dir, model)


def _record_problem(model_dir: Path | None, key: str, replace: bool) -> str | None:
    """Why --record-in-model KEY would overwrite a recorded evaluation (without --replace-record), or None.
    A model.json that cannot be read is left to the model's load to report."""
    from sora_ros.runtime.model_dir import MODEL_JSON

    if replace or model_dir is None:
        return None
    try:
        recorded = json.loads((model_dir / MODEL_JSON).read_text()).get("evaluation") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if key not in recorded:
        return None
    return (f"--record-in-model {key}: {model_dir / MODEL_JSON} has evaluation.{key} already; add --replace-record "
            f"to overwrite it, or choose another KEY (it has: {', '.join(sorted(recorded))})")


def _report_problem(out: Path, write_bag: bool) -> str | None:
    """Why the report cannot be written into `out` (a folder or an unwritable file where one of its
    files goes, an earlier predictions bag), or None; checked before the scoring, not after it."""
    from sora_ros.evaluation.report import REPORT_FILES

    for name in REPORT_FILES:
        path = out / name
        if path.is_dir():
            return f"{path} is a directory, where the report writes a file; remove it or choose another --out"
        if path.exists() and not os.access(path, os.W_OK):
            return f"{path} is not writable; the report replaces it: choose another --out"
    if write_bag and (out / PREDICTIONS_BAG).exists():
        return (f"{out / PREDICTIONS_BAG} exists (an earlier run's bag?); --write-bag writes a new one: remove it or "
                "choose another --out")  # fmt: skip
    return None


def headline(summary: dict, result, info: dict) -> dict:
    """The numbers a model card shows: PSNR/SSIM per method and horizon (whole frame, moving pixels,
    central square, margins: None with `margins_note` saying why when there were none), skill, action gap."""

    def means(metric: str) -> dict:
        return {n: {h: v[h][metric]["mean"] for h in result.horizons} for n, v in summary["methods"].items()}

    return {
        "command": info["command"],
        "bags": info["bags"],
        "clips": result.clips,
        "clip_cap": summary.get("clip_cap"),
        "horizons": result.horizons,
        "psnr_db": means("psnr"),
        "ssim": means("ssim"),
        "moving_psnr_db": means("moving_psnr"),
        "centre_psnr_db": means("centre_psnr"),
        "margin_psnr_db": None if summary["margins_note"] else means("margin_psnr"),
        "margins_note": summary["margins_note"],
        "vae_reconstruction_psnr_db": summary["vae_reconstruction_psnr"]["mean"],
        "resolution": "camera" if info.get("anchored") else "model",
        "synthesised_share": summary.get("synthesised_share"),
        "skill": summary["skill"].get(MODEL_NAME),
        "action_sensitivity_db": summary["action_sensitivity"].get(MODEL_NAME),
        "risk_auc": {key: summary["risk"][key] for key in ("auc_encoded", "auc_predicted", "auc_forecast", "samples",
                                                           "positive_share")} if summary.get("risk") else None,
        "risk_calibration": {key: summary["risk"].get(key) for key in RISK_CALIBRATION_KEYS}
        if summary.get("risk") else None,
    }


def _risk(engine, args) -> tuple[dict | None, str | None]:
    """The risk head's held-out AUC (sora_ros.evaluation.risk) and why it was not scored (printed,
    and for report.md), each None where it does not apply."""
    from sora_ros.bag.clip_sources import VIDEO_SUFFIXES
    from sora_ros.bag.reading import BagError
    from sora_ros.core.risk import next_steps
    from sora_ros.evaluation.risk import evaluate_risk

    bags = [path for path in args.bags if Path(path).suffix.lower() not in VIDEO_SUFFIXES]
    if not bags:
        return None, None  # video files: no odometry, nothing to say

    def not_scored(why: str, metrics: dict | None = None) -> tuple[dict | None, str]:
        print(f"risk: not scored: {why}")
        return metrics, why

    if engine.risk is None:
        return not_scored("no risk head in this model (sora-ros train-risk adds one)")
    if not args.action_topic:
        return not_scored("its labels need the commands (--action-topic)")
    notes: list[str] = []
    try:
        metrics = evaluate_risk(engine, bags, args.image_topic, args.action_topic, args.odom_topic, notes,
                                args.max_clips, args.aspect_policy)
    except (ValueError, FileNotFoundError, BagError) as error:
        return not_scored(str(error).splitlines()[0])
    for note in notes:
        print(f"note: risk: {note}")
    if metrics is None:
        return not_scored("no clip with a known label in the bags with odometry")
    if metrics["positive_share"] in (0.0, 1.0):  # one class only: every AUC is NaN
        return not_scored(f"all {metrics['samples']} labelled frames are "
                          f"{'blocked' if metrics['positive_share'] else 'free'} (an AUC needs both)", metrics)
    print(f"risk head, blocked within {next_steps(metrics['horizon_steps'])}: ROC AUC {metrics['auc_encoded']:.3f} on "
          f"encoded latents, {metrics['auc_predicted']:.3f} on predicted ones, {metrics['auc_forecast']:.3f} as "
          f"forecast (predicted or held window, the larger) ({metrics['samples']} frames, "
          f"{metrics['positive_share']:.1%} positive)")
    figure = {key: "n/a" if metrics[key] is None else f"{metrics[key]:.4f}" for key in RISK_CALIBRATION_KEYS}
    print(f"risk head calibration: mean probability {figure['mean_encoded']} on encoded latents against "
          f"{figure['positive_share']} blocked, Brier score {figure['brier_encoded']}; forecast "
          f"{figure['mean_forecast']} against {figure['positive_share_predicted']}, Brier {figure['brier_forecast']}")
    return metrics, None


def _as_predicted(clip, pipeline, notes: list[str]):
    """The clip's frames as the model's predictions will come (sora_ros.runtime.pipeline.as_predicted);
    a crop by --aspect-policy is noted once per source.

    Raises:
        FrameRefusedError: footage outside the model's aspect range under aspect_policy "refuse"
            (the message names the source)."""
    import numpy as np

    from sora_ros.runtime.pipeline import FrameRefusedError, as_predicted

    try:
        view_h, view_w = pipeline.camera_view(clip.frames[0]).shape[:2]
        camera_h, camera_w = clip.frames.shape[1:3]
        if (view_h, view_w) == (camera_h, camera_w) and pipeline.info.prediction_size((camera_h, camera_w)) is None:
            return clip  # scored as recorded: the anchored decoder predicts the whole camera frame
        frames = np.stack([as_predicted(pipeline.info, frame, pipeline.aspect_policy) for frame in clip.frames])
    except FrameRefusedError as error:
        raise FrameRefusedError(error.reason, f"{clip.source}: {error}") from None
    cropped = (f"{clip.source}: the {camera_w}x{camera_h} camera is cropped to its centred {view_w}x{view_h} "
               "(--aspect-policy crop: its aspect ratio lies outside the model's range)")
    if (view_h, view_w) != (camera_h, camera_w) and cropped not in notes:
        notes.append(cropped)
    return dataclasses.replace(clip, frames=frames)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """Options that need another one (sora_ros.cli.arguments.usage_check)."""
    if args.write_bag and not args.out and not args.realtime:  # with --realtime, main says it is offline-only
        return "--write-bag writes OUT/predictions: give --out too"
    if args.replace_record and not args.record_in_model:
        return "--replace-record applies to --record-in-model KEY"
    return None


def main(args: argparse.Namespace) -> int:
    if args.sim_time and not args.realtime:
        print("sora-ros eval: --sim-time applies to --realtime only", file=sys.stderr)
        return 2
    if args.out:  # before the work, not after it
        problem = out_dir_problem(args.out) or occupied_dir_problem(
            args.out, args.force, "write this report there (files of the same names are replaced)")
        if refused("eval", "--out", problem):
            return 2
    if args.realtime:
        offline_only = [flag for flag, given in (("--write-bag", args.write_bag), ("--record-in-model", args.record_in_model),
                                                 ("--max-clips", args.max_clips),
                                                 ("--sampler-steps", args.sampler_steps)) if given]  # fmt: skip
        if offline_only:
            print(f"sora-ros eval: {', '.join(offline_only)} apply to the offline evaluation, not to --realtime",
                  file=sys.stderr)  # fmt: skip
            return 2
        from sora_ros.harness.realtime import run

        return run(args)  # its --out keeps the node's log, which a failure's message points to
    problem = _report_problem(args.out, args.write_bag) if args.out else None
    if args.record_in_model:
        problem = problem or _record_problem(args.model, args.record_in_model, args.replace_record)
    if problem:
        print(f"sora-ros eval: {problem}", file=sys.stderr)
        return 2
    created = first_missing(args.out) if args.out else None
    status = 1
    try:
        status = _offline(args)
    finally:
        if status != 0 and created is not None:  # a failed run leaves no folder of its own behind
            shutil.rmtree(created, ignore_errors=True)
    return status


def _offline(args: argparse.Namespace) -> int:
    """The offline evaluation, its arguments checked: 0 when scored and reported, 1 or 2 otherwise."""
    import numpy as np
    from rosbags.rosbag2 import WriterError

    from sora_ros.bag.reading import BagError

    status = action_topic_status("eval", args.bags, args.action_topic)
    if status is not None:
        return status
    from sora_ros.bag.video import VideoError
    from sora_ros.bag.clip_sources import model_clips
    from sora_ros.bag.clips import ClipReport
    from sora_ros.evaluation.prediction_bag import PredictionBag
    from sora_ros.evaluation.predictors import ModelPredictor, baseline_predictors
    from sora_ros.evaluation.metrics import summarize
    from sora_ros.evaluation.report import write_report
    from sora_ros.evaluation.scoring import evaluate, summarize_evaluation
    from sora_ros.evaluation.spread import SpreadClips, cap_note, sources_of
    from sora_ros.runtime.engine import NonFiniteOutputError, WorldModelEngine
    from sora_ros.runtime.model_dir import ModelDirError
    from sora_ros.runtime.pipeline import RolloutSettings, WorldModelPipeline

    try:
        engine = WorldModelEngine(args.model, providers=args.providers.split(","), precision=args.dynamics_precision)
    except (ModelDirError, ValueError) as error:  # ValueError: no usable execution provider
        print(f"sora-ros eval: {error}", file=sys.stderr)
        return 1
    model = engine.info
    k, lookahead = model.context_frames, max(args.horizons)
    notes: list[str] = []
    report = ClipReport()

    # With an anchored decoder, predictions come at the camera's resolution: score them there;
    # without, at the model input of the camera's grid.
    def clips_of(paths: list) -> Iterator:
        return model_clips(paths, args.image_topic, args.action_topic, dt=model.dt, length=k + lookahead, size=None,
                           action_names=model.action_names, stride=args.stride, notes=notes, report=report)

    pipeline = WorldModelPipeline(engine, aspect_policy=args.aspect_policy)
    pipeline.settings = RolloutSettings(sampler_steps=args.sampler_steps)
    model_predictor = ModelPredictor(pipeline, lookahead, args.samples, args.seed)
    predictors = {MODEL_NAME: model_predictor, **baseline_predictors(lookahead)}
    conditioned = model.action_dim > 0 and args.action_topic
    bag_path = Path(args.out) / PREDICTIONS_BAG if args.out and args.write_bag else None
    spread = None
    try:
        if args.max_clips:  # clips in turn from every source: the cap samples them all, not the first bag's start
            spread = SpreadClips(sources_of(args.bags), lambda source: clips_of([source]))
        read = clips_of(args.bags) if spread is None else spread
        clips = (_as_predicted(clip, pipeline, notes) for clip in read)
        with PredictionBag(bag_path, args.horizons, k) if bag_path else contextlib.nullcontext() as bag:
            result = evaluate(clips, predictors, context_length=k, horizons=args.horizons,
                              shuffle_actions_of=MODEL_NAME if conditioned else None,
                              max_clips=args.max_clips, seed=args.seed, on_clip=bag.add if bag else None)  # fmt: skip
    except (ValueError, FileNotFoundError, BagError, VideoError, NonFiniteOutputError, WriterError) as error:
        print(f"sora-ros eval: {error}", file=sys.stderr)
        return 1
    finally:
        if spread is not None:
            spread.close()  # the sources the cap stopped in report what they read (notes) now
    for note in notes:
        print(f"note: {note}")
    if result.clips == 0:
        print(f"sora-ros eval: no clip of {k} + {lookahead} frames at dt {model.dt:g} s in "
              f"{', '.join(map(str, args.bags))}: {report.cause()}", file=sys.stderr)  # fmt: skip
        return 1
    summary = summarize_evaluation(result)
    summary["clip_cap"] = None if spread is None else spread.coverage(args.max_clips)  # None: no source left out
    summary["risk"], summary["risk_not_scored"] = _risk(engine, args)
    summary["vae_reconstruction_psnr"] = summarize(model_predictor.reconstruction_psnr)
    summary["synthesised_share"] = {h: (float(np.mean(model_predictor.synthesised_share[h]))
                                        if model_predictor.synthesised_share[h] else None) for h in result.horizons}
    command = " ".join(["sora-ros eval", *sys.argv[2:]]) if sys.argv[1:2] == ["eval"] else "sora-ros eval"
    info = {"command": command, "model": model.name, "model_version": model.version,
            "model_files_sha256": model.files, "bags": sorted(result.sources), "image_topic": args.image_topic,
            "action_topic": args.action_topic, "dt": model.dt, "notes": notes,
            "anchored": engine.anchor is not None,
            "sampler_steps": args.sampler_steps or model.sampler_steps,
            "dynamics_precision": engine.precision}  # fmt: skip
    print(_terminal_table(summary, result.horizons))
    if summary["clip_cap"]:
        print(cap_note(summary["clip_cap"]))
    if conditioned and summary["action_clips"] < result.clips:
        print(f"action gap: on the {summary['action_clips']} of {result.clips} clips with {args.action_topic} "
              "recorded; the rest have no actions to shuffle" if summary["action_clips"] else
              f"no action gap: none of the {result.clips} scored clips has {args.action_topic} recorded")
    print(f"VAE reconstruction of the context frames: {summary['vae_reconstruction_psnr']['mean']:.2f} dB PSNR")
    if engine.anchor is not None:
        print("anchored decoding at the camera's resolution; synthesised share of pixels: "
              + ", ".join(f"h={h} {v:.3f}" for h, v in summary["synthesised_share"].items() if v is not None))
    if args.out:
        header = f"# Evaluation of {model.name} {model.version}\n\n`{command}`"
        try:
            write_report(Path(args.out), summary, result, info, header)
        except OSError as error:  # checked before the work; a full disk, or a change since
            print(f"sora-ros eval: cannot write the report into {args.out}: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.out}/ (metrics.json, report.md, quality_vs_horizon.png, examples.png"
              + (", predictions/ bag)" if bag_path else ")"))
    if args.record_in_model:
        try:
            record_in_model(Path(args.model), args.record_in_model, headline(summary, result, info))
        except OSError as error:
            print(f"sora-ros eval: cannot record in {Path(args.model) / 'model.json'}: {error}", file=sys.stderr)
            return 1
        print(f"recorded under evaluation.{args.record_in_model} in {Path(args.model) / 'model.json'}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.core.paths import default_model_dir

    parser = subparsers.add_parser(
        "eval",
        help="score the model's predictions on bags per horizon, against copy-last and optical flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bags", nargs="+", help="rosbag2 bags (MCAP/sqlite3), folders of them, or video files")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="camera topic (default %(default)s)")
    parser.add_argument("--action-topic",
                        help="Twist/TwistStamped topic the model is conditioned on (e.g. /cmd_vel); refused when no "
                        "bag has it; bags (and videos) without it are scored with the actions unknown and left out "
                        "of the action gap")  # fmt: skip
    parser.add_argument("--odom-topic", default="/odom",
                        help="nav_msgs/Odometry topic for the risk head's labels (default %(default)s)")
    parser.add_argument("--model", type=Path, default=default_model_dir(),
                        help="model directory (default: the shipped default model)")  # fmt: skip
    parser.add_argument("--horizons", type=_parse_horizons, default=[1, 2, 4, 8], help="steps ahead to score (default 1,2,4,8)")
    parser.add_argument("--out", type=out_dir, help="write metrics.json, report.md and pictures here: a new or empty "
                        "directory (with --force, any)")
    parser.add_argument("--force", action="store_true",
                        help="write into an --out that holds files (an earlier report's are replaced); without it, "
                        "such an --out is refused")
    parser.add_argument("--stride", type=positive_int, default=4,
                        help="frames between the starts of scored clips (default 4)")
    parser.add_argument("--max-clips", type=positive_int,
                        help="score at most this many clips (at least 1), taken in turn from every bag and video "
                        "(the first clip of each, then the second of each, ...: each source from its start, one "
                        "clip every --stride frames), so that every source is sampled; when the cap is reached, "
                        "the printout and report.md say how many clips came from which source and which sources "
                        "were not read. The risk head's clips are capped apart, the same way")
    parser.add_argument("--samples", type=int, default=1, choices=range(1, MAX_SAMPLES + 1), metavar=f"1..{MAX_SAMPLES}",
                        help="model samples per prediction; their mean is scored")
    parser.add_argument("--seed", type=random_seed, default=0, help="sampler noise and action shuffling")
    parser.add_argument("--sampler-steps", type=int, default=0, choices=range(0, MAX_SAMPLER_STEPS + 1),
                        metavar=f"0..{MAX_SAMPLER_STEPS}",
                        help="Euler steps per predicted frame (default 0: the model's, model.json sampler.steps); "
                        "fewer are faster, at the quality this reports")
    parser.add_argument("--aspect-policy", choices=ASPECT_POLICIES, default="refuse",
                        help="footage whose aspect ratio lies outside the model's range: refuse it (default), or "
                        "crop it into the range (what a square-input model of older releases did to every camera)")
    parser.add_argument("--providers", default="CPU", help="ONNX Runtime providers in order, e.g. TensorRT,CUDA,CPU")
    parser.add_argument("--dynamics-precision", choices=PRECISIONS, default="float32",
                        help="dynamics graphs to evaluate: float32, or the model's int8 ones (`sora-ros quantize`)")
    parser.add_argument("--write-bag", action="store_true",
                        help="with --out: also write OUT/predictions, an MCAP bag of real and predicted frames per horizon")
    parser.add_argument("--realtime", action="store_true",
                        help="replay the bags through the live world_model node over DDS at the recorded rate, for "
                        "timing (latency, drops) and the PSNR of what it published; see sora_ros/harness/realtime.py")
    parser.add_argument("--sim-time", action="store_true",
                        help="with --realtime: keep the bags' stamps, publish /clock from the bag's time and run the "
                        "node with use_sim_time:=true (as `ros2 bag play --clock` with a node on sim time) instead "
                        "of restamping onto the wall clock; latency is then measured in sim time")
    parser.add_argument("--record-in-model", metavar="KEY", type=record_key,
                        help="also store the headline numbers in model.json under evaluation.KEY (letters, digits, "
                        "_ . -); a KEY it has already is refused before scoring, unless --replace-record")
    parser.add_argument("--replace-record", action="store_true",
                        help="with --record-in-model: overwrite the evaluation recorded under KEY")
    parser.set_defaults(func=main, check_usage=usage_check(parser, _usage_problem))
