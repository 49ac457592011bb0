"""`sora-ros export`: a checkpoint (or an untrained preset, or an older model directory's ONNX graphs) to a model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sora_ros.cli.arguments import out_dir, out_dir_problem
from sora_ros.runtime.model_dir import DYNAMICS_WEIGHTS, GRAPH_FILES, MODEL_JSON


def main(args: argparse.Namespace) -> int:
    problem = out_dir_problem(args.out)
    if problem:  # before the checkpoint is loaded and the graphs exported
        print(f"sora-ros export: --out {problem}", file=sys.stderr)
        return 2
    import torch

    from sora_ros.model import export as exporter
    from sora_ros.model.checkpoint import load_checkpoint
    from sora_ros.model.export import ExportError, export_model
    from sora_ros.model.config import preset
    from sora_ros.model.dit import DiT
    from sora_ros.model.vae import VAE
    from sora_ros.model.fine_tune import carried_anchor
    from sora_ros.model.trainer import training_record
    from sora_ros.model.weights import WEIGHTS_FILE

    parent, anchor, anchor_training = None, None, None
    if args.from_onnx:
        from sora_ros.model.onnx_weights import recover_modules
        from sora_ros.model.weights import WeightsError
        from sora_ros.runtime.model_dir import ModelDirError, read_model_info

        try:
            raw = read_model_info(args.from_onnx).raw
            _, vae, dit, anchor = recover_modules(args.from_onnx, seed=args.seed)
        except (ModelDirError, WeightsError, ExportError) as error:
            print(f"export failed: {error}", file=sys.stderr)
            return 1
        print(f"recovered the weights of {args.from_onnx} from its ONNX graphs (parity with them checked)")
        training, evaluation, parent = raw.get("training"), raw.get("evaluation"), raw.get("parent")
        anchor_training = (raw.get("anchor") or {}).get("training")
        args.version = raw.get("version", args.version)
    elif args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint)
        vae, dit = checkpoint.vae, checkpoint.dit
        training = training_record(checkpoint.extra)
        evaluation = None  # filled by `sora-ros eval --record-in-model`
        parent = checkpoint.extra.get("parent")
        anchor = carried_anchor(checkpoint.extra)
        if anchor is not None:
            anchor_training = {"carried_over_from": parent, "note": checkpoint.extra["anchor"]["note"]}
    else:
        torch.manual_seed(args.seed)
        config = preset(args.preset)
        vae, dit = VAE(config.vae), DiT(config)
        training = {"command": None, "data": None, "steps": 0, "wall_time_s": None,
                    "note": f"untrained: random weights of preset {args.preset} (for benchmarks and tests)"}
        evaluation = None
    try:
        report = export_model(vae, dit, args.out, version=args.version, training=training,
                              evaluation=evaluation, parent=parent, seed=args.seed)
        if anchor is not None:
            report.parity["anchor"] = exporter.export_anchor(anchor, args.out, training=anchor_training, seed=args.seed)
    except ExportError as error:
        _print_parity(error.parity, exporter.PARITY_TOLERANCE)
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    _print_parity(report.parity, exporter.PARITY_TOLERANCE)
    extra = ", anchor.onnx" if anchor is not None else ""
    print(f"wrote {report.directory}/ ({', '.join(sorted(GRAPH_FILES.values()))}{extra}, {DYNAMICS_WEIGHTS}, "
          f"{WEIGHTS_FILE}, {MODEL_JSON})")
    if parent:
        print(f"parent model: {parent['id']} (weights sha256 {parent['weights_sha256'][:12]}...)")
    return 0


def _print_parity(parity: dict[str, float], tolerance: float) -> None:
    """One line per graph checked: its ONNX Runtime vs torch difference, pass or FAIL against `tolerance`."""
    for graph, error in parity.items():
        verdict = "pass" if error <= tolerance else "FAIL"
        print(f"parity {graph:17s} max |ORT - torch| = {error:.2e}  {verdict} (tolerance {tolerance:.0e})")


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
    parser.add_argument("--out", type=out_dir, required=True, help="model directory to write")
    parser.add_argument("--version", default="0.1.0", help="model version for model.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (--preset) and parity inputs")
    parser.set_defaults(func=main)
