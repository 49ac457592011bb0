"""The risk stage: train sora_ros.model.risk.RiskNet against an exported model directory
(`sora-ros train-risk` is its command line), then add risk.onnx to that directory.

Labels come from the bags' odometry and commands (sora_ros/core/risk.py: "blocked within the next
k steps"); latents from the model's exported encoder and dynamics through ONNX Runtime, so the head
sees what the runtime will feed it. Bags are cut into clips of K + H frames (K context frames, H =
the model's default horizon), one starting every H frames. A sample is the window of the latents
of W frames up to frame t (`--frames`, default K) and the action in force from frame t - 1:
  - encoded: encoder latents of the real frames;
  - predicted: the frames after the clip's first K are the DiT's, rolled out from those K under
    the recorded actions (after `--teacher-fraction` of the steps, ROLLOUT_SHARE of each batch), so
    the head tolerates rollout error; the window reaches back into the real context, as at run time;
both labelled by the real frame's label. With `--mirror` every training clip is used a second time
mirrored left-right (image flipped, turn commands negated), which doubles the data of a robot
symmetric about its forward axis with its camera on it (measured: README, "The risk head"). The loss is binary cross-entropy with the positives
weighted by negatives / positives of the training samples (class balance); the exported graph adds
log(positives / negatives) to the logit (`prior_log_odds`), so it gives probabilities, not
class-balanced scores. Validation reports the
ROC AUC on encoded and on predicted latents (and per predicted step); the state with the best
predicted-latent AUC is exported (the last state without --val-data). Single process, resumable
from OUT/risk.pt (which keeps the cameras' grids the run trained on: model.json risk.grids lists those of
every part of the run).

Any camera the world model serves: each clip is encoded and rolled out at its camera's own token
grid, and its latents are resampled to the reference grid the head takes (it ends in a Linear over
its features), as `RiskHead` resamples them at run time (sora_ros.runtime.risk.collect_risk_data).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

RISK_CHECKPOINT = "risk.pt"
RISK_CHECKPOINT_FORMAT = "sora_ros.risk_checkpoint/1"
# Share of each batch on DiT-predicted latents after the teacher phase.
ROLLOUT_SHARE = 0.5


def window_frames(frames: int, model_dir: str | Path, context_frames: int) -> int:
    """The latents per window the head sees: `frames` (--frames), or with 0 the model's context length.

    Raises:
        ValueError: `frames` outside 0 to `context_frames` (the first predicted frame's window reaches
            back into the context only), naming the context length and where model.json states it.
    """
    from sora_ros.runtime.model_dir import MODEL_JSON

    if not 0 <= frames <= context_frames:
        raise ValueError(f"--frames {frames} is outside 0 to {context_frames}: the model's context length is "
                         f"{context_frames} frames ({Path(model_dir) / MODEL_JSON} context_frames), and the first "
                         f"predicted frame's window reaches back into the context only (0: all {context_frames})")
    return frames or context_frames


def prepare(engine, paths, args, rule, mirror: bool = False, log=print, aspect_policy: str = "refuse") -> tuple:
    """(RiskData, summary) of bags: clips of K + H frames, one every H, labelled from odometry and
    commands, encoded and rolled out with the engine at each camera's own grid
    (sora_ros.runtime.risk.collect_risk_data). With `mirror`, each clip also left-right mirrored
    (frames flipped, turn commands negated: sora_ros.core.twist.mirror_signs), labelled as the clip.
    A camera outside the model's aspect range is skipped (noted), or under `aspect_policy` "crop"
    trains on its centred window in the range, as the node's parameter of that name feeds it.

    Raises:
        ValueError: no bag has the odometry and command topics (naming them), or none gives a clip
            with a known label.
    """
    from dataclasses import replace
    from functools import partial

    from tqdm import tqdm

    from sora_ros.bag.motion import labelled_clips
    from sora_ros.core.patch_grid import AspectError
    from sora_ros.core.twist import mirror_signs
    from sora_ros.runtime.risk import camera_views, collect_risk_data

    info = engine.info
    horizon, notes = info.default_horizon, []
    clips = camera_views(info, labelled_clips(paths, args.image_topic, args.action_topic, args.odom_topic, rule,
                                              dt=info.dt, length=info.context_frames + horizon, stride=horizon,
                                              size=None, action_names=info.action_names, notes=notes),
                         aspect_policy)

    signs = mirror_signs(info.action_names) if mirror else None  # (A,)

    def with_mirrored():
        for clip, labels in clips:
            yield clip, labels
            try:
                info.input_size(clip.frames.shape[1:3])
            except AspectError:
                continue  # a camera the model does not serve: skipped, and counted once, by collect_risk_data
            # The same labels: being blocked does not depend on the side.
            yield replace(clip, frames=np.ascontiguousarray(clip.frames[:, :, ::-1]),
                          actions=clip.actions * signs), labels

    data = collect_risk_data(engine, with_mirrored() if mirror else clips, horizon,
                             progress=partial(tqdm, desc="risk rollouts", dynamic_ncols=True, disable=None),
                             notes=notes)
    for note in notes:  # bags skipped, drops, actions clamped, cameras not served (also in risk_summary.json)
        log(f"note: risk data: {note}")
    if data is None:
        raise ValueError(f"no clip of {info.context_frames + horizon} frames at dt {info.dt:g} s with a known label "
                         f"in the bags with odometry:\n  " + "\n  ".join(notes))
    summary = {**data.summary(), "mirrored": mirror, "sources": [str(p) for p in paths], "notes": notes}
    log(f"risk data: {summary['clips']} clips{' (half of them mirrored)' if mirror else ''}; "
        f"{summary['positive_share']} of {summary['frames_labelled']} labelled frames blocked within "
        f"{rule.horizon_steps} steps")
    return data, summary


def _better(auc: float, best: float) -> bool:
    """Whether a validation AUC beats the best so far (NaN, one class absent, never does; any beats a NaN best)."""
    return not math.isnan(auc) and (math.isnan(best) or auc > best)


def train_risk(args) -> dict:
    """Run the stage (see the module docstring) and, unless args.no_export, export into args.model.

    Returns:
        The summary written to OUT/risk_summary.json.
    """
    import torch
    from tqdm import tqdm

    from sora_ros.core.machine import machine_description
    from sora_ros.core.risk import BlockedRule
    from sora_ros.model.export import export_risk
    from sora_ros.model.risk import RiskConfig, RiskGraph, RiskNet, prior_log_odds
    from sora_ros.model.trainer import learning_rate
    from sora_ros.runtime.engine import WorldModelEngine
    from sora_ros.runtime.model_dir import DYNAMICS_WEIGHTS, GRAPH_FILES
    from sora_ros.runtime.risk import risk_metrics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = WorldModelEngine(args.model)
    info = engine.info
    rule = BlockedRule(horizon_steps=args.horizon_steps, min_command=args.min_command,
                       progress_fraction=args.progress_fraction, command_timeout_s=args.command_timeout)
    checkpoint_path = out / RISK_CHECKPOINT
    # The head is only valid for the latents it was trained on: a checkpoint names the graphs' hashes.
    latent_graphs = {name: info.files[name] for name in (*GRAPH_FILES.values(), DYNAMICS_WEIGHTS)}
    payload = None
    if args.resume and checkpoint_path.exists():  # checked before minutes of data preparation
        payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if payload.get("format") != RISK_CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint_path}: not a risk-head checkpoint")
        if payload.get("latent_graphs") != latent_graphs:
            raise ValueError(f"{checkpoint_path} was trained on the latents of another model (its encoder or dynamics "
                             f"graphs differ from {args.model}'s): delete it or choose another --out")
        if payload.get("rule", asdict(rule)) != asdict(rule):  # checkpoints before the rule was kept: not checked
            raise ValueError(f"{checkpoint_path} was trained on labels of another rule ({payload['rule']}, not "
                             f"{asdict(rule)}): give its --horizon-steps, --min-command, --progress-fraction and "
                             f"--command-timeout, or choose another --out")
    frames = window_frames(args.frames, args.model, info.context_frames)
    train, train_summary = prepare(engine, args.data, args, rule, mirror=args.mirror,
                                   aspect_policy=args.aspect_policy)
    val, val_summary = (prepare(engine, args.val_data, args, rule, aspect_policy=args.aspect_policy) if args.val_data
                        else (None, None))
    enc, pred = train.samples(False, frames), train.samples(True, frames)  # (clip, frame) indices
    enc_labels = train.labels[enc]
    positives = float(enc_labels.sum())
    if positives == 0 or positives == len(enc_labels):
        raise ValueError(f"{'no' if positives == 0 else 'every'} labelled training frame is blocked within "
                         f"{rule.horizon_steps} steps: one class only, nothing to learn (more data, or check "
                         f"--odom-topic, --min-command, --progress-fraction)")
    torch.manual_seed(args.seed)
    config = RiskConfig(width=args.width, hidden=args.hidden, dropout=args.dropout, frames=frames)
    net = RiskNet(config, info.latent_shape, info.action_offset, info.action_scale,
                  torch.from_numpy(train.latents.mean(axis=(0, 1, 3, 4))),
                  torch.from_numpy(train.latents.std(axis=(0, 1, 3, 4)) + 1e-6))
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    state = {"step": 0, "wall_s": 0.0, "val": {}, "best": None}
    best_weights = None
    if payload is not None:
        config = RiskConfig.from_dict(payload["config"])
        net = RiskNet(config, info.latent_shape, info.action_offset, info.action_scale)
        net.load_state_dict(payload["net"])
        optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        optimizer.load_state_dict(payload["optimizer"])
        state, best_weights = payload["state"], payload.get("best_net")
        rng.bit_generator.state = json.loads(payload["rng"])
        print(f"resuming {checkpoint_path} at step {state['step']}")
    classes = [int(positives), len(enc_labels) - int(positives)]  # the loss's class balance, kept by the run
    if payload is not None and payload.get("classes", classes) != classes:
        print(f"note: {checkpoint_path} was trained with {payload['classes'][0]} blocked and {payload['classes'][1]} "
              f"free frames, these data have {classes[0]} and {classes[1]}: its class balance is kept, in the loss "
              f"and in the exported probabilities")
        classes = payload["classes"]
    elif payload is not None and "classes" not in payload:
        print(f"note: {checkpoint_path} does not record its class balance: the exported probabilities take these "
              f"data's, right only if they are the run's --data")
    # The cameras' grids the head trains on: a resumed run's data may lack some its checkpoint trained on.
    grids = sorted({tuple(grid) for grid in (payload or {}).get("grids", [])} | set(train.grids))
    if payload is not None and "grids" not in payload:
        print(f"note: {checkpoint_path} does not record the cameras' latent grids it trained on: model.json "
              f"risk.grids lists these data's, {[list(grid) for grid in train.grids]}")
    pos_weight = torch.tensor(classes[1] / classes[0])
    log_odds_shift = prior_log_odds(*classes)

    def save() -> None:
        payload = {"format": RISK_CHECKPOINT_FORMAT, "config": net.config.to_dict(), "net": net.state_dict(),
                   "optimizer": optimizer.state_dict(), "state": state, "rng": json.dumps(rng.bit_generator.state),
                   "best_net": best_weights, "latent_graphs": latent_graphs, "rule": asdict(rule), "classes": classes,
                   "grids": [list(grid) for grid in grids]}
        torch.save(payload, f"{checkpoint_path}.tmp")
        Path(f"{checkpoint_path}.tmp").replace(checkpoint_path)

    def batch(step: int) -> tuple:
        """A batch of (windows, actions, labels) tensors: encoded samples, and after the teacher
        phase ROLLOUT_SHARE of predicted ones."""
        share = 0.0 if step < teacher_steps else ROLLOUT_SHARE
        count = int(rng.binomial(args.batch, share))
        rows_e = rng.integers(len(enc[0]), size=args.batch - count)
        rows_p = rng.integers(len(pred[0]), size=count)
        parts = zip(train.gather(False, frames, enc[0][rows_e], enc[1][rows_e]),
                    train.gather(True, frames, pred[0][rows_p], pred[1][rows_p]))
        return tuple(torch.from_numpy(np.ascontiguousarray(np.concatenate(p), np.float32)) for p in parts)

    def validate() -> dict:
        net.eval()
        with torch.no_grad():
            metrics = risk_metrics(lambda z, a: graph(torch.from_numpy(z), torch.from_numpy(a)).numpy(), val, frames)
        net.train()
        return metrics

    graph = RiskGraph(net, log_odds_shift)  # what risk.onnx will compute: calibrated probabilities
    teacher_steps = round(args.teacher_fraction * args.steps)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    bar = tqdm(range(state["step"], args.steps), initial=state["step"], total=args.steps, desc="risk",
               dynamic_ncols=True, disable=None)
    began = time.monotonic() - state["wall_s"]
    net.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        latents, actions, labels = batch(step)
        loss = loss_fn(net(latents, actions), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["step"], state["wall_s"] = step + 1, time.monotonic() - began
        bar.set_postfix(loss=f"{loss.item():.3g}")
        done = step + 1 == args.steps
        if val is not None and ((step + 1) % args.val_every == 0 or done):
            state["val"] = {"step": step + 1, **validate()}
            bar.write(f"[risk {step + 1}] validation: " + json.dumps(state["val"]))
            if state["best"] is None or _better(state["val"]["auc_predicted"], state["best"]["auc_predicted"]):
                state["best"] = state["val"]
                best_weights = {key: value.clone() for key, value in net.state_dict().items()}
        if (step + 1) % args.checkpoint_every == 0 or done:
            save()
    bar.close()
    if best_weights is not None:
        net.load_state_dict(best_weights)
    summary = {"command": args.command, "steps": state["step"], "wall_time_s": round(state["wall_s"], 1),
               "batch": args.batch, "lr": args.lr, "weight_decay": args.weight_decay, "teacher_fraction": args.teacher_fraction,
               "mirror": args.mirror,
               "topics": {"image": args.image_topic, "cmd_vel": args.action_topic, "odometry": args.odom_topic},
               "rule": asdict(rule), "data": train_summary, "validation": state["best"] or {},
               "validation_data": val_summary, "machine": machine_description()}
    (out / "risk_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.no_export:
        metrics = {"validation": state["best"] or {}, "validation_data": [str(p) for p in args.val_data or []]}
        summary["parity"] = export_risk(graph, args.model, horizon_steps=rule.horizon_steps,
                                        label=rule.describe(info.dt, args.action_topic, args.odom_topic),
                                        rule=asdict(rule), metrics=metrics, training=summary, seed=args.seed,
                                        grids=grids)
        print(f"added risk.onnx to {args.model} (parity {summary['parity']:.2e})")
    return summary
