"""`sora-ros export`: a checkpoint (or an untrained preset, or an older model directory's ONNX graphs) to a model directory."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from sora_ros.cli.arguments import occupied_dir_problem, out_dir, out_dir_problem, random_seed, refused
from sora_ros.core.files import staged_path
from sora_ros.runtime.model_dir import DYNAMICS_WEIGHTS, GRAPH_FILES, MODEL_JSON


def main(args: argparse.Namespace) -> int:
    problem = out_dir_problem(args.out) or occupied_dir_problem(args.out, args.force, "replace it with the new model")
    if refused("export", "--out", problem):  # before the checkpoint is loaded and the graphs exported
        return 2
    from sora_ros.model import export as exporter
    from sora_ros.model.checkpoint import CheckpointError
    from sora_ros.model.export import ExportError, export_model
    from sora_ros.model.weights import WEIGHTS_FILE, WeightsError
    from sora_ros.runtime.model_dir import ModelDirError

    try:
        source = _load_source(args)
    except (CheckpointError, ModelDirError, WeightsError, ExportError) as error:
        print(f"sora-ros export: {error}", file=sys.stderr)
        return 1
    # A link to a model directory: the directory it names is replaced, the link stays.
    target = args.out.resolve() if args.out.is_symlink() else args.out
    staged = target
    try:
        # replace: --out is absent, empty or --force (checked above); the old one goes only once the new is whole.
        with staged_path(target, replace=True) as staged:
            report = export_model(source.vae, source.dit, staged, version=source.version, training=source.training,
                                  evaluation=source.evaluation, parent=source.parent, seed=args.seed)
            if source.anchor is not None:
                report.parity["anchor"] = exporter.export_anchor(source.anchor, staged, training=source.anchor_training,
                                                                 seed=args.seed)  # fmt: skip
    except ExportError as error:
        _print_parity(error.parity, exporter.PARITY_TOLERANCE)
        print(f"export failed, nothing written: {str(error).replace(str(staged), str(args.out))}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, or a change since the check
        print(f"sora-ros export: cannot write {args.out}: {error}", file=sys.stderr)
        return 1
    _print_parity(report.parity, exporter.PARITY_TOLERANCE)
    extra = ", anchor.onnx" if source.anchor is not None else ""
    print(f"wrote {args.out}/ ({', '.join(sorted(GRAPH_FILES.values()))}{extra}, {DYNAMICS_WEIGHTS}, "
          f"{WEIGHTS_FILE}, {MODEL_JSON})")
    if source.parent:
        print(f"parent model: {source.parent['id']} (weights sha256 {source.parent['weights_sha256'][:12]}...)")
    return 0


@dataclass
class _Source:
    """What an export writes: the modules and the records model.json carries over."""

    vae: object
    dit: object
    version: str
    training: dict | None
    evaluation: dict | None = None  # filled by `sora-ros eval --record-in-model`
    parent: dict | None = None
    anchor: object = None
    anchor_training: dict | None = None


def _load_source(args: argparse.Namespace) -> _Source:
    """The modules to export, from --from-onnx, --checkpoint or --preset.

    Raises:
        CheckpointError: --checkpoint is not a readable sora_ros checkpoint.
        ModelDirError, WeightsError, ExportError: --from-onnx is not a model directory whose weights
            can be recovered from its graphs.
    """
    if args.from_onnx:
        from sora_ros.model.onnx_weights import recover_modules
        from sora_ros.runtime.model_dir import read_model_info

        raw = read_model_info(args.from_onnx).raw
        _, vae, dit, anchor = recover_modules(args.from_onnx, seed=args.seed)
        print(f"recovered the weights of {args.from_onnx} from its ONNX graphs (parity with them checked)")
        return _Source(vae, dit, raw.get("version", args.version), raw.get("training"), raw.get("evaluation"),
                       raw.get("parent"), anchor, (raw.get("anchor") or {}).get("training"))  # fmt: skip
    if args.checkpoint:
        from sora_ros.model.checkpoint import load_checkpoint
        from sora_ros.model.fine_tune import carried_anchor
        from sora_ros.model.trainer import training_record

        checkpoint = load_checkpoint(args.checkpoint)
        parent, anchor = checkpoint.extra.get("parent"), carried_anchor(checkpoint.extra)
        anchor_training = None if anchor is None else \
            {"carried_over_from": parent, "note": checkpoint.extra["anchor"]["note"]}
        return _Source(checkpoint.vae, checkpoint.dit, args.version, training_record(checkpoint.extra),
                       parent=parent, anchor=anchor, anchor_training=anchor_training)  # fmt: skip
    import torch

    from sora_ros.model.config import preset
    from sora_ros.model.dit import DiT
    from sora_ros.model.vae import VAE

    torch.manual_seed(args.seed)
    config = preset(args.preset)
    training = {"command": None, "data": None, "steps": 0, "wall_time_s": None,
                "note": f"untrained: random weights of preset {args.preset} (for benchmarks and tests)"}
    return _Source(VAE(config.vae), DiT(config), args.version, training)


def _print_parity(parity: dict[str, float], tolerance: float) -> None:
    """One line per graph checked: its ONNX Runtime vs torch difference, pass or FAIL against `tolerance`."""
    for graph, error in parity.items():
        verdict = "pass" if error <= tolerance else "FAIL"
        print(f"parity {graph:17s} max |ORT - torch| = {error:.2e}  {verdict} (tolerance {tolerance:.0e})")


def _version(text: str) -> str:
    """A model version as model.json and model ids (name@version#hash) carry it: 1 to 64 letters,
    digits and . _ + -, starting with a letter or digit.

    Raises:
        argparse.ArgumentTypeError: anything else (empty, spaces, slashes).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", text):
        raise argparse.ArgumentTypeError(f"must be 1 to 64 letters, digits and . _ + - starting with a letter or "
                                         f"digit, e.g. 1.2.0; got {text!r}")
    return text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.model.config import PRESETS

    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to a model directory (ONNX graphs + model.json)",
        description="Export a trained checkpoint (or an untrained preset, for benchmarks) to a model "
        "directory with ONNX graphs and model.json, and check ONNX Runtime against torch.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="checkpoint written by sora-ros train: RUN/checkpoint.pt (last) or "
                             "RUN/checkpoint_best.pt (best validation)")  # fmt: skip
    source.add_argument("--preset", choices=sorted(PRESETS), help="export random weights of this size preset")
    source.add_argument("--from-onnx", type=Path, metavar="MODEL_DIR",
                        help="a model directory exported before weights.safetensors was shipped: recover its "
                             "weights from its ONNX graphs (checked against them) and write it again with them, "
                             "so that sora-ros train --init can fine-tune it")  # fmt: skip
    parser.add_argument("--out", type=out_dir, required=True,
                        help="model directory to write: a new one, or an empty one (with --force, any: replaced)")
    parser.add_argument("--force", action="store_true",
                        help="replace a --out that holds files (the old directory goes only once the new one is "
                             "complete and checked)")  # fmt: skip
    parser.add_argument("--version", type=_version, default="0.1.0",
                        help="model version for model.json: letters, digits and . _ + - (e.g. 1.2.0)")
    parser.add_argument("--seed", type=random_seed, default=0, help="seed of the random weights (--preset) and parity inputs")
    parser.set_defaults(func=main)
