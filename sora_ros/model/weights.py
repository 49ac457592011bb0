"""A model directory's trainable weights: weights.safetensors, the file `sora-ros train --init` starts from.

The file holds every tensor of the VAE ("vae.*"), the DiT ("dit.*") and, when the directory
has one, the anchored decoder ("anchor.*"), in the safetensors format (a JSON header plus raw
little-endian tensors: loading it runs no pickle). Its metadata repeats the model config and the
anchored decoder's config; model.json lists its SHA-256 under "files" like every other file and
describes it in a "weights" section. A model fine-tuned from another records that parent under
"parent" (`parent_record`).

Example:

    parent = load_weights("models/default")          # hashes, config and tensors checked
    vae, dit = parent.vae, parent.dit                # torch modules, eval mode
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from sora_ros.model.config import ModelConfig
from sora_ros.runtime.model_dir import MODEL_JSON, TRAINABLE_WEIGHTS, ModelInfo, read_model_info, sha256_file, \
    write_model_json

WEIGHTS_FILE = TRAINABLE_WEIGHTS
WEIGHTS_FORMAT = "sora_ros.weights/1"
PARTS = ("vae", "dit", "anchor")


class WeightsError(ValueError):
    """A model directory's weights are missing, do not match its hashes, or do not fit the architecture asked for."""


@dataclass
class ModelWeights:
    """The trainable modules of a model directory.

    Attributes:
        info: the directory's checked model.json.
        config: the model config the weights were saved with.
        vae, dit: sora_ros.model.vae.VAE and sora_ros.model.dit.DiT, eval mode, on the CPU.
        anchor: sora_ros.model.anchor.AnchorNet, or None when the directory has no anchored decoder.
        sha256: SHA-256 of weights.safetensors.
    """

    info: ModelInfo
    config: ModelConfig
    vae: object
    dit: object
    anchor: object | None
    sha256: str


def _state(part: str, module) -> dict:
    return {f"{part}.{name}": t.detach().cpu().contiguous() for name, t in module.state_dict().items()}


def _write(directory: Path, tensors: dict, metadata: dict) -> None:
    """Write weights.safetensors (temporary file, then rename) and record it in model.json:
    its SHA-256 under "files" and the "weights" section."""
    from safetensors.torch import save_file

    path = directory / WEIGHTS_FILE
    save_file(tensors, f"{path}.tmp", metadata=metadata)
    Path(f"{path}.tmp").chmod(0o644)  # safetensors creates it owner-only; the model is shipped and installed
    Path(f"{path}.tmp").replace(path)
    parameters: dict[str, int] = {}
    for name, tensor in tensors.items():
        parameters[name.split(".", 1)[0]] = parameters.get(name.split(".", 1)[0], 0) + tensor.numel()
    json_path = directory / MODEL_JSON
    model = json.loads(json_path.read_text())
    model["files"][WEIGHTS_FILE] = sha256_file(path)
    model["weights"] = {
        "file": WEIGHTS_FILE,
        "format": f"safetensors, {WEIGHTS_FORMAT}: tensors '<part>.<state dict name>', metadata 'config' "
                  "(and 'anchor_config')",
        "elements": parameters,  # per part, buffers included
        "use": "sora-ros train --init <this directory> fine-tunes these weights",
    }  # fmt: skip
    write_model_json(directory, model)


def add_weights(directory: str | Path, vae, dit) -> None:
    """Write the VAE and DiT tensors to weights.safetensors in an exported model directory and
    record the file in its model.json (replacing any earlier weights, anchor included)."""
    _write(Path(directory), {**_state("vae", vae), **_state("dit", dit)},
           {"format": WEIGHTS_FORMAT, "config": json.dumps(dit.config.to_dict())})


def add_anchor_weights(directory: str | Path, anchor) -> bool:
    """Add (or replace) the anchored decoder's tensors in a directory's weights.safetensors.

    Returns:
        False when the directory has no weights.safetensors to add them to (an older export).
    """
    from safetensors import safe_open

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        return False
    with safe_open(path, framework="pt") as reader:
        metadata = dict(reader.metadata() or {})
        tensors = {name: reader.get_tensor(name) for name in reader.keys() if not name.startswith("anchor.")}
    metadata["anchor_config"] = json.dumps(anchor.config.to_dict())
    _write(Path(directory), {**tensors, **_state("anchor", anchor)}, metadata)
    return True


