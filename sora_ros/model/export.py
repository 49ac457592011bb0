"""Export a model (VAE + DiT) to a model directory the runtime loads (`sora-ros export` is its command line),
and add the optional graphs of the later stages to one (anchor.onnx, risk.onnx).

Writes encoder.onnx, decoder.onnx, dynamics_context.onnx and dynamics.onnx
(TorchScript exporter, opset 17, dynamic batch and input size: the latent grid and the
dynamics' token count follow each camera's aspect ratio; the two dynamics graphs keep
their common DiT weights once, in dynamics.weights), weights.safetensors (the
torch weights `sora-ros train --init` fine-tunes; sora_ros/model/weights.py) and
model.json with the SHA-256 of every file, then checks ONNX Runtime against
torch on random inputs at every grid of the model's aspect range ends and its reference size,
and prints the largest absolute difference per graph.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sora_ros import __version__
from sora_ros.core.patch_grid import SIZING
from sora_ros.runtime.model_dir import (ACTION_FORMULA, DYNAMICS_WEIGHTS, FLOW_CONVENTION, GRAPH_FILES,
                                        MODEL_FORMAT, MODEL_JSON, check_session, concrete_shape, graph_signatures,
                                        grid_sizes, read_model_info, sha256_file, step_kv_inputs, symbolic_sizes,
                                        write_model_json)
from sora_ros.model.weights import add_anchor_weights, add_weights

OPSET = 17
# Batch size of the example inputs used for tracing and for the parity check.
PARITY_BATCH = 2
# Largest ONNX Runtime vs torch absolute difference export accepts, per graph.
PARITY_TOLERANCE = 1e-3
# The two dynamics graphs hold the same DiT weights; they are stored once, in DYNAMICS_WEIGHTS.
SHARED_WEIGHT_GRAPHS = ("dynamics_context", "dynamics")
# Initializers smaller than this stay inside the graph file.
EXTERNAL_MIN_BYTES = 1024
# Offsets in the shared weight file are multiples of this (friendly to memory mapping).
EXTERNAL_ALIGNMENT = 64


# model.json dynamics.contract, by DiTConfig.context_attention.
CONTRACTS = {
    "window": "per predicted frame: context_kv = dynamics_context(context latents noised to context_noise, "
              "context_noise); then per sampler step: velocity = dynamics(context_kv, noisy, flow_time[, action])",
    "frame": "first predicted frame: context_kv = dynamics_context(the K context latents noised to context_noise, "
             "context_noise); each later one: the oldest frame's N tokens leave context_kv and "
             "dynamics_context(the newest latent frame noised to context_noise, context_noise) is appended "
             "(context_kv's frames stay oldest first); then per sampler step: velocity = dynamics(context_kv, "
             "noisy, flow_time[, action])",
}
# How the runtime uses the anchor graph (sora_ros/runtime/anchor.py), written to model.json.
ANCHOR_CONTRACT = (
    "motion, mask = anchor(frames = the last two observed frames fitted to the model input, flow = DIS back-flow "
    "last -> previous at the model input (pixels), latent = predicted latent of step k, context_latent = the last "
    "observed latent, step = k, reconstruction = decoder(context_latent)); correction = motion - k * flow; "
    "predicted frame = (1 - mask) * last camera frame sampled at x + trajectory_k(DIS flow of the camera frames) "
    "+ correction + mask * decoder(latent); correction and mask resized into fit_frame's crop window (edges "
    "repeated outside it); mask below 0.02 counts as 0"
)


class ExportError(Exception):
    """Export produced graphs that disagree with torch or with the model contract.

    `parity` holds the graphs checked so far (graph -> max abs difference), the failing one last.
    """

    def __init__(self, message: str, parity: dict[str, float] | None = None):
        super().__init__(message)
        self.parity = dict(parity or {})


@dataclass(frozen=True)
class ExportReport:
    """Attributes:
        directory: the written model directory.
        parity: graph -> max abs difference ONNX Runtime vs torch.
    """

    directory: Path
    parity: dict[str, float]


def _graph_modules(vae, dit) -> dict:
    from sora_ros.model.graphs import DecoderGraph, DynamicsContextGraph, DynamicsStepGraph, EncoderGraph

    return {"encoder": EncoderGraph(vae), "decoder": DecoderGraph(vae),
            "dynamics_context": DynamicsContextGraph(dit), "dynamics": DynamicsStepGraph(dit)}


def dynamic_axes(signature: dict) -> dict[str, dict[int, str]]:
    """torch.onnx.export's dynamic_axes: every symbolic dimension (a string) of every input and output."""
    tensors = {**signature["inputs"], **signature["outputs"]}
    return {name: {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)} for name, spec in tensors.items()}


