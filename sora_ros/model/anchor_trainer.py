"""The anchored-decoder stage: train sora_ros.model.anchor.AnchorNet against an exported model
directory (`sora-ros train-anchor` is its command line), then add its graph to that directory.

The world model's graphs stay fixed: latents come from the runtime engine (ONNX), so the stage
needs no torch checkpoint of the VAE or DiT. Samples are (last two frames, classical flow, latent
of step k, last context latent) -> the real frame k, for k = 1..H:
  - teacher: the encoder's latent of the real future frame k;
  - rollout: the DiT's predicted latent of step k (after `--teacher-fraction` of the steps,
    ROLLOUT_SHARE of the batch), so the decoder tolerates rollout error;
  - still: a frame repeated, with its own latent or the latent the DiT predicts from a context of
    that frame repeated (the DiT drifts there), so a static scene gives the last frame back.
The loss is each sample's log MSE at TARGET_FACTOR x the model's resolution, i.e. minus its PSNR
(what eval reports, averaged over frames), plus a small price on the mask (warp where the warp is as
good), plus (`motion_weight` > 0) the distance of the warp's motion from a label beyond
LABEL_TOLERANCE_PX: DIS flow from the true frame k back to the last frame, where it passes a
forward-backward check and the commands are known (`motion_label`; validation reports the distance
as "motion_px" whatever the weight). An L1 loss (the median) never blends: the decoder's image is
blurred, so per pixel the sharp warp is closer more often than not, even where the blend has the
lower error on the whole frame.
Footage without commands (real video) is scarce and mostly in buckets of its own sizes: REAL_SHARE
of the steps draw among the buckets that hold some, and REAL_SHARE of each batch of a bucket that
also holds footage with commands is drawn from it, rollouts included.
Cameras of any aspect ratio: each source is read at the input size its camera gets from the model's
patch grid (x TARGET_FACTOR), one AnchorData per size (a bucket, as `sora-ros train` holds them);
each step draws a bucket in proportion to its frames, validation is their frame-weighted mean.
Single process (no DDP: the stage is minutes on a CPU); resumable from OUT/anchor.pt; bf16 autocast
with --precision bf16. `init` starts from another model directory's anchored decoder (its
weights.safetensors) instead of fresh weights.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ANCHOR_CHECKPOINT = "anchor.pt"
ANCHOR_CHECKPOINT_FORMAT = "sora_ros.anchor_checkpoint/1"
# Targets (and the frame warped in training) are this many times the model's resolution.
TARGET_FACTOR = 2
# Weight of the mean mask in the loss, in log10 MSE units (0.01: 0.1 dB for a fully synthesised frame);
# prefers the sharp warp when both are as good.
MASK_WEIGHT = 0.01
# Added to each sample's MSE before the log: caps its PSNR near 50 dB, so exact (still) frames stay finite.
MSE_FLOOR = 1e-5
# Share of each batch that is a repeated (static) frame.
STILL_SHARE = 0.15
# Share of each batch drawn from footage without commands (real video), when there is some.
REAL_SHARE = 0.3
# Share of each batch on DiT-predicted latents after the teacher phase: all but the still frames, as
# it runs (the encoder's latent of the true future frame would teach the mask to trust the decoder).
ROLLOUT_SHARE = 1.0 - STILL_SHARE
# Rollout windows per sequence (starting at 0 and at the last possible start).
ROLLOUT_WINDOWS = 2
# Sequences rolled out by the DiT (spread over the data): a rollout costs ~0.15 s per window on 2 cores.
ROLLOUT_SEQUENCES = 192
# A flow vector is a label where the flow back from frame k lands within this many target pixels of
# where it started (occluded and ambiguous pixels fail the check).
CONSISTENCY_PX = 1.0
# Distances from a label up to this many target pixels cost nothing: DIS labels err by about a pixel,
# and at that scale the photometric loss knows better.
LABEL_TOLERANCE_PX = 1.0
VAL_SAMPLES = 256
ENGINE_BATCH = 64


@dataclass
class AnchorData:
    """Everything a batch is drawn from, as numpy arrays (N sequences of S frames of one input size)."""

    frames: np.ndarray  # uint8 (N, S, Ht, Wt, 3) at TARGET_FACTOR x the model resolution
    actions: np.ndarray  # float32 (N, S, A), NaN rows: unknown (footage without commands)
    network_actions: np.ndarray  # float32 (N, S, A): `actions` normalised as the network sees them
    network_still: np.ndarray  # float32 (A,): the zero command (standing still), normalised
    fitted: np.ndarray  # uint8 (N, S, H, W, 3) at the model resolution
    flow: np.ndarray  # float16 (N, S, 2, H, W): back-flow of frame t to t - 1 (zero at t = 0)
    target_flow: np.ndarray  # float16 (N, S, 2, Ht, Wt): the same at the target resolution (camera_flow)
    latents: np.ndarray  # float32 (N, S, C, h, w) encoder latents
    recon: np.ndarray  # uint8 (N, S, H, W, 3) decoder images of `latents`
    roll_rows: np.ndarray  # int (M,) the sequences rolled out
    roll_start: np.ndarray  # int (R,) the last context frame of each rollout window
    roll_latents: np.ndarray  # float32 (M, R, L, C, h, w)
    roll_images: np.ndarray  # uint8 (M, R, L, H, W, 3)
    still_latents: np.ndarray  # float32 (M, L, C, h, w): rolled out from frame K - 1 repeated K times
    still_images: np.ndarray  # uint8 (M, L, H, W, 3)

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0] * self.frames.shape[1])

    @property
    def unknown_frame_count(self) -> int:
        """Frames of sequences without commands (real video)."""
        return int(len(unknown_rows(self.actions)) * self.frames.shape[1])


def unknown_rows(actions: np.ndarray) -> np.ndarray:
    """Indices of the sequences without commands (every action NaN) in float32 (N, S, A); none when A = 0."""
    return np.flatnonzero(np.isnan(actions).all(axis=(1, 2))) if actions.size else np.arange(0)


def prepare(engine, paths, image_topic, action_topic, *, length: int, horizon: int,
            log=print) -> tuple[list[AnchorData], dict]:  # fmt: skip
    """Read clips, each source at TARGET_FACTOR x the input size its camera gets from the model's
    patch grid, and compute flows, latents, decodes and rollouts with the runtime engine.

    Returns:
        One AnchorData per input size, and the data's summary (`Buckets.summary`).

    Raises:
        AspectError: a camera outside the model's aspect range; as `load_sequences`.
    """
    from sora_ros.bag.clip_sources import load_sequences

    def target_size(height: int, width: int) -> tuple[int, int]:
        size = engine.info.input_size((height, width))
        return TARGET_FACTOR * size[0], TARGET_FACTOR * size[1]

    buckets = load_sequences(paths, image_topic, action_topic, dt=engine.info.dt, length=length, size_for=target_size,
                             action_names=engine.info.action_names)  # fmt: skip
    return [_prepare_bucket(engine, data, horizon, log) for data in buckets.by_size.values()], buckets.summary()


def _prepare_bucket(engine, data, horizon: int, log) -> AnchorData:
    """AnchorData of one bucket's sora_ros.bag.clip_sources.Sequences (frames at TARGET_FACTOR x its input size)."""
    from sora_ros.runtime.anchor import camera_flow, classical_flow, resize_motion

    info = engine.info
    n, s, target_height, target_width = data.frames.shape[:4]
    height, width = target_height // TARGET_FACTOR, target_width // TARGET_FACTOR
    k = info.context_frames
    fitted = np.stack([[cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in seq] for seq in data.frames])
    flat = fitted.reshape(-1, height, width, 3)
    latents = np.concatenate([engine.encode(flat[i:i + ENGINE_BATCH]) for i in range(0, len(flat), ENGINE_BATCH)])
    recon = np.concatenate([engine.decode(latents[i:i + ENGINE_BATCH]) for i in range(0, len(latents), ENGINE_BATCH)])
    flow = np.zeros((n, s, 2, height, width), np.float16)
    target_flow = np.zeros((n, s, 2, *data.frames.shape[2:4]), np.float16)
    for i in range(n):
        for t in range(1, s):
            flow[i, t] = classical_flow(fitted[i, t - 1], fitted[i, t])
            motion = camera_flow(data.frames[i, t - 1], data.frames[i, t])  # on the flow's grid
            target_flow[i, t] = resize_motion(motion, data.frames.shape[2:4]).transpose(2, 0, 1)
    latents = latents.reshape(n, s, *latents.shape[1:])
    recon = recon.reshape(n, s, height, width, 3)
    starts = sorted({k - 1, s - horizon - 1})[:ROLLOUT_WINDOWS]
    # Footage without commands (real video) is scarce: all of it is rolled out, then sequences at random.
    unknown = unknown_rows(data.actions)
    order = np.random.default_rng(0).permutation(n)
    rows = np.sort(np.concatenate([unknown, order[~np.isin(order, unknown)]])[:ROLLOUT_SEQUENCES])
    roll_latents = np.zeros((len(rows), len(starts), horizon, *latents.shape[2:]), np.float32)
    for w, last in enumerate(starts):
        for i in range(0, len(rows), ENGINE_BATCH):
            chunk = rows[i:i + ENGINE_BATCH]
            context = latents[chunk, last - k + 1:last + 1]  # (B, K, C, h, w)
            actions = None
            if info.action_dim:
                actions = data.actions[chunk, last:last + horizon]  # (B, L, A), NaN = unknown
            result = engine.rollout(context, actions, horizon=horizon, seed=i + w)
            roll_latents[i:i + ENGINE_BATCH, w] = result.latents[:, 0]
    still_latents = np.zeros((len(rows), horizon, *latents.shape[2:]), np.float32)
    for i in range(0, len(rows), ENGINE_BATCH):
        chunk = rows[i:i + ENGINE_BATCH]
        context = np.repeat(latents[chunk, k - 1][:, None], k, axis=1)  # (B, K, C, h, w): a still camera
        actions = None
        if info.action_dim:  # standing still where commands are known, unknown where they are not
            actions = np.where(np.isnan(data.actions[chunk, :horizon]), np.nan, 0.0).astype(np.float32)
        still_latents[i:i + ENGINE_BATCH] = engine.rollout(context, actions, horizon=horizon, seed=i).latents[:, 0]
    flat_still = still_latents.reshape(-1, *latents.shape[2:])
    still_images = np.concatenate([engine.decode(flat_still[i:i + ENGINE_BATCH])
                                   for i in range(0, len(flat_still), ENGINE_BATCH)])
    flat_roll = roll_latents.reshape(-1, *latents.shape[2:])
    roll_images = np.concatenate([engine.decode(flat_roll[i:i + ENGINE_BATCH])
                                  for i in range(0, len(flat_roll), ENGINE_BATCH)])
    log(f"anchor data at {height}x{width}: {n} sequences of {s} frames; {len(starts)} rollout windows of "
        f"{len(rows)} of them")
    still_command = np.zeros(data.actions.shape[-1], np.float32)
    return AnchorData(data.frames, data.actions, info.network_actions(data.actions), info.network_actions(still_command),
                      fitted, flow, target_flow, latents, recon, rows, np.array(starts), roll_latents,
                      roll_images.reshape(len(rows), len(starts), horizon, height, width, 3), still_latents,
                      still_images.reshape(len(rows), horizon, height, width, 3))


