"""Score predictors on clips: every method on exactly the same frames, per horizon.

A predictor sees the first K frames of a clip and the clip's actions and
predicts the next L = max(horizons) frames:

    predictor(context, actions) -> uint8 (L, H, W, 3)
    context: uint8 (K, H, W, 3) RGB, oldest first
    actions: float32 (K + L, A); actions[t] drives frame t to frame t + 1, so
             actions[K - 1 :] are the ones the prediction is made under.

Action sensitivity: the first predictor named in `shuffle_actions_of` is also
scored with the future actions of another clip, so a model that uses its
actions scores worse there, and one that ignores them scores the same. Clips
whose future actions are unknown (NaN: a source without the action topic) are
left out of it: shuffling unknown actions would change nothing and pull the gap
towards 0 dB.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from sora_ros.core.action_shuffle import ActionShuffler, action_gap
from sora_ros.core.regions import centre_square
from sora_ros.evaluation.metrics import FrameScores, skill_score, summarize

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
COPY_LAST = "copy-last"
SHUFFLED_SUFFIX = " (shuffled actions)"
# Example rollouts kept for the strip picture: a uniform sample of all clips (reservoir sampling,
# Vitter's Algorithm R, seeded), not the first few, which come from one bag's first seconds.
EXAMPLES_KEPT = 4


@dataclass
class Example:
    """One clip's context, true future and every method's prediction, for pictures."""

    index: int  # the clip's place in the evaluation, from 0
    source: str
    context: np.ndarray  # uint8 (K, H, W, 3)
    future: np.ndarray  # uint8 (L, H, W, 3)
    predictions: dict[str, np.ndarray]  # method -> uint8 (L, H, W, 3)


@dataclass
class Evaluation:
    """Per-frame scores of every method at every horizon, and a few examples."""

    horizons: list[int]
    context_length: int
    scores: dict[str, dict[int, list[FrameScores]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    examples: list[Example] = field(default_factory=list)
    clips: int = 0
    sources: set[str] = field(default_factory=set)
    # (camera (H0, W0), scored (H, W)) of the clips: where the central square and margins lie.
    shapes: set[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=set)
    # Indices (into each method's per-horizon score lists) of the clips also scored under shuffled actions.
    action_clips: list[int] = field(default_factory=list)


def evaluate(
    clips: Iterable,
    predictors: dict[str, Predictor],
    *,
    context_length: int,
    horizons: list[int],
    shuffle_actions_of: str | None = None,
    max_clips: int | None = None,
    seed: int = 0,
    progress: bool = True,
    on_clip: Callable[[object, dict[str, np.ndarray]], None] | None = None,
) -> Evaluation:
    """Run every predictor on every clip and score each predicted frame.

    Args:
        clips: objects with `frames` uint8 (T, H, W, 3), `actions` float32 (T, A), `source`
            and `camera_shape` ((H0, W0) the frames were fitted from, or None: as recorded),
            with T >= context_length + max(horizons).
        predictors: method name -> predictor (see the module docstring).
        context_length: K, frames the predictors see.
        horizons: steps ahead to score, e.g. [1, 2, 4, 8].
        shuffle_actions_of: a predictor to score again under other clips' actions.
        max_clips: stop after this many clips.
        seed: which other clip's actions the shuffled run gets, and which clips are the examples.
        progress: show a progress bar (on a terminal only: a log file or CI would get a line per update).
        on_clip: called with each clip and its predictions (method -> uint8 (L, H, W, 3)).

    Raises:
        ValueError: a clip too short, or a predictor returning the wrong shape.
    """
    lookahead = max(horizons)
    result = Evaluation(sorted(horizons), context_length)
    shuffle = ActionShuffler(seed)
    sampler = np.random.default_rng(seed)
    bar = tqdm(clips, total=max_clips, desc="evaluating", unit="clip", disable=None if progress else True)
    for clip in bar:
        frames, actions = clip.frames, clip.actions
        if frames.shape[0] < context_length + lookahead:
            raise ValueError(
                f"clip of {frames.shape[0]} frames from {clip.source} is shorter than "
                f"context {context_length} + largest horizon {lookahead}"
            )
        context = frames[:context_length]
        future = frames[context_length : context_length + lookahead]
        actions = actions[: context_length + lookahead]
        camera = tuple(clip.camera_shape or frames.shape[1:3])
        centre = centre_square(frames.shape[1:3], camera)
        predictions = {}
        for name, predictor in predictors.items():
            predictions[name] = _checked(name, predictor(context, actions), future.shape)
        if shuffle_actions_of is not None and _future_actions_known(actions, context_length, lookahead):
            result.action_clips.append(result.clips)
            shuffled = shuffle(actions, first_future=context_length - 1)
            name = shuffle_actions_of + SHUFFLED_SUFFIX
            predictions[name] = _checked(name, predictors[shuffle_actions_of](context, shuffled), future.shape)
        for name, predicted in predictions.items():
            for h in result.horizons:
                result.scores[name][h].append(FrameScores.of(predicted[h - 1], future[h - 1], context[-1], centre))
        if on_clip is not None:
            on_clip(clip, predictions)
        kept = result.clips if result.clips < EXAMPLES_KEPT else int(sampler.integers(result.clips + 1))
        if kept < EXAMPLES_KEPT:
            example = Example(result.clips, clip.source, context, future, predictions)
            result.examples[kept:kept + 1] = [example]
        result.clips += 1
        result.sources.add(str(clip.source))
        result.shapes.add((camera, tuple(frames.shape[1:3])))
        if max_clips is not None and result.clips >= max_clips:
            if hasattr(clips, "close"):  # a generator: let it report what it read (its notes) now
                clips.close()
            break
    bar.close()
    result.examples.sort(key=lambda example: example.index)
    return result


def _future_actions_known(actions: np.ndarray, context_length: int, lookahead: int) -> bool:
    """Whether the clip has any known action (not NaN) among those its prediction is made under."""
    future = actions[context_length - 1 : context_length - 1 + lookahead]  # (L, A)
    return future.shape[1] > 0 and not np.isnan(future).all()


def _checked(name: str, predicted: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if predicted.shape != shape or predicted.dtype != np.uint8:
        raise ValueError(f"predictor {name!r} returned {predicted.dtype} {predicted.shape}, expected uint8 {shape}")
    return predicted


# margin_psnr is None for frames without margins: left out, and absent where no frame had any.
METRICS = ("psnr", "ssim", "mse", "moving_psnr", "moving_ssim", "moving_mse", "centre_psnr", "margin_psnr")


def summarize_evaluation(result: Evaluation) -> dict:
    """Mean and 95% CI of every metric per method and horizon, skill scores, and action sensitivity.

    Returns:
        {"methods": {name: {h: {metric: summary}}}, "skill": {name: {h: score}},
         "action_sensitivity": {name: {h: PSNR gap, true minus shuffled actions}},
         "action_clips": the number of clips with known actions the gap is measured on,
         "margins_note": None, or why no frame had margins to score}
        with horizons as ints; "margin_psnr" only where some scored frame had margins.
    """
    methods = {name: {h: _summaries(frames) for h, frames in by_horizon.items()}
               for name, by_horizon in result.scores.items()}  # fmt: skip
    skill = {}
    if COPY_LAST in result.scores:
        for name, by_horizon in result.scores.items():
            skill[name] = {
                h: skill_score(
                    float(np.mean([s.mse for s in frames])),
                    float(np.mean([s.mse for s in result.scores[COPY_LAST][h]])),
                )
                for h, frames in by_horizon.items()
            }
    sensitivity = {}
    for shuffled_name in [n for n in result.scores if n.endswith(SHUFFLED_SUFFIX)]:
        name = shuffled_name.removesuffix(SHUFFLED_SUFFIX)
        sensitivity[name] = {
            h: action_gap([result.scores[name][h][i].psnr for i in result.action_clips],
                          [s.psnr for s in result.scores[shuffled_name][h]])
            for h in result.horizons
        }
    return {"methods": methods, "skill": skill, "action_sensitivity": sensitivity,
            "action_clips": len(result.action_clips),
            "margins_note": _margins_note(methods, result.shapes)}  # fmt: skip


def _summaries(frames: list[FrameScores]) -> dict[str, dict]:
    """metric -> `summarize` of the frames' values, for every metric some frame has (not None)."""
    values = {metric: [v for v in (getattr(s, metric) for s in frames) if v is not None] for metric in METRICS}
    return {metric: summarize(found) for metric, found in values.items() if found}


def _margins_note(methods: dict, shapes: set[tuple[tuple[int, int], tuple[int, int]]]) -> str | None:
    """None when some frame's margins were scored, else why none were: square cameras, or frames
    scored on the camera's square crop (the border it drops was never predicted)."""
    if any("margin_psnr" in metrics for by_horizon in methods.values() for metrics in by_horizon.values()):
        return None
    cropped = sorted({camera for camera, _ in shapes if camera[0] != camera[1]})
    if not cropped:
        return "No margins: the cameras are square, their central square is the whole frame."
    cameras = ", ".join(f"{w}x{h}" for h, w in cropped)
    return (f"No margins: the frames are scored on the central square of the {cameras} camera frames (a model "
            "that takes square frames only: a fixed square input, or a square aspect range under --aspect-policy "
            "crop), so the borders the crop drops are neither predicted nor scored.")
