"""Where a rollout's time goes: ONNX Runtime's profiler on each dynamics graph at one batch size,
its kernel time summed per operator type (share of the graph's time and ms per call). The inputs
are what a rollout binds (sora_ros.runtime.engine), random values; a per-frame context model's
context graph is timed on the one frame that enters the window, as a rollout runs it.

    python scripts/profile_dynamics.py --model models/default --batch 32 --precision int8
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile

import numpy as np
import onnxruntime as ort

from sora_ros.cli.arguments import positive_int
from sora_ros.runtime.engine import WorldModelEngine, session_options
from sora_ros.runtime.model_dir import ModelDirError

# Operator types listed per graph, largest first.
TOP_OPS = 10


def profile(graph: str, path: str, feeds: dict[str, np.ndarray], calls: int) -> tuple[collections.Counter, float]:
    """Kernel microseconds per operator type over `calls` runs, and the total per call in ms."""
    with tempfile.TemporaryDirectory(prefix="sora_profile_") as folder:
        options = session_options(graph)
        options.enable_profiling = True
        options.profile_file_prefix = f"{folder}/ort"
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)  # warm-up, in the profile too: the share stays the steady state's
        for _ in range(calls):
            session.run(None, feeds)
        with open(session.end_profiling()) as stream:
            events = json.load(stream)
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    return per_op, sum(per_op.values()) / (calls + 1) / 1000.0


def main(args: argparse.Namespace) -> int:
    try:
        engine = WorldModelEngine(args.model, precision=args.precision)
    except ModelDirError as error:
        print(f"profile_dynamics: {error}", file=sys.stderr)
        return 2
    info = engine.info
    bound = engine._bound_graphs(args.batch, info.latent_shape[1:])  # (context over K frames, [one frame,] step)
    graphs = {"dynamics_context": bound[-2], "dynamics": bound[-1]}
    rng = np.random.default_rng(0)
    print(f"{info.path} ({info.name} {info.version}), {engine.precision}, batch {args.batch}, "
          f"{'per-frame' if info.per_frame_context else 'window'} context")
    for graph, binding in graphs.items():
        feeds = {name: rng.standard_normal(array.shape).astype(array.dtype) for name, array in binding.inputs.items()}
        per_op, per_call_ms = profile(graph, str(info.graph_path(graph, engine.precision)), feeds, args.calls)
        total = sum(per_op.values())
        frames = feeds["context"].shape[1] if graph == "dynamics_context" else None
        print(f"{graph}{f' ({frames} frame(s))' if frames else ''}: {per_call_ms:.2f} ms per call of kernels")
        for op, micros in per_op.most_common(TOP_OPS):
            print(f"  {op:28s} {100 * micros / total:5.1f}%  {micros / (args.calls + 1) / 1000:6.2f} ms")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default", help="model directory (default models/default)")
    parser.add_argument("--batch", type=positive_int, default=32, help="rows per call: candidates x samples (default 32)")
    parser.add_argument("--precision", default="int8", choices=("float32", "int8"), help="dynamics graphs (default int8)")
    parser.add_argument("--calls", type=positive_int, default=20, help="profiled calls per graph (default 20)")
    raise SystemExit(main(parser.parse_args()))