def motion_label(last: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the warp should sample `last` to give `target`, and where that is known.

    Args:
        last, target: uint8 (Ht, Wt, 3) RGB, the last real frame and the true frame k.

    Returns:
        motion float32 (2, Ht, Wt): DIS back-flow, target(x) ~ last(x + motion(x)), pixels;
        weight float32 (1, Ht, Wt): 1 where the flow from `last` to `target` at x + motion(x) leads
        back within CONSISTENCY_PX of x, else 0.
    """
    from sora_ros.runtime.anchor import classical_flow, pixel_grid

    motion = classical_flow(last, target).transpose(1, 2, 0)  # (Ht, Wt, 2)
    forward = classical_flow(target, last).transpose(1, 2, 0)  # last(y) ~ target(y + forward(y))
    landed = cv2.remap(np.ascontiguousarray(forward), motion + pixel_grid(*motion.shape[:2]), None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)  # forward at x + motion(x)
    consistent = np.linalg.norm(motion + landed, axis=-1) < CONSISTENCY_PX  # (Ht, Wt)
    return np.ascontiguousarray(motion.transpose(2, 0, 1)), consistent[None].astype(np.float32)


def draw(data: AnchorData, count: int, rng, horizon: int, rollout_share: float, still_share: float,
         motion_labels: bool = False) -> dict:
    """A batch of numpy arrays: frames, flow, latent, context_latent, step, synthesis, last, target,
    base, reconstruction and plan (the actions commanded up to the step: zero for a still frame);
    with `motion_labels`, also motion_target and motion_weight (`motion_label` where the commands
    are known: the labels teach what a command does to the motion; zero motion for a still frame,
    no label for footage without commands)."""
    from sora_ros.runtime.anchor import plan_features, trajectory_motion

    n, s = data.frames.shape[:2]
    rows = rng.integers(n, size=count)
    # Footage without commands (real video) is scarce: draw it for REAL_SHARE of the batch.
    unknown = unknown_rows(data.actions)
    if 0 < len(unknown) < n:
        pick = rng.random(count) < REAL_SHARE
        rows[pick] = unknown[rng.integers(len(unknown), size=int(pick.sum()))]
    kinds = rng.random(count)  # < still: static; < still + rollout: rollout; else teacher
    # Rolled-out sequences like the drawn row (with or without commands), so rollouts keep REAL_SHARE too.
    rolled_unknown = np.isin(data.roll_rows, unknown)
    pools = {flag: np.flatnonzero(rolled_unknown == flag) for flag in (False, True)}

    def rolled_like(row: int) -> int:
        pool = pools[bool(np.isin(row, unknown))]
        return int(pool[rng.integers(len(pool))]) if len(pool) else int(rng.integers(len(data.roll_rows)))
    batch = {key: [] for key in ("frames", "flow", "latent", "context_latent", "step", "synthesis", "last", "target",
                                 "base", "reconstruction", "plan")}
    if motion_labels:
        batch.update(motion_target=[], motion_weight=[])
    action_dim = data.network_actions.shape[-1]
    for row, kind in zip(rows, kinds):
        planned = np.full((horizon, action_dim), np.nan, np.float32)  # (H, A) commands up to the step, NaN = unknown
        if kind < still_share:
            step = rng.integers(1, horizon + 1)
            if kind < still_share / 2:  # the DiT's drifting prediction from a still context
                m = rolled_like(row)
                row, t = data.roll_rows[m], data.roll_start[0]
                latent, synthesis = data.still_latents[m, step - 1], data.still_images[m, step - 1]
            else:
                t = rng.integers(s)
                latent, synthesis = data.latents[row, t], data.recon[row, t]
            target_t, prev_t = t, t
            known = not np.isnan(data.network_actions[row]).all()  # standing still where commands are known
            planned[:] = data.network_still if known else np.nan
            flow = np.zeros_like(data.flow[row, t])
            base = np.zeros_like(data.target_flow[row, t])
        elif kind < still_share + rollout_share:
            m, w = rolled_like(row), rng.integers(len(data.roll_start))
            row, t = data.roll_rows[m], data.roll_start[w]
            step = rng.integers(1, horizon + 1)
            target_t, prev_t = t + step, t - 1
            latent, synthesis = data.roll_latents[m, w, step - 1], data.roll_images[m, w, step - 1]
            flow, base = data.flow[row, t], data.target_flow[row, t]
            planned[:step] = data.network_actions[row, t:t + step]  # as the rollout was driven
        else:
            step = rng.integers(1, horizon + 1)
            t = rng.integers(1, s - step)
            target_t, prev_t = t + step, t - 1
            latent, synthesis = data.latents[row, target_t], data.recon[row, target_t]
            flow, base = data.flow[row, t], data.target_flow[row, t]
            planned[:step] = data.network_actions[row, t:t + step]  # action[i] precedes frame t + 1 + i
        batch["plan"].append(plan_features(planned[None], np.array([step]), horizon, action_dim)[0])
        batch["frames"].append(np.stack([data.fitted[row, prev_t], data.fitted[row, t]]))
        batch["flow"].append(flow.astype(np.float32))
        batch["latent"].append(latent)
        batch["context_latent"].append(data.latents[row, t])
        batch["reconstruction"].append(data.recon[row, t])
        batch["step"].append(np.float32(step))
        batch["synthesis"].append(synthesis)
        batch["last"].append(data.frames[row, t])
        batch["target"].append(data.frames[row, target_t])
        trajectory = trajectory_motion(np.ascontiguousarray(base.transpose(1, 2, 0), np.float32), int(step))
        batch["base"].append(np.ascontiguousarray(trajectory[-1].transpose(2, 0, 1)))  # (2, Ht, Wt)
        if motion_labels:
            last, target = data.frames[row, t], data.frames[row, target_t]
            shape = last.shape[:2]
            if target_t == t:  # a still frame: no motion, known everywhere
                motion, weight = np.zeros((2, *shape), np.float32), np.ones((1, *shape), np.float32)
            elif np.isnan(planned[:step]).any():  # footage without commands: the photometric loss alone
                motion, weight = np.zeros((2, *shape), np.float32), np.zeros((1, *shape), np.float32)
            else:
                motion, weight = motion_label(last, target)
            batch["motion_target"].append(motion)
            batch["motion_weight"].append(weight)
    return {key: np.stack(values) for key, values in batch.items()}


def anchored_loss(net, batch: dict, motion_weight: float = 0.0) -> tuple:
    """(loss, metrics, prediction float (B, 3, Ht, Wt) in [0, 1]) of a batch of torch tensors; the
    motion loss (weight `motion_weight`) and metric "motion_px" need the batch's motion labels."""
    import torch
    import torch.nn.functional as F

    from sora_ros.model.anchor import compose, upsampled_motion
    from sora_ros.core.psnr import psnr_from_mse

    motion, mask = net(batch["frames"], batch["flow"], batch["latent"], batch["context_latent"], batch["step"],
                       batch["reconstruction"], batch["plan"] if net.config.plan_features else None)

    def unit(images):  # uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]
        return images.permute(0, 3, 1, 2).float() / 255.0

    correction = motion.float() - batch["step"].reshape(-1, 1, 1, 1) * batch["flow"]  # (B, 2, H, W) learned part
    predicted = compose(unit(batch["last"]), unit(batch["synthesis"]), correction, mask.float(), batch["base"])
    target = unit(batch["target"])
    per_sample = ((predicted - target) ** 2).mean(dim=(1, 2, 3))  # (B,)
    loss = torch.log10(per_sample + MSE_FLOOR).mean() + MASK_WEIGHT * mask.float().mean()
    metrics = {}
    if "motion_target" in batch:  # mean distance (target pixels) from the labels, where labelled
        warp = upsampled_motion(correction, target.shape[-2:], batch["base"])  # (B, 2, Ht, Wt) what compose warps by
        weight = batch["motion_weight"]  # (B, 1, Ht, Wt)
        distance = (warp - batch["motion_target"]).norm(dim=1, keepdim=True)  # (B, 1, Ht, Wt)
        labelled = weight.sum().clamp(min=1.0)
        excess = (weight * F.relu(distance - LABEL_TOLERANCE_PX)).sum() / labelled
        loss = loss + motion_weight * excess
        metrics["motion_px"] = ((weight * distance).sum() / labelled).item()
    with torch.no_grad():
        mse = per_sample.mean()
        copy = ((unit(batch["last"]) - target) ** 2).mean()
    return loss, {"loss": loss.item(), "psnr": psnr_from_mse(mse.item(), capped=True),
                  "copy_psnr": psnr_from_mse(copy.item(), capped=True), "mask": mask.float().mean().item(),
                  **metrics}, predicted


def _tensors(batch: dict) -> dict:
    import torch

    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}


