"""`sora-ros export`: a checkpoint (or an untrained preset) to a model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sora_ros.runtime.model_dir import DYNAMICS_WEIGHTS, GRAPH_FILES, MODEL_JSON


def main(args: argparse.Namespace) -> int:
    import torch

    from sora_ros.model import export as exporter
    from sora_ros.model.checkpoint import load_checkpoint
    from sora_ros.model.export import ExportError, export_model
    from sora_ros.model.config import preset
    from sora_ros.model.dit import DiT
    from sora_ros.model.vae import VAE
    from sora_ros.model.trainer import training_record

    if args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint)
        vae, dit = checkpoint.vae, checkpoint.dit
        training = training_record(checkpoint.extra)
        evaluation = None  # filled by `sora-ros eval --record-in-model`
    else:
        torch.manual_seed(args.seed)
        config = preset(args.preset)
        vae, dit = VAE(config.vae), DiT(config)
        training = {"command": None, "data": None, "steps": 0, "wall_time_s": None,
                    "note": f"untrained: random weights of preset {args.preset} (for benchmarks and tests)"}
        evaluation = None
    try:
        report = export_model(vae, dit, args.out, version=args.version, training=training,
                              evaluation=evaluation, seed=args.seed)
    except ExportError as error:
        _print_parity(error.parity, exporter.PARITY_TOLERANCE)
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    _print_parity(report.parity, exporter.PARITY_TOLERANCE)
    print(f"wrote {report.directory}/ ({', '.join(sorted(GRAPH_FILES.values()))}, {DYNAMICS_WEIGHTS}, {MODEL_JSON})")
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
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--version", default="0.1.0", help="model version for model.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (--preset) and parity inputs")
    parser.set_defaults(func=main)
