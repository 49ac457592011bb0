"""`sora-ros bench fine-tune`: the shipped model on a robot it never saw, un-tuned, fine-tuned for a
few CPU-minutes, and trained from scratch for as long, scored on held-out episodes.

The "new robot" is the simulator with a world and camera the default never saw (NEW_ROBOT: a
smaller room, fewer objects, the camera higher and pitched further down). Its episodes come from
seeds the default never trained on, split into the driving to fine-tune on (TRAIN_EPISODES x
EPISODE_SECONDS, about 5 minutes), validation episodes (what the fine-tune reports as it goes) and
held-out episodes that only the scores below see. Then, each step a `sora-ros` command of its own
(printed as it runs, so every number can be rerun by hand):

  1. eval the parent (--model) on the held-out episodes;
  2. one fine-tune (`train --init`, constant learning rate) of max(--minutes) CPU-minutes, with a
     snapshot at each smaller budget (what a run of that budget gives under a constant rate);
  3. one training from scratch per budget (cosine schedule over the budget, VAE then DiT);
  4. export and eval every checkpoint the same way;
  5. the parent and the fine-tuned models again without the anchored decoder (the VAE decodes the
     DiT's latents, as in the scratch models: where the DiT's gain shows; the anchored decoder warps);
  6. RESULTS.md (a table per horizon against copy-last and flow), results.json and fine_tune.png.

Budgets are CPU-minutes of training steps (trainer.cpu_seconds), so a busy machine gives every run
the same compute; the runs use OMP_NUM_THREADS=1 so waiting threads do not burn the budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sora_ros.core.machine import machine_description
from sora_ros.evaluation.scoring import COPY_LAST

# The robot the parent never saw: `sora-ros sim record` flags (the default's world: 8 m room,
# 30 objects, camera 0.3 m high pitched -10 degrees).
NEW_ROBOT = ("--world-size", "5", "--objects", "12", "--camera-height", "0.5", "--camera-pitch", "-20")
# Seeds of its episodes (the default trained on seeds 0-99), per split: (first seed, episodes).
SPLITS = {"train": (1000, 19), "val": (1100, 3), "test": (1200, 6)}
EPISODE_SECONDS = 16
IMAGE_TOPIC, ACTION_TOPIC = "/camera/image_raw", "/cmd_vel"
# Training options shared by every run (those of scripts/train_default.sh where they apply).
COMMON_TRAIN = ("--sequence-frames", "16", "--dit-batch", "16", "--vae-batch", "32", "--log-every", "25")
HORIZONS = (1, 2, 4, 8)
# Frames between the starts of scored clips: 6 held-out episodes of 160 frames give ~110 clips.
EVAL_STRIDE = 8
# The flow-extrapolation baseline's name in `sora-ros eval` (evaluation/predictors.py).
FLOW = "flow"
RESULTS_NAME, PLOT_NAME, TABLE_NAME = "results.json", "fine_tune.png", "RESULTS.md"
# Suffix of the models scored without their anchored decoder.
NO_ANCHOR = "_vae_decoder"


def _run(command: list[str], log: Path) -> None:
    """Run one sora-ros command (printed first), its output appended to `log`.

    Raises:
        RuntimeError: it failed (the message names the log).
    """
    print("$ " + " ".join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "a") as stream:
        stream.write("$ " + " ".join(command) + "\n")
        stream.flush()
        if subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env).returncode != 0:
            raise RuntimeError(f"failed: {' '.join(command)} (see {log})")


def _sora(*args: str) -> list[str]:
    return [sys.executable, "-m", "sora_ros.cli", *args]


def _evaluate(model: Path, test: Path, out: Path, log: Path) -> dict:
    """Eval `model` on the held-out episodes (skipped when out/metrics.json exists); its metrics.json."""
    if not (out / "metrics.json").exists():
        _run(_sora("eval", str(test), "--action-topic", ACTION_TOPIC, "--model", str(model), "--out", str(out),
                   "--horizons", ",".join(map(str, HORIZONS)), "--stride", str(EVAL_STRIDE), "--force"), log)  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def _per_horizon(metrics: dict) -> dict:
    """{"model": {"h": mean PSNR dB}, "copy_last": ..., "flow": ...} from an eval's metrics.json."""
    methods = metrics["methods"]
    scores = {key: {h: methods[name][h]["psnr"]["mean"] for h in methods[name]}
              for key, name in (("model", "model"), ("copy_last", COPY_LAST), ("flow", FLOW))}  # fmt: skip
    return {**scores, "anchored": bool(metrics.get("anchored")), "clips": metrics.get("clips")}


