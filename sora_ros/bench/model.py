"""`sora-ros bench model`: encode, decode, one DiT step, 8-step rollouts and the latent-only what-if
through ONNX Runtime (the engine a robot runs), beside torch eager on the same graphs and the same
sampler in the same process; then the ORT / torch-eager ratio per batch size (candidates x samples),
and how near the largest rollout comes to this CPU's float32 matrix-product speed (compute-bound or not)."""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sora_ros.bench.timing import median_ms
from sora_ros.core.machine import machine_description
from sora_ros.core.requests import RolloutRequest
from sora_ros.runtime import sampler
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.model_dir import ModelDirError, step_kv_inputs
from sora_ros.runtime.pipeline import WorldModelPipeline

DEFAULT_PRESET = "cpu64"
# Exit code for a --model or --checkpoint that cannot be timed: a usage error, as in `bench closed-loop`.
BAD_INPUT = 2
ROLLOUT_HORIZON = 8
FRAME_BATCH = 8
# The product's speed targets (DESIGN.md, issue 3), printed beside the figures.
ENCODE_TARGET_MS = 5.0
ROLLOUT_TARGET_MS = 100.0
# Anchored decode of one predicted frame for a camera of this (H, W) (issue 12).
ANCHOR_CAMERA = (480, 640)
ANCHOR_TARGET_MS = 10.0
RATIO_TARGET = 1.5
# Cameras of other aspect ratios at the same pixel budget (issue 15): encode + one rollout each,
# against the square camera; 11:9 gets the largest grid the budget allows (20 tokens). Target:
# the 4:3 camera at most CAMERA_COST_TARGET x the square's.
CAMERAS = {"square 128x128": (128, 128), "4:3 640x480": (480, 640), "16:9 1280x720": (720, 1280),
           "11:9 176x144": (144, 176)}
TARGET_CAMERA = "4:3 640x480"
CAMERA_COST_TARGET = 1.10
# The planner's what-if (issue 14): candidates x horizon x 1 sample, latents only, in-process.
WHAT_IF_CANDIDATES = 32
WHAT_IF_TARGET_MS = 250.0
# Sampler steps timed beside the model's own for the what-if (fewer: faster, see `sora-ros eval --sampler-steps`).
WHAT_IF_FEWER_STEPS = (2, 1)
# Batch sizes (candidates x samples) of the rollout rows, each with its torch-eager ratio.
ROLLOUT_BATCHES = (1, 8, WHAT_IF_CANDIDATES)
# Timed repetitions of rows this many rows or more in batch: a torch-eager 32-candidate rollout takes seconds.
LARGE_BATCH = 16
LARGE_BATCH_REPEATS = 5


@dataclass(frozen=True)
class Row:
    """One benchmark line: ORT `run` beside torch eager `baseline` (None: ORT only); ms divided by `per`."""

    label: str
    run: Callable[[], object]
    baseline: Callable[[], object] | None = None
    per: int = 1
    batch: int = 1
    target_ms: float | None = None


def _torch_functions(vae, dit) -> dict[str, Callable]:
    """numpy-in, numpy-out torch-eager versions of the four graphs."""
    import torch

    from sora_ros.model.graphs import DecoderGraph, DynamicsContextGraph, DynamicsStepGraph, EncoderGraph

    graphs = {"encoder": EncoderGraph(vae.eval()), "decoder": DecoderGraph(vae),
              "dynamics_context": DynamicsContextGraph(dit.eval()), "dynamics": DynamicsStepGraph(dit)}

    def wrap(module) -> Callable:
        def call(*arrays):  # a list argument: a per-frame context's per-layer keys/values, one input each
            flat = [a for item in arrays for a in (item if isinstance(item, list) else [item]) if a is not None]
            with torch.inference_mode():
                return module(*(torch.from_numpy(a) for a in flat)).numpy()
        return call

    return {name: wrap(module) for name, module in graphs.items()}


