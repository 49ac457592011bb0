"""How far a model's int8 dynamics graphs are from its float32 ones, on this CPU.

The int8 graphs (`sora-ros quantize`) multiply uint8 activations by int8 weights, and ONNX
Runtime's kernel for that depends on the instruction set. With VNNI (AVX512-VNNI, AVX-VNNI) the
products accumulate in 32 bits; on x86 with AVX2 only (many AMD EPYC and older Intel CPUs) they go
through `vpmaddubsw`, which adds pairs of products into saturating 16-bit sums, so 8-bit weights
can overflow them (ONNX Runtime's quantization docs: "reduce_range ... may improve the accuracy
for some models running on non-VNNI machine"). `models/default` 0.4.2, quantized on a VNNI
machine with 8-bit weights, differed from float32 by 1.4 % (context) and 1.6 % (step) there and
by 17 % and 14 % on an AVX2-only AMD EPYC. `sora-ros quantize` therefore stores 7-bit weights
(no 16-bit sum can saturate), and the engine measures the graphs it is given at load when the
precision is "auto", falling back to float32 above RELATIVE_TOLERANCE (older directories).
"""

from __future__ import annotations

import numpy as np

from sora_ros.runtime.model_dir import INT8_GRAPH_FILES, ModelInfo, concrete_shape, expected_signatures, step_kv_inputs

# Largest mean |int8 - float32| / mean |float32| accepted per graph (dynamic quantization of this
# DiT gives about 0.02; a graph far above it is a broken quantization, or one this CPU's int8
# kernel saturates, not a rounding cost).
RELATIVE_TOLERANCE = 0.05


def random_inputs(signature: dict, sizes: dict[str, int], batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float32 inputs of a dynamics graph's signature: flow times and noise levels uniform in
    [0, 1), everything else standard normal."""
    inputs = {}
    for name, spec in signature["inputs"].items():
        shape = concrete_shape(spec, batch, sizes)
        inputs[name] = (rng.uniform(0, 1, shape) if name in ("flow_time", "context_noise")
                        else rng.standard_normal(shape)).astype(np.float32)
    return inputs


def int8_parity(info: ModelInfo, float32: dict, int8: dict, grids: list[tuple[int, int]], batch: int,
                rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Both dynamics graphs run as float32 and as int8 on the same random inputs.

    Args:
        info: the model (its signatures and grid sizes).
        float32, int8: graph name ("dynamics_context", "dynamics") -> onnxruntime.InferenceSession.
        grids: (H, W) input image sizes to try (each a token grid of the model).
        batch: rows per run.
        rng: the inputs' source.

    Returns:
        Per graph: "relative_error" (mean |int8 - float32| / mean |float32| over every grid) and
        "max_abs_error". The step graph's keys/values input is what the float32 context graph
        makes of random context latents, not noise.
    """
    signatures = expected_signatures(info)
    parity = {}
    for graph in INT8_GRAPH_FILES:
        differences, magnitudes = [], []
        for hw in grids:
            sizes = info.grid_sizes(hw)
            inputs = random_inputs(signatures[graph], sizes, batch, rng)
            if graph == "dynamics":
                context = random_inputs(signatures["dynamics_context"], sizes, batch, rng)
                inputs.update(step_kv_inputs(float32["dynamics_context"].run(None, context)[0], info.per_frame_context))
            expected, got = float32[graph].run(None, inputs)[0], int8[graph].run(None, inputs)[0]
            differences.append(np.abs(got - expected).ravel())
            magnitudes.append(np.abs(expected).ravel())
        difference, magnitude = np.concatenate(differences), np.concatenate(magnitudes)
        parity[graph] = {"relative_error": float(difference.mean() / max(magnitude.mean(), 1e-12)),
                         "max_abs_error": float(difference.max())}
    return parity
