"""The VAE and DiT weights of a model directory, read back from its ONNX graphs.

Model directories exported before they carried their trainable weights hold them only as the
graphs' initializers. torch.onnx keeps most parameter names and renames the rest (a Linear's
weight becomes a transposed `onnx::MatMul_*`, a GroupNorm's affine a reshaped `onnx::Mul_*`).
The mapping is found, not assumed: a reference model of the same config, every parameter set to
distinct random values, is exported by the same code, and each parameter is located among the
reference's initializers by value (as is, transposed or reshaped). The directory's initializer of
that name, shaped back, is the weight. Re-exporting the recovered modules must reproduce every
initializer of the directory bit for bit, or the recovery fails.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from sora_ros.model.config import ModelConfig
from sora_ros.model.dit import DiT
from sora_ros.model.vae import VAE
from sora_ros.runtime.model_dir import GRAPH_FILES, read_model_info


class RecoveryError(ValueError):
    """The graphs do not give back a complete, exact set of weights."""


def _initializers(model_dir: Path) -> dict[tuple[str, str], np.ndarray]:
    """(graph, name) -> array of every initializer of the four world-model graphs (external data
    loaded). Keyed by graph too: the exporter numbers renamed initializers per graph."""
    import onnx
    from onnx import numpy_helper

    found: dict[tuple[str, str], np.ndarray] = {}
    for graph in GRAPH_FILES:
        model = onnx.load(str(model_dir / f"{graph}.onnx"))
        for tensor in model.graph.initializer:
            found[graph, tensor.name] = numpy_helper.to_array(tensor)
    return found


def _locate(key: str, value: np.ndarray, reference: dict) -> tuple[tuple[str, str], bool]:
    """((graph, name), transposed) of a reference initializer holding parameter `key`'s `value`."""
    for name, array in reference.items():
        if array.size != value.size:
            continue
        if np.array_equal(array.ravel(), value.ravel()):
            return name, False
        if value.ndim == 2 and np.array_equal(array.ravel(), value.T.ravel()):
            return name, True
    raise RecoveryError(f"no graph holds {key} {tuple(value.shape)} as an initializer")


def modules_from_graphs(model_dir: str | Path) -> tuple[ModelConfig, VAE, DiT]:
    """The VAE and DiT whose export gave `model_dir`'s graphs.

    Args:
        model_dir: an exported model directory whose model.json has the "config" section
            (every directory `sora-ros export` wrote).

    Returns:
        (config, vae, dit), in eval mode.

    Raises:
        RecoveryError: a parameter is in no graph, or re-exporting does not reproduce the graphs.
        ModelDirError: the directory is not a valid model directory.
    """
    from sora_ros.model.export import export_model

    directory = Path(model_dir)
    info = read_model_info(directory)
    if "config" not in info.raw:
        raise RecoveryError(f"{directory}/model.json has no 'config' section: the architecture is unknown")
    config = ModelConfig.from_dict(info.raw["config"])
    shipped = _initializers(directory)
    generator = torch.Generator().manual_seed(0)
    vae, dit = VAE(config.vae).eval(), DiT(config).eval()
    modules = {"vae": vae, "dit": dit}
    with torch.no_grad():
        for module in modules.values():
            for parameter in module.parameters():
                # small (the export's parity check runs on them), distinct (the values are the key)
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator))
    with tempfile.TemporaryDirectory() as tmp:
        export_model(vae, dit, tmp)
        reference = _initializers(Path(tmp))
    with torch.no_grad():
        for prefix, module in modules.items():
            for key, parameter in module.named_parameters():
                name, transposed = _locate(f"{prefix}.{key}", parameter.numpy(), reference)
                if name not in shipped:
                    raise RecoveryError(f"{directory}: {name[0]}.onnx has no initializer {name[1]!r} (for "
                                        f"{prefix}.{key}): the graphs were exported by other code")
                array = shipped[name].T if transposed else shipped[name]
                parameter.copy_(torch.tensor(array).reshape(parameter.shape))
        vae.latent_scale.copy_(torch.tensor(shipped["encoder", "vae.latent_scale"]))  # a buffer the trainer sets
    with tempfile.TemporaryDirectory() as tmp:
        export_model(vae, dit, tmp)
        again = _initializers(Path(tmp))
    differ = sorted(n for n in shipped if n not in again or not np.array_equal(again[n], shipped[n]))
    if differ or set(again) != set(shipped):
        raise RecoveryError(f"{directory}: re-exported weights differ from the graphs in {len(differ)} "
                            f"initializer(s), e.g. {differ[:3]}")
    return config, vae, dit
