"""`sora-ros quantize`: add int8 versions of the dynamics graphs to a model directory.

    sora-ros quantize --model models/default

The float32 graphs stay; the int8 ones (dynamics_context.int8.onnx, dynamics.int8.onnx) are used
where asked for: the node's `dynamics_precision:=int8`, `sora-ros eval --dynamics-precision int8`
(to measure what they cost in PSNR), `sora-ros bench model` (their what-if rows). They pay on a
CPU with integer dot-product instructions; a GPU runs float32. See sora_ros/model/quantize.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sora_ros.cli.arguments import random_seed


def main(args: argparse.Namespace) -> int:
    from sora_ros.model.quantize import RELATIVE_TOLERANCE, QuantizeError, add_int8_dynamics
    from sora_ros.runtime.model_dir import INT8_GRAPH_FILES, ModelDirError

    try:
        parity = add_int8_dynamics(args.model, seed=args.seed)
    except (ModelDirError, QuantizeError) as error:
        print(f"sora-ros quantize: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a read-only directory, a full disk
        print(f"sora-ros quantize: cannot write into {args.model}: {error}", file=sys.stderr)
        return 1
    for graph, figures in parity.items():
        print(f"parity {graph:17s} mean |int8 - float32| / mean |float32| = {figures['relative_error']:.4f} "
              f"(tolerance {RELATIVE_TOLERANCE}), max abs {figures['max_abs_error']:.3f}")
    print(f"wrote {', '.join(INT8_GRAPH_FILES.values())} into {args.model} and listed them in model.json")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from sora_ros.core.paths import default_model_dir

    parser = subparsers.add_parser("quantize", help="add int8 dynamics graphs to a model directory (faster CPU what-ifs)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="exported model directory to add to")
    parser.add_argument("--seed", type=random_seed, default=0, help="seed of the random parity inputs")
    parser.set_defaults(func=main)
