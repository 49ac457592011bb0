"""Trainable weights recovered from a model directory's ONNX graphs, for directories exported
before weights.safetensors was shipped (`sora-ros export --from-onnx` is its command line).

The ONNX initializers are the torch parameters, some renamed and transposed by the exporter's
constant folding (a Linear on (B, N, D) becomes a MatMul with the weight transposed, a
GroupNorm's affine becomes Mul/Add constants of shape (C, 1, 1)). Rather than guess those rules,
`recover_modules` exports the same architecture with distinct random values in every tensor, reads
which parameter each initializer holds (as is, transposed or reshaped), and applies that map to
the shipped graphs. The same torch version and exporter name the initializers the same way; when
they do not, or a parameter appears in no graph, it refuses with the names. So does a model
with equal tensors (an untrained layer's ones and zeros), which the exporter stores once. The recovered modules
are then checked against the shipped graphs through ONNX Runtime (`export.PARITY_TOLERANCE`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from sora_ros.model.weights import WeightsError, with_run_sampler
from sora_ros.runtime.model_dir import GRAPH_FILES, read_model_info

# Spread of the random values written into every tensor of the probe export (distinct values,
# so no two initializers are merged by the exporter and every match is unambiguous).
PROBE_STD = 0.05
# Buffers set from data (the rest, e.g. the DiT's position embedding, are rebuilt from the config).
LEARNED_BUFFERS = ("latent_scale",)


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=True)
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def _learned(module) -> dict:
    """name -> tensor of the parameters and LEARNED_BUFFERS: what the recovery must find."""
    buffers = {name: b for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in LEARNED_BUFFERS}
    return {**dict(module.named_parameters()), **buffers}


def _randomise(module, generator) -> None:
    import torch

    with torch.no_grad():
        for tensor in _learned(module).values():
            # A scalar (the latent scale) stays near 1: it divides in the decoder.
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * PROBE_STD + 1.0 * (tensor.ndim == 0))


def _locate(probe: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> dict[str, tuple[str, str]]:
    """parameter name -> (initializer name, "same" | "transposed") from the probe graphs' values."""
    by_bytes = {}
    for name, value in probe.items():
        by_bytes[np.ascontiguousarray(value, np.float32).tobytes()] = (name, "same")  # also a reshape: same bytes
        if value.ndim == 2:
            by_bytes[np.ascontiguousarray(value.T, np.float32).tobytes()] = (name, "transposed")
    return {param: by_bytes[value.tobytes()] for param, value in params.items() if value.tobytes() in by_bytes}