def parity_sizes(reference: tuple[int, int], grid) -> list[tuple[int, int]]:
    """Model input sizes (H, W) the parity check runs at: the reference size, then those of cameras at
    the two ends of the patch grid's aspect range (where they differ from it)."""
    ends = [grid.input_size(1000, round(1000 * aspect)) for aspect in grid.aspect_range]
    return list(dict.fromkeys([tuple(reference), *ends]))


def _example_inputs(signatures: dict, seed: int, sizes: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """Random inputs for every graph at one grid (`sizes`: the symbolic dimensions' values)."""
    rng = np.random.default_rng(seed)
    examples = {}
    for graph, signature in signatures.items():
        examples[graph] = {}
        for name, spec in signature["inputs"].items():
            shape = concrete_shape(spec, PARITY_BATCH, sizes)
            if spec["dtype"] == "uint8":
                examples[graph][name] = rng.integers(0, 256, shape, dtype=np.uint8)
            elif name in ("flow_time", "context_noise"):
                examples[graph][name] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
            else:
                examples[graph][name] = rng.standard_normal(shape, dtype=np.float32)
    return examples


def export_model(vae, dit, out_dir: str | Path, *, version: str = "0.1.0", training: dict | None = None,
                 evaluation: dict | None = None, parent: dict | None = None, seed: int = 0) -> ExportReport:
    """Export a trained VAE and DiT to a model directory and check parity.

    Args:
        vae, dit: the torch modules (sora_ros.model.vae.VAE, sora_ros.model.dit.DiT) of one config.
        out_dir: created if needed; existing graph files and model.json are overwritten.
        version: model version written to model.json.
        training, evaluation: summaries for model.json (None leaves the placeholders empty).
        parent: the model this one was fine-tuned from (weights.parent_record), for model.json "parent".
        seed: seed of the random parity inputs.

    Returns:
        The directory and the parity errors.

    Raises:
        ExportError: a graph's ONNX Runtime output differs from torch by more than
            PARITY_TOLERANCE, or its inputs/outputs differ from the contract.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from sora_ros.runtime.engine import session_options

    config = dit.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kv_shape = (config.dit.depth, 2, config.dit.context_frames * config.tokens_per_frame, config.dit.width)
    image_size, latent_shape, kv_dims = symbolic_sizes(config.vae.latent_channels, kv_shape)
    per_frame = config.dit.context_attention == "frame"
    signatures = graph_signatures(image_size, latent_shape, config.dit.context_frames, kv_dims, config.dit.action_dim,
                                  per_frame)
    sizes = [grid_sizes(hw, config.vae.downsample, config.dit.patch_size, config.dit.context_frames)
             for hw in parity_sizes((config.vae.image_height, config.vae.image_width), config.patch_grid)]
    modules = _graph_modules(vae.eval(), dit.eval())
    parity, ops = {graph: 0.0 for graph in modules}, {}
    with torch.no_grad():
        for index, grid in enumerate(sizes):  # traced at the reference size, checked at every size
            examples = _example_inputs(signatures, seed + index, grid)
            kv = modules["dynamics_context"](*map(torch.from_numpy, examples["dynamics_context"].values())).numpy()
            examples["dynamics"].update(step_kv_inputs(kv, per_frame))
            if index == 0:
                _export_graphs(out, modules, signatures, examples)
                sessions = {graph: ort.InferenceSession(str(out / file), session_options(graph),
                                                     providers=["CPUExecutionProvider"])
                            for graph, file in GRAPH_FILES.items()}  # fmt: skip
                for graph, session in sessions.items():
                    check_session(out / GRAPH_FILES[graph], session, signatures[graph])
            checks = [(graph, examples[graph]) for graph in modules]
            if per_frame:  # the frame that enters the window, alone
                one = examples["dynamics_context"]
                checks.append(("dynamics_context", {**one, "context": np.ascontiguousarray(one["context"][:, -1:])}))
            for graph, inputs in checks:
                path, session = out / GRAPH_FILES[graph], sessions[graph]
                expected = modules[graph](*(torch.from_numpy(a) for a in inputs.values())).numpy()
                (got,) = session.run(None, inputs)
                parity[graph] = max(parity[graph], float(np.max(np.abs(got - expected))))
                if not parity[graph] <= PARITY_TOLERANCE:
                    raise ExportError(f"{path}: ONNX Runtime differs from torch by {parity[graph]:.3g} at input "
                                      f"{grid['height']}x{grid['width']} (tolerance {PARITY_TOLERANCE})", parity)
    for graph in modules:
        model = onnx.load(str(out / GRAPH_FILES[graph]), load_external_data=False)
        ops[graph] = sorted({node.op_type for node in model.graph.node})
    _write_model_json(out, config, signatures, ops, kv_shape, parity, version, training, evaluation, parent)
    add_weights(out, vae, dit)  # weights.safetensors: what `sora-ros train --init` fine-tunes
    read_model_info(out)
    return ExportReport(out, parity)


def _export_graphs(out: Path, modules: dict, signatures: dict, examples: dict) -> None:
    """Trace every graph on its example inputs, then store the dynamics weights once."""
    import torch

    for graph, module in modules.items():
        names_in, names_out = list(signatures[graph]["inputs"]), list(signatures[graph]["outputs"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, tuple(torch.from_numpy(a) for a in examples[graph].values()),
                              str(out / GRAPH_FILES[graph]), input_names=names_in, output_names=names_out,
                              dynamic_axes=dynamic_axes(signatures[graph]), opset_version=OPSET, dynamo=False)
    _share_weights(out, [GRAPH_FILES[graph] for graph in SHARED_WEIGHT_GRAPHS], DYNAMICS_WEIGHTS)


def _share_weights(out: Path, graph_files: list[str], weights_file: str) -> None:
    """Move the large initializers of several graphs into one external-data file, each distinct
    tensor (by content) stored once, and rewrite the graphs to point into it."""
    import onnx
    from onnx import external_data_helper, numpy_helper

    models = [onnx.load(str(out / name)) for name in graph_files]
    offsets: dict[bytes, tuple[int, int]] = {}
    with open(out / weights_file, "wb") as blob:
        for model in models:
            for tensor in model.graph.initializer:
                raw = numpy_helper.to_array(tensor).tobytes()
                if len(raw) < EXTERNAL_MIN_BYTES:
                    continue
                key = hashlib.sha256(raw).digest()
                if key not in offsets:
                    blob.write(b"\0" * (-blob.tell() % EXTERNAL_ALIGNMENT))
                    offsets[key] = (blob.tell(), len(raw))
                    blob.write(raw)
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
                external_data_helper.set_external_data(tensor, weights_file, *offsets[key])
                tensor.data_location = onnx.TensorProto.EXTERNAL
                tensor.ClearField("raw_data")
    for model, name in zip(models, graph_files):
        onnx.save(model, str(out / name))


def _write_model_json(out: Path, config, signatures: dict, ops: dict, kv_shape: tuple, parity: dict,
                      version: str, training: dict | None, evaluation: dict | None, parent: dict | None) -> None:
    import torch

    graphs = {graph: {"file": GRAPH_FILES[graph], **signatures[graph], "onnx_ops": ops[graph]}
              for graph in GRAPH_FILES}
    actions = config.actions
    model = {
        "format": MODEL_FORMAT,
        "name": config.name,
        "version": version,
        "input": {"height": config.vae.image_height, "width": config.vae.image_width,
                  "pixel_budget": config.vae.image_height * config.vae.image_width,
                  "aspect_range": list(config.aspect_range),
                  "sizing": SIZING,
                  "channels": 3, "channel_order": "RGB", "dtype": "uint8", "layout": "BHWC", "range": [0, 255]},
        "dt": config.dt,
        "context_frames": config.dit.context_frames,
        "default_horizon": config.horizon,
        "latent_shape": list(config.vae.latent_shape),
        "patch_size": config.dit.patch_size,
        "action": {"dim": actions.dim, "names": list(actions.names), "units": list(actions.units),
                   "normalisation": {"formula": ACTION_FORMULA, "offset": list(actions.offset),
                                     "scale": list(actions.scale)},
                   "timing": "action[i] is applied at the frame before predicted frame i"},
        "sampler": {"method": "euler", "steps": config.sampler_steps, "context_noise": config.context_noise,
                    "flow": FLOW_CONVENTION},
        "dynamics": {
            "context_kv_shape": list(kv_shape),
            "weights": f"{DYNAMICS_WEIGHTS}: ONNX external data shared by both dynamics graphs",
            "context_attention": config.dit.context_attention,
            "contract": CONTRACTS[config.dit.context_attention],
        },
        "graphs": graphs,
        "files": {name: sha256_file(out / name) for name in [*GRAPH_FILES.values(), DYNAMICS_WEIGHTS]},
        "config": config.to_dict(),
        "training": training or {"command": None, "data": None, "steps": None, "wall_time_s": None},
        "evaluation": evaluation or {"vae_psnr_db": None, "rollout": None},
        "export": {"opset": OPSET, "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "sora_ros": __version__, "torch": torch.__version__, "parity_max_abs_error": parity},
    }
    if parent is not None:
        model["parent"] = parent
    write_model_json(out, model)


def _export_checked(module, examples: list[dict[str, np.ndarray]], signature: dict, path: Path) -> float:
    """Export an eval-mode module to `path` (opset OPSET, the signature's dynamic dimensions),
    traced on the first example, and check the graph: its signature, and ONNX Runtime against
    torch on every example (the inputs, in signature order; one per grid for a grid that follows
    the camera).

    Returns:
        The parity error, max abs difference over every output and example.

    Raises:
        ExportError: parity worse than PARITY_TOLERANCE. ModelDirError: another signature.
    """
    import onnxruntime as ort
    import torch

    from sora_ros.runtime.engine import session_options

    names_in, names_out = list(signature["inputs"]), list(signature["outputs"])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(torch.from_numpy(a) for a in examples[0].values()), str(path),
                          input_names=names_in, output_names=names_out, dynamic_axes=dynamic_axes(signature),
                          opset_version=OPSET, dynamo=False)
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    check_session(path, session, signature)
    parity = 0.0
    for example in examples:
        with torch.no_grad():
            outputs = module(*(torch.from_numpy(a) for a in example.values()))
        expected = [t.numpy() for t in (outputs if isinstance(outputs, tuple) else (outputs,))]
        got = session.run(None, example)
        parity = max(parity, *(float(np.max(np.abs(g - e))) for g, e in zip(got, expected)))
    if not parity <= PARITY_TOLERANCE:
        raise ExportError(f"{path}: ONNX Runtime differs from torch by {parity:.3g} (tolerance {PARITY_TOLERANCE})")
    return parity


def export_anchor(net, model_dir: str | Path, *, training: dict | None = None, seed: int = 0) -> float:
    """Add an anchored decoder to an exported model directory: anchor.onnx (opset 17, dynamic
    batch), its SHA-256 under "files" and an "anchor" section in model.json; the encoder, decoder
    and dynamics graphs are untouched.

    Args:
        net: a trained sora_ros.model.anchor.AnchorNet for this model's image size and latents.
        model_dir: an exported model directory (read_model_info must accept it).
        training: the anchor stage's summary for model.json.
        seed: seed of the random parity inputs.

    Returns:
        The parity error, max abs difference ONNX Runtime vs torch over motion and mask.

    Raises:
        ExportError: parity worse than PARITY_TOLERANCE, or a signature other than the contract's.
    """
    import onnx

    from sora_ros.runtime.anchor import ANCHOR_FILE, ANCHOR_GRAPH, anchor_signature

    out = Path(model_dir)
    info = read_model_info(out)
    image_size, latent_shape, _ = info.signature_sizes()
    signature = anchor_signature(image_size, latent_shape, net.config.plan_features)
    rng = np.random.default_rng(seed)
    examples = []
    for hw in parity_sizes(info.image_size, info.patch_grid) if info.grid_follows_camera else [info.image_size]:
        example = {}
        for name, spec in signature["inputs"].items():
            shape = concrete_shape(spec, PARITY_BATCH, info.grid_sizes(hw))
            if spec["dtype"] == "uint8":
                example[name] = rng.integers(0, 256, shape, dtype=np.uint8)
            elif name == "step":
                example[name] = rng.integers(1, net.config.horizon + 1, shape).astype(np.float32)
            else:
                example[name] = rng.standard_normal(shape, dtype=np.float32)
        examples.append(example)
    path = out / ANCHOR_FILE
    net = net.eval()
    parity = _export_checked(net, examples, signature, path)
    model = json.loads((out / MODEL_JSON).read_text())
    model["files"][ANCHOR_FILE] = sha256_file(path)
    model["anchor"] = {
        "file": ANCHOR_FILE,
        "graph": {**signature, "onnx_ops": sorted({n.op_type for n in onnx.load(str(path)).graph.node})},
        "config": net.config.to_dict(),
        "contract": ANCHOR_CONTRACT,
        "graph_name": ANCHOR_GRAPH,
        "training": training,
        "parity_max_abs_error": parity,
    }
    write_model_json(out, model)
    add_anchor_weights(out, net)
    read_model_info(out)
    return parity


# How the runtime uses the risk graph (sora_ros/runtime/risk.py), written to model.json.
RISK_CONTRACT = (
    "risk = risk(latents = the latents of frames k - frames + 1 .. k, oldest first (observed, or predicted by the "
    "dynamics; frames <= 0 are the context's), action = the action applied at the frame before frame k, physical "
    "units) = P(the label holds for frame k); a rollout's forecast for frame k is the larger of the mean over samples "
    "and risk(the same window with the context's last latent for every predicted one, the same action); NaN where "
    "the action is unknown"
)


# How risk.onnx's logit was made a probability (sora_ros.model.risk.prior_log_odds), written to model.json.
RISK_CALIBRATION = ("trained with positives weighted by negatives / positives; log(positives / negatives) of the "
                    "training frames added to the logit (prior correction, Elkan 2001), so risk is a probability")


def export_risk(graph, model_dir: str | Path, *, horizon_steps: int, label: str, rule: dict, metrics: dict,
                training: dict | None = None, seed: int = 0, grids: list | None = None) -> float:
    """Add a risk head to an exported model directory: risk.onnx (opset 17, dynamic batch), its
    SHA-256 under "files" and a "risk" section in model.json ("graph", "sha256", "horizon_steps",
    "frames", "label", "rule", "metrics", "calibration" and how it was made); the other graphs are untouched.

    Args:
        graph: a sora_ros.model.risk.RiskGraph of a trained head for this model's latents and actions.
        model_dir: an exported model directory (read_model_info must accept it).
        horizon_steps: k of the label "blocked within the next k steps".
        label: the label rule in words (sora_ros.core.risk.BlockedRule.describe).
        rule: its thresholds (the BlockedRule's fields), so evaluation labels held-out bags alike.
        metrics: held-out numbers (AUC ...), written as they are.
        training: the risk stage's summary for model.json.
        seed: seed of the random parity inputs.
        grids: the cameras' latent grids (h, w) it was trained on ("grids"; the runtime warns for
            others); None: the reference grid alone.

    Returns:
        The parity error, max abs difference ONNX Runtime vs torch of the probabilities.

    Raises:
        ExportError: parity worse than PARITY_TOLERANCE, or a signature other than the contract's.
    """
    import onnx

    from sora_ros.runtime.risk import RISK_FILE, risk_signature

    out = Path(model_dir)
    info = read_model_info(out)
    net = graph.net
    signature = risk_signature(info.latent_shape, info.action_dim, net.frames)
    rng = np.random.default_rng(seed)
    example = {name: rng.standard_normal(concrete_shape(spec, PARITY_BATCH, {}), dtype=np.float32)
               for name, spec in signature["inputs"].items()}
    path = out / RISK_FILE
    parity = _export_checked(graph.eval(), [example], signature, path)
    model = json.loads((out / MODEL_JSON).read_text())
    digest = sha256_file(path)
    model["files"][RISK_FILE] = digest
    model["risk"] = {
        "graph": RISK_FILE,
        "sha256": digest,
        "horizon_steps": horizon_steps,
        "frames": net.frames,
        "label": label,
        "rule": rule,
        "metrics": metrics,
        "grids": [list(grid) for grid in grids] if grids else [list(info.latent_shape[1:])],
        "calibration": {"log_odds_shift": round(graph.log_odds_shift, 6), "method": RISK_CALIBRATION},
        "signature": {**signature, "onnx_ops": sorted({n.op_type for n in onnx.load(str(path)).graph.node})},
        "config": net.config.to_dict(),
        "contract": RISK_CONTRACT,
        "training": training,
        "parity_max_abs_error": parity,
    }
    write_model_json(out, model)
    read_model_info(out)
    return parity