def _load(args: argparse.Namespace, keep: list) -> tuple[str, dict[str, Callable] | None, str, dict | None]:
    """Model directory, torch functions (or None), a description of the source, and the
    checkpoint's config (ModelConfig.to_dict) when the torch functions come from --checkpoint."""
    if args.model and not args.checkpoint:
        return args.model, None, args.model, None
    import torch

    from sora_ros.model.export import export_model
    if args.model:
        from sora_ros.model.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(args.checkpoint)
        return (args.model, _torch_functions(checkpoint.vae, checkpoint.dit), f"{args.model} + {args.checkpoint}",
                checkpoint.config.to_dict())
    from sora_ros.model.config import preset
    from sora_ros.model.dit import DiT
    from sora_ros.model.vae import VAE

    name = args.preset or DEFAULT_PRESET
    torch.manual_seed(0)
    config = preset(name)
    vae, dit = VAE(config.vae), DiT(config)
    directory = tempfile.TemporaryDirectory(prefix="sora_ros_bench_")
    keep.append(directory)
    export_model(vae, dit, directory.name)
    source = f"preset {name} (random weights, exported to a temporary dir)"
    return directory.name, _torch_functions(vae, dit), source, None


def _config_mismatch(checkpoint: dict, graphs: dict) -> list[str]:
    """The VAE and DiT settings ("vae.width", ...) in which a checkpoint's config (ModelConfig.to_dict)
    differs from a model directory's model.json "config": torch would time other networks."""
    from sora_ros.model.config import ModelConfig

    graphs = ModelConfig.from_dict(graphs).to_dict()  # model.json as the checkpoint's, defaults filled in
    return sorted(f"{part}.{key}: checkpoint {checkpoint[part].get(key)!r}, model.json {graphs[part].get(key)!r}"
                  for part in ("vae", "dit") for key in checkpoint[part].keys() | graphs[part].keys()
                  if checkpoint[part].get(key) != graphs[part].get(key))


