"""Held-out scoring of a model's risk head: ROC AUC of "blocked within the next k steps" on
encoder latents of real frames and on the dynamics' predicted latents, labelled from the bags'
odometry and commands by the rule the head was trained with (model.json "risk.rule")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from functools import partial
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from sora_ros.bag.motion import labelled_clips, motion_bags
from sora_ros.core.risk import BlockedRule
from sora_ros.evaluation.spread import SpreadClips, cap_note
from sora_ros.runtime.risk import camera_views, collect_risk_data, risk_metrics


def model_rule(risk: dict) -> BlockedRule:
    """The label rule of a model.json "risk" section: its "rule" thresholds (defaults for any it
    lacks) with its horizon_steps.

    Raises:
        ValueError: a threshold out of range.
    """
    known = {f.name for f in fields(BlockedRule)}
    given = {key: value for key, value in (risk.get("rule") or {}).items() if key in known}
    return BlockedRule(**{**given, "horizon_steps": risk["horizon_steps"]})


def evaluate_risk(engine, paths: list[str | Path], image_topic: str, action_topic: str, odom_topic: str,
                  notes: list[str], max_clips: int | None = None, aspect_policy: str = "refuse") -> dict | None:
    """Score `engine.risk` on held-out bags (clips of K + H frames, one every H frames), each camera
    encoded and rolled out at its own grid as the live node does (`collect_risk_data`).

    Args:
        engine: a WorldModelEngine with a risk head.
        paths: bags or folders of them; those without `odom_topic` or `action_topic` are skipped (noted).
        notes: receives one line per bag skipped, per kind of message dropped, for actions clamped,
            per bag whose camera's aspect ratio the model does not serve (its clips skipped), and when
            some camera's latent grid is not one the head trained on (model.json risk.grids).
        max_clips: stop after this many clips (None: all), taken in turn from every bag with both topics as
            `eval --max-clips` takes the predictions' clips (sora_ros.evaluation.spread); a note says what the
            cap left out.
        aspect_policy: a camera outside the model's aspect range: "refuse" skips its clips, "crop" scores
            its centred window in the range (`camera_views`), as the node's parameter of that name and
            `eval --aspect-policy` do.

    Returns:
        risk_metrics (auc_encoded, auc_predicted, per step, auc_forecast, samples, positive_share) plus the rule
        and counts, or None when no bag gives a clip with a known label.

    Raises:
        ValueError: no bag has both topics (naming them).
    """
    info = engine.info
    rule = model_rule(info.risk)
    horizon = info.default_horizon

    def clips_of(bags: list) -> Iterator:
        clips = labelled_clips(bags, image_topic, action_topic, odom_topic, rule, dt=info.dt,
                               length=info.context_frames + horizon, stride=horizon, size=None,
                               action_names=info.action_names, notes=notes)
        return camera_views(info, clips, aspect_policy)

    usable = motion_bags(paths, action_topic, odom_topic, notes)  # raises when none has both topics
    # With a cap, in turn from every bag, as `eval --max-clips` takes the predictions' clips.
    spread = None if max_clips is None else SpreadClips(usable, lambda bag: clips_of([bag]))
    try:
        data = collect_risk_data(engine, islice(clips_of(usable) if spread is None else spread, max_clips), horizon,
                                 progress=partial(tqdm, desc="risk rollouts", dynamic_ncols=True, disable=None),
                                 notes=notes)  # fmt: skip
    finally:
        if spread is not None:
            spread.close()
    capped = None if spread is None else cap_note(spread.coverage(max_clips), "labelled clips",
                                                  f"one every {horizon} frames")
    if capped:
        notes.append(capped)
    if data is None:
        return None
    untrained = set(data.grids) - engine.risk.trained_grids
    if untrained:  # collect_risk_data resampled them, so the head's own warning never sees them
        def named(grids) -> str:
            return ", ".join(f"{h}x{w}" for h, w in sorted(grids))
        notes.append(f"the head never trained on the latent grid(s) {named(untrained)} of these cameras (it trained "
                     f"on {named(engine.risk.trained_grids)}): the scores tell how it does on views it never saw")
    return {**risk_metrics(engine.risk.probabilities, data, engine.risk.frames), "horizon_steps": rule.horizon_steps,
            "label": info.risk["label"], "clips": data.summary()["clips"]}