def train_anchor(args) -> dict:
    """Run the stage (see the module docstring) and, unless args.no_export, export into args.model.

    Returns:
        The summary written to OUT/anchor_summary.json.
    """
    import torch
    from tqdm import tqdm

    from sora_ros.core.machine import machine_description
    from sora_ros.model.anchor import AnchorConfig, AnchorNet
    from sora_ros.model.export import export_anchor
    from sora_ros.bag.clip_sources import size_name
    from sora_ros.model.trainer import draw_bucket, frame_weighted, learning_rate
    from sora_ros.runtime.anchor import plan_size
    from sora_ros.runtime.engine import WorldModelEngine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = WorldModelEngine(args.model)
    info = engine.info
    horizon = info.default_horizon
    checkpoint_path = out / ANCHOR_CHECKPOINT
    torch.manual_seed(args.seed)
    state = {"step": 0, "wall_s": 0.0, "val": {}}
    plan = plan_size(horizon, info.action_dim) if args.plan and info.action_dim else 0  # commands in (opt-in)
    net = AnchorNet(AnchorConfig(width=args.width, horizon=horizon, plan_features=plan), info.latent_shape[0])
    parent = None
    if getattr(args, "init", None):
        from sora_ros.model.weights import WEIGHTS_FILE, WeightsError, load_weights, parent_record

        weights = load_weights(args.init)
        if weights.anchor is None or weights.config.vae.latent_channels != info.latent_shape[0]:
            raise WeightsError(f"{args.init}: no anchored decoder for {info.latent_shape[0]}-channel latents in its "
                               f"{WEIGHTS_FILE} to start from")  # fmt: skip
        net, parent = weights.anchor, parent_record(weights)
        print(f"fine-tuning the anchored decoder of {parent['id']} ({args.init}); --width is its own")
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    if args.resume and checkpoint_path.exists():
        payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if payload.get("format") != ANCHOR_CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint_path}: not an anchored-decoder checkpoint")
        net = AnchorNet(AnchorConfig.from_dict(payload["config"]), info.latent_shape[0])
        net.load_state_dict(payload["net"])
        optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
        optimizer.load_state_dict(payload["optimizer"])
        state = payload["state"]
        rng.bit_generator.state = json.loads(payload["rng"])
        print(f"resuming {checkpoint_path} at step {state['step']}")
    train, train_summary = prepare(engine, args.data, args.image_topic, args.action_topic,
                                   length=args.sequence_frames, horizon=horizon)  # fmt: skip
    val, val_summary = prepare(engine, args.val_data, args.image_topic, args.action_topic, length=args.sequence_frames,
                               horizon=horizon) if args.val_data else (None, None)  # fmt: skip
    frames = {index: data.frame_count for index, data in enumerate(train)}
    # Footage without commands (real video) mostly comes at other sizes than the sim's, in buckets of
    # a few sequences: REAL_SHARE of the steps draw among the buckets that hold some, by its frames.
    real_frames = {index: data.unknown_frame_count for index, data in enumerate(train) if data.unknown_frame_count}

    def next_bucket() -> AnchorData:
        real = bool(real_frames) and len(real_frames) < len(train) and rng.random() < REAL_SHARE
        return train[draw_bucket(rng, real_frames if real else frames)]

    def save() -> None:
        payload = {"format": ANCHOR_CHECKPOINT_FORMAT, "config": net.config.to_dict(), "net": net.state_dict(),
                   "optimizer": optimizer.state_dict(), "state": state, "rng": json.dumps(rng.bit_generator.state)}
        torch.save(payload, f"{checkpoint_path}.tmp")
        Path(f"{checkpoint_path}.tmp").replace(checkpoint_path)

    def validate() -> dict:
        """The frame-weighted mean over the validation buckets, and under "buckets" each one's numbers."""
        if val is None:
            return {}
        per_bucket = {}
        net.eval()
        for data in val:
            batch = _tensors(draw(data, VAL_SAMPLES, np.random.default_rng(0), horizon, 1.0, 0.0, motion_labels=True))
            with torch.no_grad():
                _, metrics, _ = anchored_loss(net, batch)
            name = size_name(data.fitted.shape[2:4])
            per_bucket[name] = {"rollout_psnr": metrics["psnr"], "copy_last_psnr": metrics["copy_psnr"],
                                "mask": metrics["mask"], "motion_px": metrics["motion_px"]}  # fmt: skip
        net.train()
        return {**frame_weighted(list(per_bucket.values()), [data.frame_count for data in val]), "buckets": per_bucket}

    teacher_steps = round(args.teacher_fraction * args.steps)
    bar = tqdm(range(state["step"], args.steps), initial=state["step"], total=args.steps, desc="anchor",
               disable=None, dynamic_ncols=True)  # None: terminal only
    began = time.monotonic() - state["wall_s"]
    net.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        batch = _tensors(draw(next_bucket(), args.batch, rng, horizon, 0.0 if step < teacher_steps else ROLLOUT_SHARE,
                              STILL_SHARE, motion_labels=args.motion_weight > 0))  # fmt: skip
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss, metrics, _ = anchored_loss(net, batch, args.motion_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        state["step"], state["wall_s"] = step + 1, time.monotonic() - began
        bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()})
        done = step + 1 == args.steps
        if (step + 1) % args.val_every == 0 or done:
            state["val"] = {"step": step + 1, **validate()}
            bar.write(f"[anchor {step + 1}] validation: " + json.dumps(state["val"]))
        if (step + 1) % args.checkpoint_every == 0 or done:
            save()
    bar.close()
    summary = {"command": args.command, "steps": state["step"], "wall_time_s": round(state["wall_s"], 1),
               "batch": args.batch, "lr": args.lr, "teacher_fraction": args.teacher_fraction,
               "motion_weight": args.motion_weight,
               "precision": args.precision, "data": train_summary, "validation": state["val"],
               "validation_data": val_summary, "machine": machine_description(),
               **({"fine_tuned_from": parent} if parent else {})}
    (out / "anchor_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.no_export:
        summary["parity"] = export_anchor(net, args.model, training=summary, seed=args.seed)
        print(f"added anchor.onnx to {args.model} (parity {summary['parity']:.2e})")
    return summary