def load_weights(directory: str | Path, expect: ModelConfig | None = None) -> ModelWeights:
    """Load a model directory's weights without unpickling anything (safetensors).

    Args:
        directory: a model directory written by `sora-ros export`.
        expect: if given, the architecture the caller wants (e.g. from --preset): the VAE and DiT
            sizes must equal the directory's; names, actions and sampler settings may differ.

    Returns:
        The modules with the weights loaded.

    Raises:
        ModelDirError: the directory fails its own checks (a file missing, a SHA-256 mismatch).
        WeightsError: no weights.safetensors listed, or one whose config or tensors differ from
            model.json's config or from `expect` (the message names the fields or tensors).
    """
    import torch
    from safetensors import SafetensorError, safe_open

    from sora_ros.model.anchor import AnchorConfig, AnchorNet
    from sora_ros.model.dit import DiT
    from sora_ros.model.vae import VAE

    info = read_model_info(directory)  # checks every listed file's SHA-256, weights included
    path = info.path / WEIGHTS_FILE
    if WEIGHTS_FILE not in info.files:
        raise WeightsError(f"{info.path}: model.json lists no {WEIGHTS_FILE}, so there are no trainable weights to "
                           f"start from (exported before weights were shipped). Re-export it from its checkpoint "
                           f"(sora-ros export --checkpoint RUN/checkpoint.pt --out {info.path}), or recover them from "
                           f"its ONNX graphs (sora-ros export --from-onnx {info.path} --out NEW_DIR)")  # fmt: skip
    if not path.is_file():
        raise WeightsError(f"{path}: missing (model.json lists it with its SHA-256): copy the model directory "
                           "whole, weights.safetensors included")  # fmt: skip
    if "config" not in info.raw:
        raise WeightsError(f"{info.path / MODEL_JSON}: no 'config' section to build the modules from")
    config = ModelConfig.from_dict(info.raw["config"])
    try:
        with safe_open(path, framework="pt") as reader:
            metadata = reader.metadata() or {}
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file: {error}") from None
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: metadata format is {metadata.get('format')!r}, expected {WEIGHTS_FORMAT!r}")
    stored = ModelConfig.from_dict(json.loads(metadata.get("config", "{}")))
    if stored != config:
        raise WeightsError(f"{path}: its config differs from {MODEL_JSON}'s: {config_differences(config, stored)}")
    if expect is not None:
        differences = architecture_differences(config, expect)
        if differences:
            raise WeightsError(f"{info.path}: the model's architecture differs from the one asked for "
                               f"(--preset): {differences}; drop --preset to fine-tune the model as it is")  # fmt: skip
    vae, dit = VAE(config.vae), DiT(config)
    anchor = None
    if "anchor_config" in metadata:
        anchor = AnchorNet(AnchorConfig.from_dict(json.loads(metadata["anchor_config"])), config.vae.latent_channels)
    for part, module in (("vae", vae), ("dit", dit), ("anchor", anchor)):
        if module is None:
            continue
        state = {name[len(part) + 1:]: t for name, t in tensors.items() if name.startswith(f"{part}.")}
        if part == "dit":
            DiT.drop_legacy(state)
        _check_state(path, part, module, state)
        with torch.no_grad():
            module.load_state_dict(state, strict=True)
        module.eval()
    unknown = sorted(n for n in tensors if n.split(".", 1)[0] not in PARTS or (n.startswith("anchor.") and anchor is None))
    if unknown:
        raise WeightsError(f"{path}: tensors of no known part: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return ModelWeights(info, config, vae, dit, anchor, info.files[WEIGHTS_FILE])


def _check_state(path: Path, part: str, module, state: dict) -> None:
    """Raise WeightsError naming the tensors missing, unexpected or of another shape."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{part}.{n}: file {tuple(state[n].shape)}, architecture {tuple(own[n].shape)}"
              for n in sorted(set(own) & set(state)) if state[n].shape != own[n].shape]  # fmt: skip
    problems = []
    if missing:
        problems.append(f"missing {[f'{part}.{n}' for n in missing[:5]]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {[f'{part}.{n}' for n in unexpected[:5]]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        problems.append("other shapes: " + "; ".join(shapes[:5]))
    if problems:
        raise WeightsError(f"{path}: the {part} tensors do not fit its config: {', '.join(problems)}")


def config_differences(a: ModelConfig, b: ModelConfig, labels: tuple[str, str] = ("model.json", "file"),
                       parts: tuple[str, ...] = ("vae", "dit", "actions")) -> str:
    """'dit.width: model.json 192, file 256; ...' for the fields of `parts` and the top-level fields that differ."""
    left, right = a.to_dict(), b.to_dict()
    lines = []
    for key in left:
        pairs = ([(f"{key}.{f}", left[key][f], right[key][f]) for f in left[key]] if key in parts
                 else [] if isinstance(left[key], dict) else [(key, left[key], right[key])])  # fmt: skip
        lines += [f"{name}: {labels[0]} {x}, {labels[1]} {y}" for name, x, y in pairs if x != y]
    return "; ".join(lines) or "none"


# DiT fields that may differ between a parent and its fine-tuned child: training-only settings,
# the action layout and the context attention (sora_ros/model/fine_tune.py converts both).
FINE_TUNABLE_DIT_FIELDS = ("action_dim", "max_context_noise", "action_dropout", "context_attention")


def architecture_differences(parent: ModelConfig, wanted: ModelConfig) -> str:
    """The VAE and DiT size fields that differ ('' when the weights fit), e.g. 'dit.width: model 192, asked 32'."""
    same_settings = dataclasses.replace(parent.dit, **{f: getattr(wanted.dit, f) for f in FINE_TUNABLE_DIT_FIELDS})
    if parent.vae == wanted.vae and same_settings == wanted.dit:
        return ""
    return config_differences(parent.replace(dit=same_settings, actions=wanted.actions, name=wanted.name), wanted, ("model", "asked"), parts=("vae", "dit"))


def with_run_sampler(config: ModelConfig, info: ModelInfo) -> ModelConfig:
    """`config` (model.json's "config": what the model was trained and exported with) with the sampler
    the model runs with (model.json's "sampler": steps, context_noise), which may have been changed
    since: models/default's config says 4 steps, its sampler 2 (since 0.4.2)."""
    return config.replace(sampler_steps=info.sampler_steps, context_noise=info.context_noise)


def parent_record(weights: ModelWeights) -> dict:
    """model.json's "parent" section of a model fine-tuned from `weights`: its name, version, id
    (runtime/latents.py `model_id`), the SHA-256 of the weights it started from and its path then."""
    from sora_ros.runtime.latents import model_id

    info = weights.info
    return {"name": info.name, "version": info.version, "id": model_id(info), "weights_sha256": weights.sha256,
            "path": str(info.path)}
