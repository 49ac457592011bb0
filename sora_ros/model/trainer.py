"""The world-model trainer: VAE first, then the DiT, single process or under torchrun
(DistributedDataParallel; gloo on CPU, nccl on GPU). `sora-ros train` (sora_ros/cli/train.py)
is its command line.

Every rank holds the data and draws its own batches (seeded by rank); DDP averages the
gradients, so all ranks keep identical weights. Rank 0 alone validates, writes checkpoints
and the log. `resume` continues from the checkpoint in `out`, stage and step included; a new run
first removes an earlier run's files there (`run_files`; the command line asks for --force). Each
DiT validation that beats the best so far (mean PSNR over VAL_HORIZONS) also writes checkpoint_best.pt.
Action values outside the model's range (offset +- ACTION_RANGE_SCALES x scale) are clamped to it,
as the runtime clamps commands, and counted in a warning.

Cameras of any aspect ratio: each source is fitted to the input size its camera gets from the
model's patch grid (sora_ros.core.patch_grid), and the data is held in buckets, one per size
(`Buckets`). Each step draws one bucket (VAE: in proportion to its frames, DiT: to its windows),
then a batch from it; validation runs per bucket, its headline the frame-weighted mean. A new
model's `aspect_range` is its training cameras' range (a fine-tune's: the parent's and theirs).
Why buckets, not NaViT-style packing of several shapes into one sequence: a batch of one shape keeps
dense attention with no mask and runs the same graphs as inference, and CPU batches are small, so
packing would save little.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sora_ros.core.psnr import psnr_from_mse

CHECKPOINT_NAME = "checkpoint.pt"
# The DiT checkpoint with the best validation (mean model PSNR over the validated horizons).
BEST_CHECKPOINT_NAME = "checkpoint_best.pt"
LOG_NAME = "train_log.jsonl"
SUMMARY_NAME = "train_summary.json"
WARMUP_STEPS = 100
# Peak learning rates of training from scratch (`sora-ros train` without --init).
SCRATCH_VAE_LR, SCRATCH_DIT_LR = 1e-3, 3e-4
FINAL_LR_FRACTION = 0.1
# Validation sizes: frames for the VAE, windows for the DiT.
VAL_FRAMES = 256
VAL_WINDOWS = 64
VAL_HORIZON = 4
# Horizons reported by validation (<= VAL_HORIZON).
VAL_HORIZONS = (1, VAL_HORIZON)
CALIBRATION_FRAMES = 512
# The shortest run measured to beat copy-last (the default model, cpu64 on simulated data; README,
# "How long to train"), and the step counts under which a run is clearly too short beside it.
MEASURED_VAE_STEPS, MEASURED_DIT_STEPS = 4500, 2500
SHORT_VAE_STEPS, SHORT_DIT_STEPS = 1000, 1000
# An action gap at or above this says the model uses its actions (the default model: 2.0 to 2.8 dB).
ACTION_GAP_USED_DB = 0.2
DEFAULT_PRESET = "cpu64"
# Share of a --minutes budget the VAE stage gets when both stages train: the default recipe's
# split (2511 s VAE, 1678 s DiT; models/default/model.json, training.wall_time_s).
VAE_BUDGET_SHARE = 0.6
# Seeds of the fixed validation draws (windows, noise), so validations are comparable step to step.
VAL_SEED = 0


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the torchrun process group when there is one (WORLD_SIZE > 1)."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(0, 1, "cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    device = "cpu"
    if backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    return Distributed(dist.get_rank(), dist.get_world_size(), device)


def learning_rate(step: int, total: int, peak: float, *, warmup: int = WARMUP_STEPS, constant: bool = False,
                  progress: float | None = None) -> float:
    """Linear warm-up over `warmup` steps, then the peak (`constant`) or a cosine decay to
    FINAL_LR_FRACTION of the peak.

    Args:
        progress: how far the run is, in [0, 1], where a time budget ends it before `total`
            steps (`Trainer`); None: (step - warmup) / (total - warmup).
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    if constant:
        return float(peak)
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    # A Python float: it is stored in the optimiser state, which weights_only loading must accept.
    return peak * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def cpu_seconds() -> float:
    """This process's CPU time, all threads together: what a --minutes budget counts, the same on
    a busy machine as on an idle one (10 CPU-minutes are 5 wall minutes of both cores of an idle
    2-core machine). Threads that spin while waiting for a core count too: on a loaded machine
    run with OMP_NUM_THREADS=1 (sora-ros bench fine-tune does)."""
    return time.process_time()


def _objective_modules():
    """nn.Modules whose forward is the loss, so DDP sees (and syncs) the whole computation."""
    from torch import nn

    from sora_ros.model.training import dynamics_loss, vae_loss

    class VAEObjective(nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, images, generator):
            return vae_loss(self.vae, images, generator)

    class DynamicsObjective(nn.Module):
        def __init__(self, dit):
            super().__init__()
            self.dit = dit

        def forward(self, latents, actions, generator):
            return dynamics_loss(self.dit, latents, actions, generator)

    return VAEObjective, DynamicsObjective


def _wrap(module, dist_info: Distributed):
    if dist_info.world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [int(dist_info.device.split(":")[1])] if dist_info.device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=device_ids)


