"""Int8 dynamics graphs for CPU planners (`sora-ros quantize` is its command line).

The what-if a planner asks for (32 candidates x 8 frames) is nearly all matrix products of the two
dynamics graphs, and on a CPU with integer dot-product instructions (x86 VNNI/AMX, Arm dotprod)
8-bit products run faster than float32 ones. ONNX Runtime's dynamic quantization
(`onnxruntime.quantization.quantize_dynamic`) stores each MatMul/Gemm weight as int8, per output
channel, and quantizes the activations to uint8 per call from their own range, so it needs no
calibration data. The weights use 7 of the 8 bits (`reduce_range`): on x86 CPUs without VNNI,
8-bit ones saturate ONNX Runtime's 16-bit partial sums (sora_ros.runtime.int8_parity). The
float32 graphs stay: the int8 ones are an option (`precision="int8"` in WorldModelEngine, the
node's `dynamics_precision`, `eval --dynamics-precision`), for the CPU provider; a GPU runs float32.

Writes dynamics_context.int8.onnx and dynamics.int8.onnx (self-contained, about a quarter of the
float32 weights), their SHA-256 under "files" and "dynamics"."int8" in model.json, after checking
them against the float32 graphs in ONNX Runtime on random inputs at every parity size.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sora_ros.model.export import PARITY_BATCH, parity_sizes
from sora_ros.runtime.int8_parity import RELATIVE_TOLERANCE, int8_parity
from sora_ros.runtime.model_dir import INT8_GRAPH_FILES, MODEL_JSON, read_model_info, sha256_file, write_model_json

METHOD = ("onnxruntime.quantization.quantize_dynamic: MatMul and Gemm weights int8 per output channel, "
          "7-bit range (reduce_range), activations uint8 quantized per call from their own range; "
          "everything else float32")


class QuantizeError(Exception):
    """The int8 graphs disagree with the float32 ones beyond RELATIVE_TOLERANCE."""


class _QuietPreprocessHint(logging.Filter):
    """quantize_dynamic logs a hint to run its shape pre-processing on every call; these graphs
    are already shape-inferred by the exporter, so the hint is noise in a user's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _unlist_int8(out: Path) -> None:
    """Take an earlier "dynamics"."int8" section and its files out of model.json: the files are about
    to be replaced, and a missing or damaged one would fail the hash check of the whole directory.
    A model.json that is not readable is left as it is (read_model_info then says what is wrong)."""
    path = out / MODEL_JSON
    try:
        model = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    dynamics = model.get("dynamics") if isinstance(model, dict) else None
    if isinstance(dynamics, dict) and "int8" in dynamics:
        del dynamics["int8"]
        files = model.get("files")
        for file_name in INT8_GRAPH_FILES.values():
            if isinstance(files, dict):
                files.pop(file_name, None)
        write_model_json(out, model)


def add_int8_dynamics(model_dir: str | Path, seed: int = 0) -> dict[str, dict[str, float]]:
    """Add int8 versions of the two dynamics graphs to an exported model directory.

    Args:
        model_dir: an exported model directory (read_model_info must accept it once any earlier
            int8 section is unlisted); its float32 graphs are read, not changed. Earlier int8
            graphs are replaced, also when they are missing or damaged.
        seed: seed of the random parity inputs.

    Returns:
        Per graph: "relative_error" (mean |int8 - float32| / mean |float32| over every parity
        size) and "max_abs_error".

    Raises:
        QuantizeError: a graph's relative error is above RELATIVE_TOLERANCE (the new graphs are
            not kept; the directory stays a valid float32 model).
        ModelDirError: the directory is not a valid model directory.
        OSError: the directory cannot be written.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from sora_ros.runtime.engine import session_options

    out = Path(model_dir)
    _unlist_int8(out)
    info = read_model_info(out)
    grids = parity_sizes(info.image_size, info.patch_grid) if info.grid_follows_camera else [info.image_size]
    cpu = ["CPUExecutionProvider"]
    float32 = {graph: ort.InferenceSession(str(info.graph_path(graph)), session_options(graph), providers=cpu)
               for graph in INT8_GRAPH_FILES}
    hint = _QuietPreprocessHint()
    logging.getLogger().addFilter(hint)
    staging = tempfile.TemporaryDirectory()  # the graphs enter the model directory only once checked
    try:
        int8 = {}
        for graph, file_name in INT8_GRAPH_FILES.items():
            whole = Path(staging.name) / "float32.onnx"  # the weights pulled in from dynamics.weights
            onnx.save(onnx.load(str(info.graph_path(graph))), str(whole))
            quantize_dynamic(whole, Path(staging.name) / file_name, weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True)
            int8[graph] = ort.InferenceSession(str(Path(staging.name) / file_name), session_options(graph),
                                               providers=cpu)
        parity = int8_parity(info, float32, int8, grids, PARITY_BATCH, np.random.default_rng(seed))
        bad = {graph: p["relative_error"] for graph, p in parity.items() if p["relative_error"] > RELATIVE_TOLERANCE}
        if bad:
            raise QuantizeError(f"int8 graphs differ from float32 by {bad} (mean relative), above "
                                f"{RELATIVE_TOLERANCE}; the model directory keeps its float32 graphs only")
        for file_name in INT8_GRAPH_FILES.values():
            shutil.move(Path(staging.name) / file_name, out / file_name)
    finally:
        logging.getLogger().removeFilter(hint)
        staging.cleanup()
    model = json.loads((out / MODEL_JSON).read_text())
    for file_name in INT8_GRAPH_FILES.values():
        model["files"][file_name] = sha256_file(out / file_name)
    model["dynamics"]["int8"] = {"graphs": dict(INT8_GRAPH_FILES), "method": METHOD, "parity": parity,
                                 "onnxruntime": ort.__version__}
    write_model_json(out, model)
    read_model_info(out)
    return parity
