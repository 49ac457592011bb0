"""The command-line run of a training stage that adds a graph to an exported model
(`sora-ros train-anchor`, `sora-ros train-risk`): the same checks, errors and last line for each.
Not a subcommand itself."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from sora_ros.cli.arguments import out_dir_problem, refused


def run_stage(args: argparse.Namespace, command: str, stage: str, checkpoint: str) -> int:
    """Run `stage` ("module:function", called with `args`, returning a summary with "validation").

    Returns:
        0 when it trained (and exported), 1 on bad input (one line naming it), 2 without torch.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"sora-ros {command} needs the training extra: pip install -e '.[train]'", file=sys.stderr)
        return 2
    if refused(command, "--out", out_dir_problem(args.out)):  # before the data is read and the stage trained
        return 2
    args.command = " ".join([f"sora-ros {command}", *sys.argv[2:]])
    from sora_ros.bag.reading import BagError
    from sora_ros.model.export import ExportError
    from sora_ros.runtime.model_dir import ModelDirError

    module, function = stage.split(":")
    try:
        summary = getattr(importlib.import_module(module), function)(args)
    except (ValueError, FileNotFoundError, BagError, ModelDirError, ExportError) as error:
        print(f"sora-ros {command}: {error}", file=sys.stderr)
        return 1
    print(f"done: {Path(args.out) / checkpoint}; validation {summary['validation']}")
    return 0