class Trainer:
    """Holds the model, data, optimisers and log of one training run."""

    def __init__(self, args, dist_info: Distributed):
        import torch

        from sora_ros.model.checkpoint import load_checkpoint
        from sora_ros.model.config import NO_ACTIONS, preset
        from sora_ros.model.dit import DiT
        from sora_ros.model.fine_tune import choose_actions
        from sora_ros.model.vae import VAE
        from sora_ros.bag.clip_sources import load_sequences, size_name

        self.args, self.dist = args, dist_info
        self.out = Path(args.out)
        self.checkpoint_path = self.out / CHECKPOINT_NAME
        # Batches (numpy) and noise (torch, on the training device) differ per rank.
        self.rng = np.random.default_rng([args.seed, dist_info.rank])
        self.generator = torch.Generator(device=dist_info.device).manual_seed(args.seed * 1000 + dist_info.rank)
        self.state = {"stage": "vae", "step": 0, "wall_s": {"vae": 0.0, "dit": 0.0}, "val": {}}
        optimizer_states = {}
        self.resumed = bool(args.resume)
        if args.resume and not self.checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT_NAME} in {self.out} to continue from "
                                    "(drop --resume to start a new run there)")  # fmt: skip
        checkpoint = load_checkpoint(self.checkpoint_path) if args.resume else None
        _resolve_defaults(args, checkpoint.extra.get("fine_tune") if checkpoint else None)
        self.parts = tuple(args.train_parts)
        self.parent, self.anchor = None, None
        self.unconverted = None  # a fine-tune's parent DiT before its context attention changed
        if checkpoint is not None:
            self.config, self.vae, self.dit = checkpoint.config, checkpoint.vae, checkpoint.dit
            self.state = checkpoint.extra["state"]
            self.parent, self.anchor = checkpoint.extra.get("parent"), checkpoint.extra.get("anchor")
            optimizer_states = checkpoint.extra.get("optimizers", {})
            # Rank 0's batch order and noise continue where they stopped; other ranks reseed.
            random_state = checkpoint.extra.get("random", {}).get(f"rank{dist_info.rank}")
            if random_state:
                self.rng.bit_generator.state = random_state["numpy"]
                self.generator.set_state(random_state["torch"])
            self.log(f"resuming {self.checkpoint_path}: {self.state['stage']} stage, step {self.state['step']}")
            self._warn_about_ignored_flags()
        elif args.init:
            from sora_ros.model.fine_tune import start_from

            expect = preset(args.preset) if args.preset else None
            change = (args.action_names, args.action_scale, args.action_offset) if args.action_topic else None
            start = start_from(args.init, args.name, change, expect=expect, context_attention=args.context_attention)
            self.config, self.vae, self.dit = start.config, start.vae, start.dit
            self.parent, self.anchor = start.parent, start.anchor
            if start.unconverted is not None:  # validated once, in place of the converted DiT at step 0
                if "dit" not in self.parts:
                    raise ValueError(f"--context-attention {args.context_attention} converts the parent's DiT, "
                                     "which then has to train: add dit to --train-parts")
                self.unconverted = start.unconverted.to(dist_info.device)
            if self.anchor is not None:
                self.anchor["note"] = ("carried over unchanged from the parent; the VAE was frozen, so the latents it "
                                       "reads mean what they did" if "vae" not in self.parts else
                                       "carried over unchanged from the parent although the VAE was fine-tuned: adapt "
                                       "it with sora-ros train-anchor --init PARENT")  # fmt: skip
            self.log(f"fine-tuning {self.parent['id']} ({args.init}): training {' and '.join(self.parts)}, "
                     f"the rest frozen; {args.schedule} learning rate after {args.warmup_steps} warm-up steps")  # fmt: skip
            for note in start.notes:
                self.log(f"  {note}")
        else:
            config = preset(args.preset or DEFAULT_PRESET)
            if not args.action_topic:
                config = config.replace(actions=NO_ACTIONS, dit=dataclasses.replace(config.dit, action_dim=0))
            else:
                actions = choose_actions(config.actions, args.action_names, args.action_scale, args.action_offset)
                config = config.replace(actions=actions, dit=dataclasses.replace(config.dit, action_dim=actions.dim))
            if args.context_attention:
                config = config.replace(dit=dataclasses.replace(config.dit, context_attention=args.context_attention))
            self.config = config.replace(name=args.name)
            torch.manual_seed(args.seed)  # same initial weights on every rank
            self.vae, self.dit = VAE(self.config.vae), DiT(self.config)
        for part, module in (("vae", self.vae), ("dit", self.dit)):
            module.requires_grad_(part in self.parts)  # frozen parts stay bit-identical
        self.vae.to(dist_info.device)
        self.dit.to(dist_info.device)
        self.optimizer_states = optimizer_states

        self.window = self.config.dit.context_frames + args.dit_targets
        read = dict(image_topic=args.image_topic, action_topic=args.action_topic, dt=self.config.dt,
                    length=max(args.sequence_frames, self.window + VAL_HORIZON),
                    size_for=self._reading_grid(resumed=checkpoint is not None).input_size,
                    action_names=self.config.actions.names)  # fmt: skip
        self.train_data = load_sequences(args.data, **read)
        if args.val_data:
            self.val_data = load_sequences(args.val_data, **read)
        else:
            held = _held_out(self.train_data.sources)
            if held is None:
                self.log("note: one source only; validating on every tenth sequence of it, which neighbours "
                         "training sequences in time (pass --val-data for an honest number)")  # fmt: skip
                held = np.arange(len(self.train_data.sources)) % 10 == 9
            self.val_data = _subset(self.train_data, held)
            self.train_data = _subset(self.train_data, ~held)
        if checkpoint is None:
            self._fit_aspect_range()
        self.log(f"data: {self.train_data.summary()['sequences']} training sequences of {read['length']} frames, "
                 f"{self.val_data.summary()['sequences']} validation")  # fmt: skip
        low, high = self.config.aspect_range
        self.log(f"cameras: aspect range {low:.3g} to {high:.3g} (width / height): the model will serve cameras in "
                 "it (5% slack) and refuse others unless told to crop them (aspect_policy); train on every camera "
                 "shape it should serve. Buckets (model input H x W):")
        for size in {**self.train_data.by_size, **self.val_data.by_size}:
            counts = [len(data.by_size[size].sources) if size in data.by_size else 0
                      for data in (self.train_data, self.val_data)]  # fmt: skip
            self.log(f"  {size_name(size)}: {counts[0]} training sequences, {counts[1]} validation")
        for note in self.train_data.notes:
            self.log(f"  {note}")
        if args.val_data:  # without it, the validation is held out of --data and shares its notes (above)
            for note in self.val_data.notes:
                self.log(f"  validation: {note}")
        self._clamp_actions()
        if self.dist.is_main and self.parent is None and (args.vae_steps < SHORT_VAE_STEPS or args.dit_steps < SHORT_DIT_STEPS):
            self.log(f"warning: {args.vae_steps} VAE + {args.dit_steps} DiT steps is far below the "
                     f"{MEASURED_VAE_STEPS} + {MEASURED_DIT_STEPS} of the shortest run measured to beat copy-last "
                     "(README, \"How long to train\"): expect it to lose to copy-last; train longer")  # fmt: skip

    # -- helpers -------------------------------------------------------------------

    def _reading_grid(self, resumed: bool):
        """The patch grid the data is read with. A resumed run's model is set: its own grid. Else
        one that admits every trainable camera (ASPECT_RANGE, and a parent's own range): the
        grid sizes are the model's, and `_fit_aspect_range` then narrows the range to the data's."""
        from sora_ros.model.config import ASPECT_RANGE

        grid = self.config.patch_grid
        return grid if resumed else dataclasses.replace(grid, aspect_range=_union(grid.aspect_range, ASPECT_RANGE))

    def _clamp_actions(self) -> None:
        """Clamp the data's actions to the model's range in place (NaN rows kept: unknown), saying
        how many values were outside it: a 1e30 cmd_vel would overflow the gradients, and a
        robot faster than --action-scale says is served clamped too (sora_ros/runtime/pipeline.py)."""
        from sora_ros.core.actions import clamp_to_range
        from sora_ros.runtime.model_dir import ACTION_RANGE_SCALES

        spec = self.config.actions
        if not spec.dim:
            return
        low = np.array(spec.offset, np.float32) - ACTION_RANGE_SCALES * np.array(spec.scale, np.float32)  # (A,)
        high = np.array(spec.offset, np.float32) + ACTION_RANGE_SCALES * np.array(spec.scale, np.float32)
        counts = {}
        for name, buckets in (("training", self.train_data), ("validation", self.val_data)):
            for data in buckets.by_size.values():
                clamped, outside = clamp_to_range(data.actions, low, high)
                if outside:
                    counts[name] = counts.get(name, 0) + outside
                    data.actions[...] = clamped
        if counts:
            ranges = ", ".join(f"{n} [{lo:g}, {hi:g}]" for n, lo, hi in zip(spec.names, low, high))
            counted = " and ".join(f"{count} {name}" for name, count in counts.items())
            self.log(f"warning: {counted} action value(s) outside the model's range (offset +- "
                     f"{ACTION_RANGE_SCALES:g} x scale: {ranges}) clamped to it, as the runtime clamps commands: "
                     "check --action-topic, or give your robot's top speeds with --action-scale")  # fmt: skip

    def _fit_aspect_range(self) -> None:
        """A new model serves its training cameras' aspect ratios; a fine-tune, its parent's too."""
        cameras = self.train_data.aspect_range
        aspect_range = _union(self.config.aspect_range, cameras) if self.parent is not None else cameras
        self.config = self.config.replace(aspect_range=aspect_range)
        self.dit.config = self.config

    def _draw_bucket(self, stage: str, counts: dict) -> tuple[int, int]:
        """`draw_bucket` with the run's generator; each stage's draws are counted in state["bucket_steps"]."""
        from sora_ros.bag.clip_sources import size_name

        size = draw_bucket(self.rng, counts)
        steps = self.state.setdefault("bucket_steps", {}).setdefault(stage, {})
        steps[size_name(size)] = steps.get(size_name(size), 0) + 1
        return size

    def _warn_about_ignored_flags(self) -> None:
        """On resume the checkpoint's model is kept, and a finished VAE stage is not reopened: say so."""
        self.log(f"note: the model ({self.config.name}) comes from the checkpoint; --init, --preset, --name, "
                 "--action-topic and --context-attention apply to new runs only")  # fmt: skip
        finished_vae = self.state["val"].get("vae", {}).get("step")
        if self.state["stage"] == "dit" and finished_vae not in (None, self.args.vae_steps):
            self.log(f"note: the VAE stage finished at {finished_vae} steps; --vae-steps {self.args.vae_steps} is ignored")

    def log(self, message: str) -> None:
        """A line of its own on stdout (rank 0), never glued to a progress bar."""
        from tqdm import tqdm

        if self.dist.is_main:
            tqdm.write(message)

    def record(self, entry: dict) -> None:
        """Append `entry` to the log as strict JSON: a non-finite number (an overflowed grad_norm) as null."""
        if self.dist.is_main:
            with open(self.out / LOG_NAME, "a") as log:
                log.write(json.dumps(finite_or_none(entry), allow_nan=False) + "\n")

    def save(self, optimizers: dict, path: Path | None = None) -> None:
        from sora_ros.core.machine import machine_description
        from sora_ros.model.checkpoint import save_checkpoint

        if self.dist.is_main:
            save_checkpoint(path or self.checkpoint_path, self.config, self.vae, self.dit, state=self.state,
                            optimizers=optimizers, data=self.train_data.summary(),
                            val_data=self.val_data.summary(), command=self.args.command,
                            **({"parent": self.parent, "fine_tune": self._fine_tune_record()} if self.parent else {}),
                            **({"anchor": self.anchor} if self.anchor else {}),
                            random={"rank0": {"numpy": self.rng.bit_generator.state,
                                              "torch": self.generator.get_state()}},
                            machine=f"{machine_description()}, {self.dist.world_size} process(es) on {self.dist.device}")  # fmt: skip

    def sample_frames(self, data, count: int, rng) -> np.ndarray:
        n, s = data.frames.shape[:2]
        return data.frames[rng.integers(n, size=count), rng.integers(s, size=count)]  # (B, H, W, 3)

    @staticmethod
    def window_index(data, count: int, length: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """Random windows of `length` frames: sequence rows (B, 1) and frame indices (B, T)."""
        n, s = data.frames.shape[:2]
        starts = rng.integers(s - length + 1, size=count)
        return rng.integers(n, size=count)[:, None], starts[:, None] + np.arange(length)[None, :]

    # -- stages --------------------------------------------------------------------

    def run_stage(self, name: str, total_steps: int, params, peak_lr: float, batch_fn, objective) -> None:
        """Train one stage until `total_steps` or, with --minutes, until its share of the budget is
        spent (CPU seconds of the training steps, `cpu_seconds`; validation and checkpoints not counted)."""
        import torch
        from tqdm import tqdm

        from sora_ros.model.training import train_step

        optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.0)
        if name in self.optimizer_states:
            optimizer.load_state_dict(self.optimizer_states.pop(name))
        model = _wrap(objective, self.dist)
        start = self.state["step"]
        if start == 0 and self.parent is not None:
            self.validate(name, 0)  # the parent's numbers on the user's data, before any step
        cpu = self.state.setdefault("cpu_s", {"vae": 0.0, "dit": 0.0})
        budget = self._stage_budget(name)
        bar = tqdm(range(start, total_steps), initial=start, total=total_steps, desc=name,
                   disable=None if self.dist.is_main else True, dynamic_ncols=True)  # None: terminal only
        began = time.monotonic() - self.state["wall_s"][name]
        for step in bar:
            if budget is not None and cpu[name] >= budget:
                break
            progress = None if budget is None else max(step / total_steps, cpu[name] / budget)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, peak_lr, warmup=self.args.warmup_steps,
                                            constant=self.args.schedule == "constant", progress=progress)  # fmt: skip
            tick = cpu_seconds()
            batch = batch_fn()
            metrics = train_step(model, optimizer, lambda batch=batch: self.forward(model, batch))
            cpu[name] += cpu_seconds() - tick
            self.state["step"] = step + 1
            self.state["wall_s"][name] = time.monotonic() - began
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k in ("loss", "psnr", "mse")})
            done = step + 1 == total_steps or (budget is not None and cpu[name] >= budget)
            if (step + 1) % self.args.log_every == 0 or done:
                self.record({"stage": name, "step": step + 1, "wall_s": round(self.state["wall_s"][name], 1),
                             "cpu_s": round(cpu[name], 1), **metrics})  # fmt: skip
            snapshot = self._due_snapshot()
            if (step + 1) % self.args.val_every == 0 or done or snapshot is not None:
                self.validate(name, step + 1)
            if (step + 1) % self.args.checkpoint_every == 0 or done:
                self.save({name: optimizer.state_dict()})
            if snapshot is not None:
                self.save({name: optimizer.state_dict()}, self.out / snapshot_name(snapshot))
                self.state.setdefault("snapshots", []).append(snapshot)
                self.log(f"snapshot after {snapshot:g} minutes of training: {self.out / snapshot_name(snapshot)}")
        bar.close()

    def _stage_budget(self, name: str) -> float | None:
        """CPU seconds this stage may use under --minutes (None: no budget). With both stages
        training, the VAE gets VAE_BUDGET_SHARE and the DiT what is left."""
        if self.args.minutes is None:
            return None
        total = 60.0 * self.args.minutes
        cpu = self.state.setdefault("cpu_s", {"vae": 0.0, "dit": 0.0})
        if name == "vae":
            return total * (VAE_BUDGET_SHARE if "dit" in self.parts else 1.0)
        return max(0.0, total - cpu["vae"])

    def _due_snapshot(self) -> float | None:
        """The --snapshot-minutes mark the training time has just passed, if any."""
        used = sum(self.state.get("cpu_s", {}).values()) / 60.0
        taken = self.state.get("snapshots", [])
        due = [m for m in self.args.snapshot_minutes or () if m <= used and m not in taken]
        return max(due) if due else None

    def _fine_tune_record(self) -> dict:
        args = self.args
        return {"init": str(args.init), "train_parts": list(self.parts), "schedule": args.schedule,
                "warmup_steps": args.warmup_steps, "vae_lr": args.vae_lr, "dit_lr": args.dit_lr,
                "minutes": args.minutes}  # fmt: skip

    def forward(self, model, batch: tuple):
        """The objective's (loss, metrics), under bfloat16 autocast with --precision bf16.

        Autocast runs the convolutions and matrix products in bfloat16 while the weights, the
        optimiser state and the gradients stay float32.
        """
        import torch

        device_type = self.dist.device.split(":")[0]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.args.precision == "bf16"):
            return model(*batch, self.generator)

    def train_vae(self) -> None:
        import torch

        VAEObjective, _ = _objective_modules()
        device = self.dist.device

        counts = {size: data.frame_count for size, data in self.train_data.by_size.items()}

        def batch():
            data = self.train_data.by_size[self._draw_bucket("vae", counts)]
            frames = self.sample_frames(data, self.args.vae_batch, self.rng)  # (B, H, W, 3)
            return (torch.from_numpy(frames).to(device),)

        self.vae.train()
        self.run_stage("vae", self.args.vae_steps, self.vae.parameters(), self.args.vae_lr, batch, VAEObjective(self.vae))
        self.vae.eval()

    def encode(self, buckets) -> dict:
        """{(H, W): float32 (N, S, C, h, w) latents of that bucket's sequences}."""
        import torch

        from sora_ros.model.training import encode_frames

        return {size: encode_frames(self.vae, torch.from_numpy(data.frames).to(self.dist.device)).cpu().numpy()
                for size, data in buckets.by_size.items()}  # fmt: skip

    def train_dit(self) -> None:
        import torch

        from sora_ros.model.training import calibrate_latent_scale

        _, DynamicsObjective = _objective_modules()
        # A fine-tune keeps the parent's latent scale: its DiT was trained on latents of that scale.
        if self.state["step"] == 0 and self.parent is None:
            # The same frames on every rank, so every rank gets the same scale; each bucket its share.
            rng, total = np.random.default_rng(self.args.seed), self.train_data.frame_count
            calibration = [self.sample_frames(data, max(1, CALIBRATION_FRAMES * data.frame_count // total), rng)
                           for data in self.train_data.by_size.values()]  # fmt: skip
            scale = calibrate_latent_scale(self.vae, *(torch.from_numpy(c).to(self.dist.device) for c in calibration))
            self.log(f"latent scale {scale:.4f}")
        self.train_latents = self.encode(self.train_data)  # {(H, W): (N, S, C, h, w)}
        self.val_latents = self.encode(self.val_data)
        conditioned = self.config.dit.action_dim > 0
        device = self.dist.device
        windows = {size: len(data.sources) * (data.frames.shape[1] - self.window + 1)
                   for size, data in self.train_data.by_size.items()}  # fmt: skip

        def batch():
            size = self._draw_bucket("dit", windows)
            data = self.train_data.by_size[size]
            rows, index = self.window_index(data, self.args.dit_batch, self.window, self.rng)
            latents = torch.from_numpy(self.train_latents[size][rows, index]).to(device)  # (B, T, C, h, w)
            actions = torch.from_numpy(data.actions[rows, index]).to(device) if conditioned else None  # (B, T, A)
            return latents, actions

        if "dit" not in self.parts:
            self.validate("dit", 0)  # frozen: its numbers with the (fine-tuned) VAE's latents
            return
        self.dit.train()
        self.run_stage("dit", self.args.dit_steps, self.dit.parameters(), self.args.dit_lr, batch, DynamicsObjective(self.dit))
        self.dit.eval()

    # -- validation ----------------------------------------------------------------

    @contextmanager
    def _evaluating(self):
        import torch

        modes = (self.vae.training, self.dit.training)
        self.vae.eval()
        self.dit.eval()
        with torch.no_grad():
            yield
        self.vae.train(modes[0])
        self.dit.train(modes[1])

    def validate(self, stage: str, step: int) -> None:
        """Validate each bucket; the headline (state["val"], the log's "val") is their frame-weighted
        mean, each bucket's numbers go to the log's "val_buckets"."""
        from sora_ros.bag.clip_sources import size_name

        if not self.dist.is_main:
            return
        # A converted parent is scored as it was: the step-0 numbers are the parent's, as a user expects.
        parent = stage == "dit" and step == 0 and self.unconverted is not None
        converted, self.dit = self.dit, self.unconverted if parent else self.dit
        try:
            with self._evaluating():
                per_bucket = {size: self._validate_vae(size) if stage == "vae" else self._validate_dit(size)
                              for size in self.val_data.by_size}  # fmt: skip
        finally:
            self.dit, self.unconverted = converted, None if parent else self.unconverted
        metrics = self._frame_weighted(per_bucket)
        self.state["val"][stage] = {"step": step, **metrics}
        self.record({"stage": stage, "step": step, "val": metrics,
                     "val_buckets": {size_name(size): values for size, values in per_bucket.items()},
                     **({"parent_before_conversion": True} if parent else {})})  # fmt: skip
        self.log(f"[{stage} {step}] validation" + (" (the parent, before its context attention changed)" if parent
                                                   else "") + ": " + _format(metrics))
        if len(per_bucket) > 1:
            for size, values in per_bucket.items():
                self.log(f"  {size_name(size)}: " + _format(values))
        if stage == "vae" and step == self.args.vae_steps:
            self._warn_if_vae_caps_below_copy_last(metrics["recon_psnr"])
        if stage == "dit" and not parent:  # the parent's weights are not this run's to keep
            self._keep_if_best(step, metrics)

    def _keep_if_best(self, step: int, metrics: dict) -> None:
        """Write BEST_CHECKPOINT_NAME when this validation's mean model PSNR is the best so far."""
        score = float(np.mean([metrics[f"h{h}_psnr"] for h in VAL_HORIZONS]))
        if score > self.state.get("best", {}).get("mean_psnr", -math.inf):
            self.state["best"] = {"step": step, "mean_psnr": score}
            self.save({}, self.out / BEST_CHECKPOINT_NAME)

    def _frame_weighted(self, per_bucket: dict) -> dict:
        """`frame_weighted` of {(H, W): {name: value}} over the validation buckets."""
        frames = [self.val_data.by_size[size].frame_count for size in per_bucket]
        return frame_weighted(list(per_bucket.values()), frames)

    def _warn_if_vae_caps_below_copy_last(self, recon_psnr: float) -> None:
        """Every predicted frame passes the decoder: a reconstruction below copy-last's h=1 cannot beat it."""
        k = self.config.dit.context_frames

        def copy_last_psnr(data) -> dict:
            # The windows and the measure of the DiT's validation, so the number matches its h1_copy_last_psnr.
            rows, index = self.window_index(data, VAL_WINDOWS, k + VAL_HORIZON, np.random.default_rng(0))
            frames = data.frames[rows, index[:, k - 1 : k + 1]].astype(np.float32) / 255.0  # (B, 2, H, W, 3)
            return {"psnr": float(psnr_from_mse(np.mean((frames[:, 1] - frames[:, 0]) ** 2), capped=True))}

        per_bucket = {size: copy_last_psnr(data) for size, data in self.val_data.by_size.items()}
        copy_last = self._frame_weighted(per_bucket)["psnr"]
        if recon_psnr < copy_last:
            self.log(f"warning: the VAE reconstructs validation frames at {recon_psnr:.2f} dB, below copy-last's "
                     f"{copy_last:.2f} dB at h=1: predictions decoded by it will lose to copy-last; "
                     "train the VAE longer (--vae-steps) or add data")  # fmt: skip

    def _validate_vae(self, size: tuple[int, int]) -> dict:
        import torch

        from sora_ros.model.training import reconstruction_psnr

        frames = self.sample_frames(self.val_data.by_size[size], VAL_FRAMES, np.random.default_rng(0))
        scores = reconstruction_psnr(self.vae, torch.from_numpy(frames).to(self.dist.device))  # (VAL_FRAMES,)
        return {"recon_psnr": float(scores.mean())}

    def validation_loss(self, size: tuple[int, int]) -> float:
        """The training loss (`dynamics_loss`) on VAL_WINDOWS fixed held-out windows of a bucket with
        fixed noise: the same number for the same weights, so a fine-tune's first validation is its parent's."""
        import torch

        from sora_ros.model.training import dynamics_loss

        data = self.val_data.by_size[size]
        rows, index = self.window_index(data, VAL_WINDOWS, self.window, np.random.default_rng(VAL_SEED))
        latents = torch.from_numpy(self.val_latents[size][rows, index]).to(self.dist.device)  # (B, T, C, h, w)
        actions = None
        if self.config.dit.action_dim:
            actions = torch.from_numpy(data.actions[rows, index]).to(self.dist.device)  # (B, T, A)
        generator = torch.Generator(device=self.dist.device).manual_seed(VAL_SEED)
        loss, _ = dynamics_loss(self.dit, latents, actions, generator)
        return loss.item()

    def _validate_dit(self, size: tuple[int, int]) -> dict:
        import torch

        from sora_ros.core.action_shuffle import ActionShuffler, action_gap
        from sora_ros.model.training import normalise_actions, signed_psnr
        from sora_ros.model.vae import images_to_signed
        from sora_ros.runtime.sampler import rollout

        k, device, data = self.config.dit.context_frames, self.dist.device, self.val_data.by_size[size]
        rows, index = self.window_index(data, VAL_WINDOWS, k + VAL_HORIZON, np.random.default_rng(VAL_SEED))
        latents = self.val_latents[size][rows, index]  # (B, K + H, C, h, w)
        actions = data.actions[rows, index]  # (B, K + H, A)
        truth = data.frames[rows, index]  # (B, K + H, H, W, 3)

        def context_fn(context, level):
            return self.dit.context_kv(torch.from_numpy(context).to(device), torch.from_numpy(level).to(device)).cpu().numpy()

        def velocity_fn(kv, noisy, flow_time, action):
            action = None if action is None else torch.from_numpy(action).to(device)
            if isinstance(kv, np.ndarray):
                kv = torch.from_numpy(kv).to(device)
            else:  # a per-frame context's per-layer keys/values
                kv = [torch.from_numpy(layer).to(device) for layer in kv]
            out = self.dit.velocity(kv, torch.from_numpy(noisy).to(device),
                                    torch.from_numpy(flow_time).to(device), action)  # fmt: skip
            return out.cpu().numpy()

        def predict(window_actions: np.ndarray):
            future_actions = None
            if self.config.dit.action_dim:
                future_actions = normalise_actions(torch.from_numpy(window_actions[:, k - 1 : -1]),
                                                   self.config.actions).numpy()  # fmt: skip
            predicted = rollout(context_fn, velocity_fn, latents[:, :k], future_actions, VAL_HORIZON,
                                self.config.sampler_steps, self.config.context_noise, np.random.default_rng(1),
                                cached_context=self.dit.per_frame)  # fmt: skip
            decoded = self.vae.decode(torch.from_numpy(predicted.reshape(-1, *predicted.shape[2:])).to(device))
            return decoded.clamp(-1, 1).reshape(VAL_WINDOWS, VAL_HORIZON, *decoded.shape[1:])  # (B, L, 3, H, W)

        decoded = predict(actions)
        real = images_to_signed(torch.from_numpy(truth[:, k:]).to(device).flatten(0, 1)).reshape(decoded.shape)
        last = images_to_signed(torch.from_numpy(truth[:, k - 1]).to(device))[:, None]  # (B, 1, 3, H, W)
        metrics = {"loss": self.validation_loss(size)}
        for h in VAL_HORIZONS:
            metrics[f"h{h}_psnr"] = signed_psnr(((decoded[:, h - 1] - real[:, h - 1]) ** 2).mean())
            metrics[f"h{h}_copy_last_psnr"] = signed_psnr(((last[:, 0] - real[:, h - 1]) ** 2).mean())
        if self.config.dit.action_dim:
            # As `sora-ros eval` measures it: each window under another window's future actions.
            shuffle = ActionShuffler(seed=0)
            swapped = predict(np.stack([shuffle(window, first_future=k - 1) for window in actions]))
            per_window = {name: signed_psnr(((images - real) ** 2).mean(dim=(2, 3, 4)))  # (B, L) dB
                          for name, images in (("true", decoded), ("shuffled", swapped))}  # fmt: skip
            for h in VAL_HORIZONS:
                metrics[f"h{h}_action_gap"] = action_gap(per_window["true"][:, h - 1], per_window["shuffled"][:, h - 1])
        return metrics

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.resumed and self.dist.is_main:
            for path in run_files(self.out):  # a new run: an earlier one's log must not mix into this one's
                path.unlink()
        if self.state["stage"] == "vae":
            if "vae" in self.parts:
                self.train_vae()
            elif self.parent is not None:
                self.validate("vae", 0)  # the frozen VAE's reconstruction of the user's frames
            self.state.update(stage="dit", step=0)
            self.save({})
        self.train_dit()
        summary = {"command": self.args.command, "config": self.config.to_dict(), "state": self.state,
                   "data": self.train_data.summary(), "val_data": self.val_data.summary(),
                   "world_size": self.dist.world_size}  # fmt: skip
        if self.parent is not None:
            summary["parent"] = self.parent
        if "best" in self.state:
            summary["best_checkpoint"] = {"path": str(self.out / BEST_CHECKPOINT_NAME), **self.state["best"]}
        if self.dist.is_main:
            (self.out / SUMMARY_NAME).write_text(json.dumps(finite_or_none(summary), indent=2, allow_nan=False) + "\n")
        return summary


def draw_bucket(rng: np.random.Generator, counts: dict):
    """A key of `counts` ({bucket: frames or windows}), drawn with probability in proportion to its count."""
    keys = list(counts)
    weights = np.array([counts[key] for key in keys], np.float64)
    return keys[rng.choice(len(keys), p=weights / weights.sum())]


def frame_weighted(per_bucket: list[dict], frames: list[int]) -> dict:
    """{name: the buckets' values of `name`, averaged with their frames as weights}: the headline
    of a validation run per bucket.

    Args:
        per_bucket: one {name: value} per bucket, all with the same names.
        frames: the frames of each bucket.
    """
    return {name: float(np.average([values[name] for values in per_bucket], weights=frames)) for name in per_bucket[0]}


def run_files(out: Path) -> list[Path]:
    """The files of a training run in `out` that exist: checkpoints (snapshots too), log, summary
    (the curves PNG, drawn from the log by the command line, is redrawn or removed there)."""
    names = (CHECKPOINT_NAME, BEST_CHECKPOINT_NAME, LOG_NAME, SUMMARY_NAME)
    snapshots = sorted(out.glob("checkpoint_*min.pt"))  # snapshot_name's
    return [out / name for name in names if (out / name).is_file()] + snapshots


def finite_or_none(value):
    """`value` (JSON-like: dicts, lists, numbers, strings) with every NaN or infinite float as None,
    so that json.dumps writes strict JSON (null), not Infinity or NaN, which strict parsers refuse."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def snapshot_name(minutes: float) -> str:
    """The checkpoint written when the training time passes `minutes` (--snapshot-minutes)."""
    return f"checkpoint_{minutes:g}min.pt"


def _resolve_defaults(args, saved: dict | None = None) -> None:
    """Fill the options left at None: a resumed fine-tune's own settings (`saved`, the checkpoint's
    "fine_tune" record), fine-tuning defaults with --init (fine_tune.FINE_TUNE_DEFAULTS), or the
    defaults of training from scratch.

    Raises:
        ValueError: --train-parts names no part or an unknown one, or is given without --init.
    """
    from sora_ros.model.fine_tune import FINE_TUNE_DEFAULTS, TRAINABLE_PARTS

    for key in ("init", "minutes", "snapshot_minutes", "action_names", "action_scale", "action_offset",
                "context_attention"):
        if not hasattr(args, key):  # a Namespace built by hand (tests, scripts)
            setattr(args, key, None)
    scratch = {"train_parts": TRAINABLE_PARTS, "vae_lr": SCRATCH_VAE_LR, "dit_lr": SCRATCH_DIT_LR,
               "schedule": "cosine", "warmup_steps": WARMUP_STEPS}  # fmt: skip
    if saved:
        defaults = {**{k: saved[k] for k in scratch}, "minutes": saved.get("minutes"), "init": saved.get("init")}
    else:
        defaults = FINE_TUNE_DEFAULTS if args.init else scratch
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    unknown = set(args.train_parts) - set(TRAINABLE_PARTS)
    if unknown or not args.train_parts:
        raise ValueError(f"--train-parts {args.train_parts}: choose from {list(TRAINABLE_PARTS)}")
    if not args.init and tuple(args.train_parts) != TRAINABLE_PARTS:
        raise ValueError("--train-parts applies to a fine-tune (--init MODEL_DIR); from scratch both parts train")


def verdict(validation: dict) -> list[str]:
    """Plain-words lines on the DiT's validation against copy-last, one per horizon.

    Args:
        validation: the run's state["val"]: {"dit": {"h1_psnr": dB, "h1_copy_last_psnr": dB, ...}}.
    """
    dit = validation.get("dit", {})
    lines = []
    for key in sorted((k for k in dit if k.endswith("_copy_last_psnr")), key=lambda k: int(k[1:].split("_")[0])):
        h = key.split("_")[0]
        gap = dit[f"{h}_psnr"] - dit[key]
        head = f"{h[0]}={h[1:]}: model {dit[f'{h}_psnr']:.2f} dB, copy-last {dit[key]:.2f} dB:"
        lines.append(f"{head} beats copy-last by {gap:.2f} dB" if gap > 0 else
                     f"{head} loses to copy-last by {-gap:.2f} dB; train longer or add data")  # fmt: skip
        if f"{h}_action_gap" in dit:
            action = dit[f"{h}_action_gap"]
            lines.append(f"{h[0]}={h[1:]}: action gap {action:+.2f} dB (PSNR lost under other windows' actions; "
                         + ("the model uses its actions)" if action >= ACTION_GAP_USED_DB else
                            "near 0 or below: the model ignores its actions)"))  # fmt: skip
    return lines or ["no DiT validation yet: the run stopped before the DiT stage validated"]


def training_record(extra: dict) -> dict:
    """The model.json "training" section, from the `extra` of a checkpoint this trainer wrote."""
    state = extra.get("state", {})
    validation = state.get("val", {})
    return {
        "command": extra.get("command"),
        "data": extra.get("data"),
        "validation_data": extra.get("val_data"),
        "steps": {"vae": validation.get("vae", {}).get("step"),
                  "dit": state.get("step") if state.get("stage") == "dit" else 0},
        "wall_time_s": state.get("wall_s"),
        "validation": validation,
        "machine": extra.get("machine"),
        **({"fine_tune": extra["fine_tune"]} if "fine_tune" in extra else {}),
        **({"cpu_s": state["cpu_s"]} if "cpu_s" in state else {}),
    }  # fmt: skip


def _held_out(sources: list[str]) -> np.ndarray | None:
    """Hold out every tenth source (bag or video), at least one; None with a single source."""
    names = sorted(set(sources))
    if len(names) < 2:
        return None
    held = set(names[9::10] or names[-1:])
    return np.array([source in held for source in sources])


def _subset(data, mask: np.ndarray):
    """`data.subset(mask)` of Buckets, refusing an empty one."""
    if not mask.any():
        raise ValueError("too little data to hold out a validation set: pass --val-data")
    return data.subset(mask)


def _union(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The smallest (low, high) range holding ranges a and b."""
    return min(a[0], b[0]), max(a[1], b[1])


def _format(metrics: dict) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in metrics.items())