def recover_modules(model_dir: str | Path, seed: int = 0):
    """Torch modules holding the weights of a model directory's ONNX graphs.

    Args:
        model_dir: an exported model directory (its hashes are checked).
        seed: seed of the probe's random values.

    Returns:
        (config, vae, dit, anchor or None), eval mode, on the CPU; config with the sampler model.json runs.

    Raises:
        WeightsError: model.json has no config, the graphs name their initializers otherwise than
            this exporter does, or some parameter is in no graph.
        ExportError: the recovered modules differ from the shipped graphs beyond PARITY_TOLERANCE.
    """
    import torch

    from sora_ros.model.anchor import AnchorConfig, AnchorNet
    from sora_ros.model.config import ModelConfig
    from sora_ros.model.dit import DiT
    from sora_ros.model.export import export_anchor, export_model
    from sora_ros.model.vae import VAE
    from sora_ros.runtime.anchor import ANCHOR_FILE

    info = read_model_info(model_dir)
    if "config" not in info.raw:
        raise WeightsError(f"{info.path}: model.json has no 'config' section to rebuild the modules from")
    config = with_run_sampler(ModelConfig.from_dict(info.raw["config"]), info)  # re-exported, it runs as before
    generator = torch.Generator().manual_seed(seed)
    vae, dit = VAE(config.vae).eval(), DiT(config).eval()
    anchor = None
    if info.anchor is not None:
        anchor = AnchorNet(AnchorConfig.from_dict(info.anchor.get("config", {})), config.vae.latent_channels).eval()
    parts = {"vae": vae, "dit": dit, **({"anchor": anchor} if anchor is not None else {})}
    for module in parts.values():
        _randomise(module, generator)
    graphs = [*GRAPH_FILES.values(), *([ANCHOR_FILE] if anchor is not None else [])]
    with tempfile.TemporaryDirectory(prefix="sora_probe_") as tmp:
        export_model(vae, dit, tmp, seed=seed)
        if anchor is not None:
            export_anchor(anchor, tmp, seed=seed)
        probe = {graph: _initializers(Path(tmp) / graph) for graph in graphs}
    shipped = {graph: _initializers(info.path / graph) for graph in graphs}
    for graph in graphs:
        if set(probe[graph]) != set(shipped[graph]):
            differ = sorted(set(probe[graph]) ^ set(shipped[graph]))
            raise WeightsError(f"{info.path / graph}: its initializers are named otherwise than this exporter names "
                               f"them ({differ[:4]} ...; exported with torch {info.raw.get('export', {}).get('torch')}): "
                               "re-export the model from its checkpoint instead, or run --from-onnx with the "
                               "sora_ros checkout that exported it (the export of the graphs changes between "
                               "versions, e.g. fused attention since models/default 0.2.0)")  # fmt: skip
    for part, module in parts.items():
        state = {name: t.detach().numpy().astype(np.float32) for name, t in _learned(module).items()}
        found: dict[str, tuple[str, str, str]] = {}
        for graph in graphs:
            for param, (initializer, how) in _locate(probe[graph], state).items():
                found.setdefault(param, (graph, initializer, how))
        missing = sorted(set(state) - set(found))
        if missing:
            raise WeightsError(f"{info.path}: {part} tensors found in no graph: {missing[:6]}; "
                               "re-export the model from its checkpoint instead, or run --from-onnx with the "
                               "sora_ros checkout that exported it (the export of the graphs changes between "
                               "versions, e.g. fused attention since models/default 0.2.0)")  # fmt: skip
        recovered = {}
        for param, (graph, initializer, how) in found.items():
            value = shipped[graph][initializer]
            value = value.T if how == "transposed" else value
            recovered[param] = torch.from_numpy(np.array(value, np.float32).reshape(state[param].shape))
        module.load_state_dict(recovered, strict=False)  # the other buffers are rebuilt from the config
    _check_parity(info, vae, dit, anchor)
    return config, vae, dit, anchor


def _check_parity(info, vae, dit, anchor) -> None:
    """Run the shipped graphs and the recovered modules on the same random inputs."""
    import onnxruntime as ort
    import torch

    from sora_ros.model.export import PARITY_TOLERANCE, ExportError, _example_inputs, _graph_modules
    from sora_ros.runtime.engine import session_options
    from sora_ros.runtime.model_dir import expected_signatures, step_kv_inputs

    examples = _example_inputs(expected_signatures(info), 1, info.grid_sizes(info.image_size))
    modules = _graph_modules(vae, dit)
    with torch.no_grad():
        kv = modules["dynamics_context"](*map(torch.from_numpy, examples["dynamics_context"].values())).numpy()
        examples["dynamics"].update(step_kv_inputs(kv, info.per_frame_context))
        for graph, module in modules.items():
            session = ort.InferenceSession(str(info.graph_path(graph)), session_options(graph),
                                           providers=["CPUExecutionProvider"])
            (got,) = session.run(None, examples[graph])
            expected = module(*map(torch.from_numpy, examples[graph].values())).numpy()
            error = float(np.max(np.abs(got - expected)))
            if not error <= PARITY_TOLERANCE:
                raise ExportError(f"{info.graph_path(graph)}: recovered weights differ from the graph by {error:.3g}")
    del anchor  # its graph's initializers were matched one to one; the anchor stage checks it on export