def run(args) -> int:
    out = Path(args.out)
    data, runs, models, evals = out / "data", out / "runs", out / "models", out / "eval"
    for folder in (data, runs, models, evals):
        folder.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    started = time.monotonic()
    budgets = sorted(args.minutes)
    if args.model is None:
        from sora_ros.core.paths import default_model_dir

        args.model = default_model_dir()
    try:
        from sora_ros.runtime.model_dir import read_model_info

        parent_info = read_model_info(args.model)
        if "weights.safetensors" not in parent_info.files:
            print(f"sora-ros bench fine-tune: {args.model} has no weights.safetensors; write a copy with them: "
                  f"sora-ros export --from-onnx {args.model} --out out/default_with_weights, and pass --model "
                  "out/default_with_weights", file=sys.stderr)  # fmt: skip
            return 1
        for split, (seed, episodes) in SPLITS.items():
            if not (data / split).is_dir():
                _run(_sora("sim", "record", "--episodes", str(episodes), "--seed", str(seed), "--seconds",
                           str(EPISODE_SECONDS), "--out", str(data / split), "--workers", "2", "--quiet", *NEW_ROBOT), log)  # fmt: skip
        bags = ("--data", str(data / "train"), "--val-data", str(data / "val"), "--image-topic", IMAGE_TOPIC,
                "--action-topic", ACTION_TOPIC)  # fmt: skip
        results = {"parent": _per_horizon(_evaluate(Path(args.model), data / "test", evals / "parent", log))}
        fine = runs / "fine_tune"
        if not (fine / "train_summary.json").exists():
            # --force: a run without its summary was stopped part-way; it starts over, as it always did.
            _run(_sora("train", "--init", str(args.model), *bags, "--out", str(fine), "--force", "--name", "fine_tuned",
                       "--minutes", str(budgets[-1]), "--snapshot-minutes", *map(str, budgets[:-1]),
                       "--dit-steps", "100000", "--val-every", "100", "--checkpoint-every", "100000", *COMMON_TRAIN), log)  # fmt: skip
        for minutes in budgets:
            checkpoint = fine / (f"checkpoint_{minutes:g}min.pt" if minutes != budgets[-1] else "checkpoint.pt")
            results[f"fine_tuned_{minutes:g}min"] = _score(checkpoint, f"fine_tuned_{minutes:g}min", models, evals,
                                                            data, log)  # fmt: skip
            scratch = runs / f"scratch_{minutes:g}min"
            if not (scratch / "train_summary.json").exists():  # written when a run finishes
                _run(_sora("train", *bags, "--out", str(scratch), "--force", "--name", "scratch", "--minutes", str(minutes),
                           "--vae-steps", "100000", "--dit-steps", "100000", "--val-every", "100000",
                           "--checkpoint-every", "100000", *COMMON_TRAIN), log)  # fmt: skip
            results[f"scratch_{minutes:g}min"] = _score(scratch / "checkpoint.pt", f"scratch_{minutes:g}min", models,
                                                         evals, data, log)  # fmt: skip
        # The anchored decoder warps the last frame and is carried over unchanged: the DiT's gain shows
        # where its latents are decoded by the VAE alone, as the scratch models' are; score them so too.
        for name, source in (("parent", Path(args.model)),
                             *((f"fine_tuned_{m:g}min", models / f"fine_tuned_{m:g}min") for m in budgets)):  # fmt: skip
            plain = models / f"{name}{NO_ANCHOR}"
            if not (plain / "model.json").exists():
                without_anchor(source, plain)
            results[f"{name}{NO_ANCHOR}"] = _per_horizon(_evaluate(plain, data / "test", evals / f"{name}{NO_ANCHOR}", log))
    except (RuntimeError, OSError, ValueError) as error:
        print(f"sora-ros bench fine-tune: {error}", file=sys.stderr)
        return 1
    report = {"machine": machine_description(), "new_robot": " ".join(NEW_ROBOT), "splits": SPLITS,
              "episode_seconds": EPISODE_SECONDS, "parent": str(args.model), "budgets_cpu_minutes": budgets,
              "wall_s": round(time.monotonic() - started, 1), "psnr_db": results}  # fmt: skip
    (out / RESULTS_NAME).write_text(json.dumps(report, indent=2) + "\n")
    (out / TABLE_NAME).write_text(results_table(report))
    print((out / TABLE_NAME).read_text())
    print(f"plot: {plot_results(report, out / PLOT_NAME)}")
    return 0


