"""`sora-ros bench model`: encode, decode, one DiT step and 8-step rollouts through ONNX
Runtime (the engine a robot runs), beside torch eager on the same graphs in the same process."""

from __future__ import annotations

import argparse
import resource
import tempfile
from collections.abc import Callable

import numpy as np

from sora_ros.bench.timing import median_ms
from sora_ros.core.machine import machine_description
from sora_ros.runtime import sampler
from sora_ros.runtime.engine import WorldModelEngine

DEFAULT_PRESET = "cpu64"
ROLLOUT_HORIZON = 8
FRAME_BATCH = 8
# The product's speed targets (DESIGN.md, issue 3), printed beside the figures.
ENCODE_TARGET_MS = 5.0
ROLLOUT_TARGET_MS = 100.0
# Anchored decode of one predicted frame for a camera of this (H, W) (issue 12).
ANCHOR_CAMERA = (480, 640)
ANCHOR_TARGET_MS = 10.0
RATIO_TARGET = 1.5


def _torch_functions(vae, dit) -> dict[str, Callable]:
    """numpy-in, numpy-out torch-eager versions of the four graphs."""
    import torch

    from sora_ros.model.graphs import DecoderGraph, DynamicsContextGraph, DynamicsStepGraph, EncoderGraph

    graphs = {"encoder": EncoderGraph(vae.eval()), "decoder": DecoderGraph(vae),
              "dynamics_context": DynamicsContextGraph(dit.eval()), "dynamics": DynamicsStepGraph(dit)}

    def wrap(module) -> Callable:
        def call(*arrays):
            with torch.inference_mode():
                return module(*(torch.from_numpy(a) for a in arrays if a is not None)).numpy()
        return call

    return {name: wrap(module) for name, module in graphs.items()}


def _load(args: argparse.Namespace, keep: list) -> tuple[str, dict[str, Callable] | None, str]:
    """Model directory, torch functions (or None) and a description of the source."""
    if args.model and not args.checkpoint:
        return args.model, None, args.model
    import torch

    from sora_ros.model.export import export_model
    if args.model:
        from sora_ros.model.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(args.checkpoint)
        return args.model, _torch_functions(checkpoint.vae, checkpoint.dit), f"{args.model} + {args.checkpoint}"
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
    return directory.name, _torch_functions(vae, dit), f"preset {name} (random weights, exported to a temporary dir)"


def _anchor_rows(engine: WorldModelEngine, frames: np.ndarray, latents: np.ndarray) -> list[tuple]:
    """Anchored decode of one predicted frame for a 640x480 camera: the graph, the warp at the
    camera's resolution, and the same with the synthesis decoded and blended (mask forced on)."""
    from sora_ros.runtime.anchor import camera_flow, classical_flow, render, trajectory_motion

    camera = np.random.default_rng(1).integers(0, 256, (*ANCHOR_CAMERA, 3), dtype=np.uint8)
    flow = classical_flow(frames[0], frames[1])
    step = np.ones(1, np.float32)

    def warp_only():
        motion, mask = engine.anchor_fields(frames[0], frames[1], flow, latents[:1], latents[0], step, frames[1])
        return render(camera, motion[0], mask[0], None)

    def with_synthesis():
        motion, mask = engine.anchor_fields(frames[0], frames[1], flow, latents[:1], latents[0], step, frames[1])
        return render(camera, motion[0], np.maximum(mask[0], 0.5), engine.decode(latents[:1])[0])

    label = f"{ANCHOR_CAMERA[1]}x{ANCHOR_CAMERA[0]}"
    return [(f"anchored decode, {label}, warp (ms/frame)", 1, warp_only, None, (), ANCHOR_TARGET_MS),
            (f"anchored decode, {label}, warp + synthesis", 1, with_synthesis, None, (), None),
            ("flow feature (DIS, once per context)", 1, lambda: classical_flow(frames[0], frames[1]), None, (), None),
            (f"camera flow {label} + 8 trajectories (per context)", 1,
             lambda: trajectory_motion(camera_flow(camera, np.roll(camera, 2, axis=1)), ROLLOUT_HORIZON), None, (), None)]