def _anchor_rows(engine: WorldModelEngine, frames: np.ndarray, latents: np.ndarray) -> list[Row]:
    """Anchored decode of one predicted frame for a 640x480 camera: the graph, the warp at the
    camera's resolution (with the camera flow's motion brought to it), and the same with the
    synthesis decoded and blended (mask forced on); the warp rendered at a quarter of the pixels
    (`output_size`); then what each context costs once."""
    import cv2

    from sora_ros.runtime.anchor import camera_flow, classical_flow, model_window, render, scaled_window, \
        trajectory_motion

    camera = np.random.default_rng(1).integers(0, 256, (*ANCHOR_CAMERA, 3), dtype=np.uint8)
    flow = classical_flow(frames[0], frames[1])
    step = np.ones(1, np.float32)
    moved = np.roll(camera, 2, axis=1)
    base = trajectory_motion(camera_flow(camera, moved), 1)[0]  # (h1, w1, 2)

    def warp_only():
        motion, mask = engine.anchor_fields(frames[0], frames[1], flow, latents[:1], latents[0], step, frames[1])
        return render(moved, motion[0], mask[0], None, base)

    def with_synthesis():
        motion, mask = engine.anchor_fields(frames[0], frames[1], flow, latents[:1], latents[0], step, frames[1])
        return render(moved, motion[0], np.maximum(mask[0], 0.5), engine.decode(latents[:1])[0], base)

    output = (ANCHOR_CAMERA[0] // 2, ANCHOR_CAMERA[1] // 2)
    window = scaled_window(model_window(ANCHOR_CAMERA, frames.shape[1:3]), ANCHOR_CAMERA, output)
    base_small = trajectory_motion(camera_flow(camera, moved, max(output)), 1)[0]
    small = cv2.resize(moved, output[::-1], interpolation=cv2.INTER_AREA)  # once per decode call, as the runtime does

    def warp_at_output():
        motion, mask = engine.anchor_fields(frames[0], frames[1], flow, latents[:1], latents[0], step, frames[1])
        return render(small, motion[0], mask[0], None, base_small, window)

    label, small_label = f"{ANCHOR_CAMERA[1]}x{ANCHOR_CAMERA[0]}", f"{output[1]}x{output[0]}"
    return [Row(f"anchored decode, {label}, warp (ms/frame)", warp_only, target_ms=ANCHOR_TARGET_MS),
            Row(f"anchored decode, {label}, warp + synthesis", with_synthesis),
            Row(f"anchored decode, {label} camera, {small_label} output, warp", warp_at_output),
            Row("flow feature (DIS, once per context)", lambda: classical_flow(frames[0], frames[1])),
            Row(f"camera flow {label} + 8 trajectories (per context)",
                lambda: trajectory_motion(camera_flow(camera, moved), ROLLOUT_HORIZON)),
            Row(f"camera flow {small_label} + 8 trajectories (per context, {small_label} output)",
                lambda: trajectory_motion(camera_flow(camera, moved, max(output)), ROLLOUT_HORIZON))]


def run(args: argparse.Namespace) -> int:
    """The command: `args` from `sora-ros bench`. Returns 0, or BAD_INPUT after one line on stderr
    when --model or --checkpoint cannot be timed (as `bench closed-loop` does)."""
    keep: list = []
    try:
        model_dir, torch_fns, source, checkpoint_config = _load(args, keep)
        engine = WorldModelEngine(model_dir)
    except (ModelDirError, ValueError) as error:  # ValueError: CheckpointError, a --checkpoint that is no checkpoint
        print(f"sora-ros bench model: {error}", file=sys.stderr)
        return BAD_INPUT
    mismatch = [] if checkpoint_config is None else _config_mismatch(checkpoint_config, engine.info.raw["config"])
    if mismatch:
        print(f"sora-ros bench model: {args.checkpoint} is not the checkpoint {model_dir} was exported from ("
              + "; ".join(mismatch) + "): name the checkpoint.pt of that training run, or leave --checkpoint out",
              file=sys.stderr)
        return BAD_INPUT
    info = engine.info
    rng = np.random.default_rng(0)
    k, horizon = info.context_frames, ROLLOUT_HORIZON
    frames = rng.integers(0, 256, (FRAME_BATCH, *info.image_size, 3), dtype=np.uint8)
    latents = engine.encode(frames)
    context = np.ascontiguousarray(np.resize(latents, (k, *info.latent_shape)))
    # One action sequence per what-if candidate (the first is also the single rollout's), in physical units.
    plans = None if info.action_dim == 0 else \
        rng.uniform(-0.5, 0.5, (WHAT_IF_CANDIDATES, horizon, info.action_dim)).astype(np.float32)
    actions = None if plans is None else plans[0]
    pipeline = WorldModelPipeline(engine)
    for t, latent in enumerate(context):
        pipeline.observe(t * pipeline.dt_ns, "bench", latent)
    start = pipeline.latest_context()
    kv_ort = engine.sessions["dynamics_context"].run(None, {"context": context[None],
                                                            "context_noise": np.zeros(1, np.float32)})[0]
    step_inputs = [*step_kv_inputs(kv_ort, info.per_frame_context).values(), latents[:1], np.full(1, 0.5, np.float32)]
    if actions is not None:
        step_inputs.append(actions[:1])

    def ort_run(graph: str, *arrays) -> Callable:
        names = list(engine.signatures[graph]["inputs"])
        return lambda: engine.sessions[graph].run(None, dict(zip(names, arrays)))

    def torch_run(graph: str, *arrays) -> Callable | None:
        return None if torch_fns is None else (lambda: torch_fns[graph](*arrays))

    def torch_rollout(candidates: int, samples: int) -> Callable | None:
        """The engine's rollout (same sampler, batch layout and noise sharing) on torch eager."""
        if torch_fns is None:
            return None
        batch = candidates * samples
        context_batch = np.repeat(context[None], batch, axis=0)  # (N * S, K, C, h, w)
        normalised = None if plans is None else np.repeat(
            (plans[:candidates] - np.asarray(info.action_offset, np.float32))
            / np.asarray(info.action_scale, np.float32), samples, axis=0)  # (N * S, H, A)
        return lambda: sampler.rollout(torch_fns["dynamics_context"], torch_fns["dynamics"], context_batch,
                                       normalised, horizon, info.sampler_steps, info.context_noise,
                                       np.random.default_rng(0), noise_period=samples, shared_context=True,
                                       cached_context=info.per_frame_context)

    def what_if(steps: int) -> Callable:
        return _what_if(pipeline, start, plans, horizon, steps)

    zero = np.zeros(1, np.float32)
    rows = [
        Row("encode, 1 frame (ms/frame)", ort_run("encoder", frames[:1]), torch_run("encoder", frames[:1]),
            target_ms=ENCODE_TARGET_MS),
        Row(f"encode, batch {FRAME_BATCH} (ms/frame)", ort_run("encoder", frames), torch_run("encoder", frames),
            FRAME_BATCH, FRAME_BATCH),
        Row("decode, 1 frame (ms/frame)", ort_run("decoder", latents[:1]), torch_run("decoder", latents[:1])),
        Row(f"decode, batch {FRAME_BATCH} (ms/frame)", ort_run("decoder", latents), torch_run("decoder", latents),
            FRAME_BATCH, FRAME_BATCH),
        Row("DiT step (per sampler step)", ort_run("dynamics", *step_inputs), torch_run("dynamics", *step_inputs)),
    ]
    # The context pass: K frames per predicted frame; per-frame context, K once per rollout, then 1 per frame.
    newest = context[None, -1:] if info.per_frame_context else context[None]
    rows.insert(-1, Row(f"DiT context K/V, {newest.shape[1]} frame(s) (once per frame)",
                        ort_run("dynamics_context", newest, zero), torch_run("dynamics_context", newest, zero)))
    for samples in (1, 8):
        rows.append(Row(f"rollout {horizon} frames x {info.sampler_steps} steps, {samples} sample(s)",
                        lambda s=samples: engine.rollout(context, actions, horizon=horizon, samples=s, seed=0),
                        torch_rollout(1, samples), batch=samples,
                        target_ms=ROLLOUT_TARGET_MS if samples == 1 else None))
    for candidates in ROLLOUT_BATCHES[1:]:
        rows.append(Row(f"rollout {horizon} frames x {info.sampler_steps} steps, {candidates} candidates",
                        lambda n=candidates: engine.rollout(np.broadcast_to(context, (n, *context.shape)),
                                                            None if plans is None else plans[:n], horizon=horizon,
                                                            seed=0),
                        torch_rollout(candidates, 1), batch=candidates))
    for steps in sorted({info.sampler_steps, *WHAT_IF_FEWER_STEPS}, reverse=True):
        rows.append(Row(f"what-if {WHAT_IF_CANDIDATES} x {horizon} x 1, latents, {steps} step(s)", what_if(steps),
                        batch=WHAT_IF_CANDIDATES, target_ms=WHAT_IF_TARGET_MS))

    if engine.anchor is not None:
        rows += _anchor_rows(engine, frames, latents)

    print(f"machine: {machine_description()}; ONNX Runtime thread pool: {args.thread_pool}")
    print(f"model: {info.name} from {source}; image {info.image_size[0]}x{info.image_size[1]}, latents "
          f"{'x'.join(map(str, info.latent_shape))}, context {k}, dynamics K/V {info.context_kv_shape}, "
          f"sampler steps {info.sampler_steps}; ORT providers {engine.providers}")
    print(f"{'':44s} {'ORT ms':>9s} {'torch ms':>9s} {'torch/ORT':>10s}  target")
    ratios: dict[int, list[float]] = {}
    timed: dict[str, tuple[float, float]] = {}  # label -> (ORT ms, torch ms) of the rows with both
    for row in rows:
        repeats = min(args.repeats, LARGE_BATCH_REPEATS) if row.batch >= LARGE_BATCH else args.repeats
        ort_ms = median_ms(row.run, repeats) / row.per
        torch_text = f"{'-':>9s} {'-':>10s}"
        if row.baseline is not None:
            torch_ms = median_ms(row.baseline, repeats) / row.per
            ratios.setdefault(row.batch, []).append(torch_ms / ort_ms)
            timed[row.label] = ort_ms, torch_ms
            torch_text = f"{torch_ms:9.2f} {torch_ms / ort_ms:10.2f}"
        target_text = "" if row.target_ms is None else \
            f"<= {row.target_ms:g} ms ({'met' if ort_ms <= row.target_ms else 'MISSED'})"
        print(f"{row.label:44s} {ort_ms:9.2f} {torch_text}  {target_text}")
    if ratios:
        every = [r for values in ratios.values() for r in values]
        geo = float(np.exp(np.mean(np.log(every))))
        print(f"ORT vs torch eager, geometric mean over rows: {geo:.2f}x")
        worst = {batch: min(values) for batch, values in sorted(ratios.items())}
        print("ORT vs torch eager, worst row per batch size: "
              + ", ".join(f"batch {batch}: {ratio:.2f}x" for batch, ratio in worst.items())
              + f" (target >= {RATIO_TARGET}x at every batch size, "
              f"{'met' if min(worst.values()) >= RATIO_TARGET else 'MISSED'})")
        largest = next(row for row in reversed(rows) if row.label in timed)
        _print_compute_bound(info, largest, *timed[largest.label], args.repeats)
    else:
        print("torch-eager column skipped: pass --checkpoint (or use --preset) to time torch on the same graphs")
    if info.int8_graphs is not None:
        _print_int8_costs(engine, context, plans, args.repeats)
    if info.grid_follows_camera:
        _print_camera_costs(engine, plans, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB (whole process{', torch loaded' if torch_fns else ''})")
    return 0


def _what_if(pipeline: WorldModelPipeline, start, plans: np.ndarray | None, horizon: int, steps: int) -> Callable:
    """pipeline.what_if as a ~/rollout call runs it: candidates x horizon x 1 sample, latents only;
    the steps travel in the request (as the service's sampler_steps field), not in the pipeline's
    settings, which every row shares."""
    request = RolloutRequest(plans, WHAT_IF_CANDIDATES, horizon, 1, 0, return_images=False, sampler_steps=steps)
    return lambda: pipeline.what_if(request, start)


def _print_compute_bound(info, row: Row, ort_ms: float, torch_ms: float, repeats: int) -> None:
    """How near the largest rollout row runs to this CPU's float32 matrix-product speed: its FLOPs as
    torch.utils.flop_counter counts them on the eager run (linear layers and convolutions; attention's
    scores, about 7% more at 16 tokens per frame, are not counted), against one torch.matmul of the
    DiT's widest product at this batch: (batch x tokens, D) @ (D, mlp_ratio x D)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        row.baseline()
    gflop = counter.get_total_flops() / 1e9
    dit = info.raw["config"]["dit"]
    tokens = row.batch * info.context_kv_shape[2] // info.context_frames
    width = dit["width"]
    a, b = torch.randn(tokens, width), torch.randn(width, int(width * dit["mlp_ratio"]))
    matmul_rate = 2 * a.shape[0] * a.shape[1] * b.shape[1] / median_ms(lambda: a @ b, 20 * repeats) / 1e6
    print(f"compute: {row.label} = {gflop:.1f} GFLOP of matrix products (torch flop counter): ORT "
          f"{gflop / ort_ms * 1e3:.0f}, torch eager {gflop / torch_ms * 1e3:.0f} GFLOP/s; this CPU's float32 "
          f"matmul ({a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]}, torch): {matmul_rate:.0f} GFLOP/s; "
          f"ORT at {RATIO_TARGET}x eager would need {RATIO_TARGET * gflop / torch_ms * 1e3:.0f} GFLOP/s")


def _print_int8_costs(engine: WorldModelEngine, context: np.ndarray, plans: np.ndarray | None, repeats: int) -> None:
    """The dynamics rows on the model's int8 graphs (`sora-ros quantize`) beside float32, each pair
    timed back to back in this process, and the speed-up."""
    info = engine.info
    int8 = WorldModelEngine(info.path, engine.providers, precision="int8")
    actions = None if plans is None else plans[0]
    pipelines = {}
    for precision, each in (("float32", engine), ("int8", int8)):
        pipelines[precision] = WorldModelPipeline(each)
        for t, latent in enumerate(context):
            pipelines[precision].observe(t * pipelines[precision].dt_ns, "bench", latent)

    def rows(each: WorldModelEngine, precision: str) -> list[tuple[str, Callable, int]]:
        pipeline = pipelines[precision]
        start = pipeline.latest_context()
        return [(f"rollout {ROLLOUT_HORIZON} frames x {info.sampler_steps} steps, 1 sample",
                 lambda: each.rollout(context, actions, horizon=ROLLOUT_HORIZON, seed=0), 1)] + [
            (f"what-if {WHAT_IF_CANDIDATES} x {ROLLOUT_HORIZON} x 1, latents, {steps} step(s)",
             _what_if(pipeline, start, plans, ROLLOUT_HORIZON, steps), WHAT_IF_CANDIDATES)
            for steps in sorted({info.sampler_steps, *WHAT_IF_FEWER_STEPS}, reverse=True)]

    print("int8 dynamics graphs (sora-ros quantize) beside float32, each pair back to back:")
    print(f"{'':44s} {'float32':>9s} {'int8':>9s} {'speed-up':>9s}  target")
    for (label, float_run, batch), (_, int8_run, _) in zip(rows(engine, "float32"), rows(int8, "int8")):
        n = min(repeats, LARGE_BATCH_REPEATS) if batch >= LARGE_BATCH else repeats
        float_ms, int8_ms = median_ms(float_run, n), median_ms(int8_run, n)
        target = "" if batch != WHAT_IF_CANDIDATES else \
            f"<= {WHAT_IF_TARGET_MS:g} ms ({'met' if int8_ms <= WHAT_IF_TARGET_MS else 'MISSED'})"
        print(f"{label:44s} {float_ms:9.2f} {int8_ms:9.2f} {float_ms / int8_ms:8.2f}x  {target}")


def _print_camera_costs(engine: WorldModelEngine, plans: np.ndarray | None, repeats: int) -> None:
    """Encode one frame + one 8-frame rollout per camera shape of CAMERAS, each on the token grid of its
    aspect ratio, and the ratio to the square camera's."""
    info = engine.info
    rng = np.random.default_rng(1)
    print(f"per camera, at the {info.image_size[0]}x{info.image_size[1]} pixel budget: encode 1 frame + rollout "
          f"{ROLLOUT_HORIZON} frames x {info.sampler_steps} steps, 1 sample")
    square_ms = None
    for label, camera in CAMERAS.items():
        size = info.input_size(camera)
        frames = rng.integers(0, 256, (info.context_frames, *size, 3), dtype=np.uint8)
        actions = None if plans is None else plans[0]

        def step() -> None:
            engine.rollout(engine.encode(frames), actions, horizon=ROLLOUT_HORIZON, seed=0)

        ms = median_ms(step, repeats)
        square_ms = square_ms or ms
        tokens = (size[0] // info.patch_grid.cell) * (size[1] // info.patch_grid.cell)
        target = "" if label != TARGET_CAMERA else f" (target <= {CAMERA_COST_TARGET:g}x, " \
            f"{'met' if ms / square_ms <= CAMERA_COST_TARGET else 'MISSED'})"
        print(f"  {label:16s} -> {size[1]}x{size[0]} input, {tokens:2d} tokens: {ms:8.2f} ms, "
              f"{ms / square_ms:.2f}x the square{target}")