def without_anchor(source: Path, out: Path) -> None:
    """A copy of a model directory without its anchored decoder (predictions decoded by the VAE)."""
    import shutil

    from sora_ros.runtime.anchor import ANCHOR_FILE
    from sora_ros.runtime.model_dir import MODEL_JSON, write_model_json

    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name not in (ANCHOR_FILE, MODEL_JSON):
            shutil.copy2(path, out / path.name)
    model = json.loads((source / MODEL_JSON).read_text())
    model.pop("anchor", None)
    model["files"].pop(ANCHOR_FILE, None)
    write_model_json(out, model)


def _score(checkpoint: Path, name: str, models: Path, evals: Path, data: Path, log: Path) -> dict:
    """Export a checkpoint (unless already exported) and eval it: PSNR per horizon."""
    if not (models / name / "model.json").exists():  # --force: over what an interrupted older run left there
        _run(_sora("export", "--checkpoint", str(checkpoint), "--out", str(models / name), "--force"), log)
    return _per_horizon(_evaluate(models / name, data / "test", evals / name, log))


def results_table(report: dict) -> str:
    """Markdown: PSNR (dB) per horizon, one table per scoring resolution (an anchored model's
    predictions are scored at the camera's, the others at the model's), each with copy-last and flow
    on the same clips."""
    results = report["psnr_db"]
    lines = [f"# Fine-tuning benchmark ({report['machine']})", "",
             f"New robot: `sora-ros sim record {report['new_robot']}`; parent `{report['parent']}`; budgets in "
             f"CPU-minutes of training steps; PSNR (dB) on the held-out episodes.", ""]  # fmt: skip
    groups = (("anchored decoder, scored at the camera's 128x128", True),
              ("VAE decoder, scored at the model's 64x64", False))  # fmt: skip
    for title, anchored in groups:
        names = [name for name, scores in results.items() if scores["anchored"] == anchored]
        if not names:
            continue
        lines += [f"## {title}", "", "| model | " + " | ".join(f"h={h}" for h in HORIZONS) + " |",
                  "|---|" + "---:|" * len(HORIZONS)]  # fmt: skip
        for name in names:
            lines.append(f"| {name} | " + " | ".join(f"{results[name]['model'][str(h)]:.2f}" for h in HORIZONS) + " |")
        for baseline in ("copy_last", "flow"):
            row = results[names[0]][baseline]
            lines.append(f"| {baseline} | " + " | ".join(f"{row[str(h)]:.2f}" for h in HORIZONS) + " |")
        lines.append("")
    lines += [f"Wall time of the whole benchmark: {report['wall_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def plot_results(report: dict, path: Path) -> str:
    """PSNR at h=1 and h=4 against training CPU-minutes, fine-tuned vs from scratch (all decoded by
    their VAE, at the model's resolution), the un-tuned parent and the baselines as lines; the path
    written, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not written: matplotlib is in the eval extra"
    results, budgets = report["psnr_db"], report["budgets_cpu_minutes"]
    parent = results[f"parent{NO_ANCHOR}"]  # every line at the model's 64x64, the scratch models' resolution
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for axis, h in zip(axes, ("1", "4")):
        for label, key, style in (("fine-tuned", "fine_tuned_{:g}min" + NO_ANCHOR, "o-"), ("from scratch", "scratch_{:g}min", "s--")):
            done = [m for m in budgets if key.format(m) in results]
            axis.plot(done, [results[key.format(m)]["model"][h] for m in done], style, label=label)
        for name, key, colour in (("un-tuned parent", "model", "black"), ("copy-last", "copy_last", "grey"),
                                  ("flow", "flow", "tab:green")):  # fmt: skip
            axis.axhline(parent[key][h], linestyle=":", color=colour, label=name)
        axis.set_title(f"h = {h}")
        axis.set_xlabel("training CPU-minutes")
        axis.set_ylabel("PSNR (dB), held-out episodes")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)