def run(args: argparse.Namespace) -> int:
    keep: list = []
    model_dir, torch_fns, source = _load(args, keep)
    engine = WorldModelEngine(model_dir)
    info = engine.info
    rng = np.random.default_rng(0)
    k, horizon = info.context_frames, ROLLOUT_HORIZON
    frames = rng.integers(0, 256, (FRAME_BATCH, *info.image_size, 3), dtype=np.uint8)
    latents = engine.encode(frames)
    context = np.ascontiguousarray(np.resize(latents, (k, *info.latent_shape)))
    actions = None if info.action_dim == 0 else rng.uniform(-0.5, 0.5, (horizon, info.action_dim)).astype(np.float32)
    kv_ort = engine.sessions["dynamics_context"].run(None, {"context": context[None],
                                                            "context_noise": np.zeros(1, np.float32)})[0]
    step_inputs = [kv_ort, latents[:1], np.full(1, 0.5, np.float32)]
    if actions is not None:
        step_inputs.append(actions[:1])

    def ort_run(graph: str, *arrays) -> Callable:
        names = list(engine.signatures[graph]["inputs"])
        return lambda: engine.sessions[graph].run(None, dict(zip(names, arrays)))

    def torch_rollout(samples: int) -> Callable:
        context_batch = np.repeat(context[None], samples, axis=0)
        normalised = None if actions is None else np.repeat(
            ((actions - np.asarray(info.action_offset, np.float32)) / np.asarray(info.action_scale, np.float32))[None],
            samples, axis=0)
        return lambda: sampler.rollout(torch_fns["dynamics_context"], torch_fns["dynamics"], context_batch,
                                       normalised, horizon, info.sampler_steps, info.context_noise,
                                       np.random.default_rng(0))

    # (label, per, ORT function, torch function or None, target ms or None); ms are divided by `per`.
    rows = [
        ("encode, 1 frame (ms/frame)", 1, ort_run("encoder", frames[:1]), "encoder", (frames[:1],), ENCODE_TARGET_MS),
        (f"encode, batch {FRAME_BATCH} (ms/frame)", FRAME_BATCH, ort_run("encoder", frames), "encoder", (frames,), None),
        ("decode, 1 frame (ms/frame)", 1, ort_run("decoder", latents[:1]), "decoder", (latents[:1],), None),
        (f"decode, batch {FRAME_BATCH} (ms/frame)", FRAME_BATCH, ort_run("decoder", latents), "decoder", (latents,), None),
        ("DiT context K/V (once per frame)", 1, ort_run("dynamics_context", context[None], np.zeros(1, np.float32)),
         "dynamics_context", (context[None], np.zeros(1, np.float32)), None),
        ("DiT step (per sampler step)", 1, ort_run("dynamics", *step_inputs), "dynamics", tuple(step_inputs), None),
    ]
    for samples in (1, 8):
        rows.append((f"rollout {horizon} frames x {info.sampler_steps} steps, {samples} sample(s)", 1,
                     lambda s=samples: engine.rollout(context, actions, horizon=horizon, samples=s, seed=0),
                     torch_rollout(samples), None, ROLLOUT_TARGET_MS if samples == 1 else None))

    if engine.anchor is not None:
        rows += _anchor_rows(engine, frames, latents)

    print(f"machine: {machine_description()}")
    print(f"model: {info.name} from {source}; image {info.image_size[0]}x{info.image_size[1]}, latents "
          f"{'x'.join(map(str, info.latent_shape))}, context {k}, dynamics K/V {info.context_kv_shape}, "
          f"sampler steps {info.sampler_steps}; ORT providers {engine.providers}")
    print(f"{'':44s} {'ORT ms':>9s} {'torch ms':>9s} {'torch/ORT':>10s}  target")
    ratios = []
    for label, per, ort_fn, torch_spec, torch_args, target in rows:
        ort_ms = median_ms(ort_fn, args.repeats) / per
        torch_ms = None
        if torch_fns is not None and torch_spec is not None:
            torch_fn = torch_spec if callable(torch_spec) else (lambda f=torch_fns[torch_spec], a=torch_args: f(*a))
            torch_ms = median_ms(torch_fn, args.repeats) / per
            ratios.append(torch_ms / ort_ms)
        torch_text = f"{torch_ms:9.2f} {torch_ms / ort_ms:10.2f}" if torch_ms else f"{'-':>9s} {'-':>10s}"
        target_text = "" if target is None else f"<= {target:g} ms ({'met' if ort_ms <= target else 'MISSED'})"
        print(f"{label:44s} {ort_ms:9.2f} {torch_text}  {target_text}")
    if ratios:
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"ORT vs torch eager, geometric mean over rows: {geo:.2f}x "
              f"(target >= {RATIO_TARGET}x, {'met' if geo >= RATIO_TARGET else 'MISSED'})")
    else:
        print("torch-eager column skipped: pass --checkpoint (or use --preset) to time torch on the same graphs")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB (whole process{', torch loaded' if torch_fns else ''})")
    return 0
