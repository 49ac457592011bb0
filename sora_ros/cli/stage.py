"""The command-line run of a training stage that adds a graph to an exported model
(`sora-ros train-anchor`, `sora-ros train-risk`): the same checks, errors and last line for each.
Not a subcommand itself."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from pathlib import Path

from sora_ros.cli.arguments import out_dir_problem, refused


def _replace_problem(args: argparse.Namespace, graph: str) -> str | None:
    """Why the stage may not add `graph` to --model: it has one, and --force does not say to replace it."""
    if args.no_export or args.force or not (Path(args.model) / graph).exists():
        return None
    return (f"{args.model} already has {graph}: --force replaces it once the new one is trained, --no-export "
            "only trains, or name another --model (a copy)")


def run_stage(args: argparse.Namespace, command: str, stage: str, checkpoint: str, graph: str) -> int:
    """Run `stage` ("module:function", called with `args`, returning a summary with "validation")
    that adds `graph` (a file name) to args.model.

    Returns:
        0 when it trained (and exported), 1 on bad input (one line naming it), 2 without torch or
        on an --out or --model refused before the work.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"sora-ros {command} needs the training extra: pip install -e '.[train]'", file=sys.stderr)
        return 2
    # Before the data is read and the stage trained.
    if refused(command, "--out", out_dir_problem(args.out)) or refused(command, "--model", _replace_problem(args, graph)):
        return 2
    args.command = " ".join([f"sora-ros {command}", *sys.argv[2:]])
    from sora_ros.bag.reading import BagError
    from sora_ros.model.export import ExportError
    from sora_ros.runtime.model_dir import ModelDirError

    module, function = stage.split(":")
    created = not Path(args.out).exists()
    try:
        summary = getattr(importlib.import_module(module), function)(args)
    except (ValueError, FileNotFoundError, BagError, ModelDirError, ExportError) as error:
        print(f"sora-ros {command}: {error}", file=sys.stderr)
        if created:  # a run refused before it wrote anything leaves no empty --out behind
            with contextlib.suppress(OSError):  # not empty: what it wrote stays
                Path(args.out).rmdir()
        return 1
    print(f"done: {Path(args.out) / checkpoint}; validation {summary['validation']}")
    return 0
