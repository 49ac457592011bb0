"""The model directory contract: model.json, file hashes, and the graphs' inputs and outputs.

A model directory holds encoder.onnx, decoder.onnx, dynamics_context.onnx,
dynamics.onnx, dynamics.weights (the DiT weights both dynamics graphs load as
ONNX external data) and model.json; optionally anchor.onnx (the anchored decoder, model.json
"anchor"), risk.onnx (the risk head, model.json "risk") and weights.safetensors (the torch
weights fine-tuning starts from; not read here). This module reads and checks it without torch,
and is also what `sora-ros export` uses to write the contract, so writer and
reader cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sora_ros.core.files import write_text_atomic
from sora_ros.core.patch_grid import PatchGrid
from sora_ros.core.requests import MAX_HORIZON, MAX_SAMPLER_STEPS

MODEL_JSON = "model.json"
MODEL_FORMAT = "sora_ros.model/1"
# The symbolic (dynamic) batch dimension in every graph.
BATCH = "batch"
# The symbolic dimensions of a model whose grid follows the camera (model.json input.aspect_range):
# input image (H, W), latent grid (h, w), and the K * N context tokens of the dynamics keys/values.
GRID_DIMS = ("height", "width", "latent_height", "latent_width", "context_tokens")
# The symbolic frame count of a per-frame context graph (model.json dynamics.context_attention "frame"):
# K frames fill the window, one frame enters it per predicted frame.
FRAMES_DIM = "context_frames"
# Graph role -> file name. `dynamics` is one sampler step; `dynamics_context` turns the
# context latents into the per-layer keys/values every step of one predicted frame reuses.
GRAPH_FILES = {
    "encoder": "encoder.onnx",
    "decoder": "decoder.onnx",
    "dynamics_context": "dynamics_context.onnx",
    "dynamics": "dynamics.onnx",
}
# ONNX external data: the DiT weights both dynamics graphs use, stored once.
DYNAMICS_WEIGHTS = "dynamics.weights"
# The optional int8 versions of the dynamics graphs (model.json "dynamics"."int8"; `sora-ros quantize`).
INT8_GRAPH_FILES = {
    "dynamics_context": "dynamics_context.int8.onnx",
    "dynamics": "dynamics.int8.onnx",
}
# Precisions of the dynamics graphs a model directory can offer (float32 always), and the choice
# of the faster one present (sora_ros.runtime.engine.resolve_precision).
PRECISIONS = ("float32", "int8")
AUTO_PRECISION = "auto"
# How ONNX Runtime sessions get their threads: "per-session" (the default) or "shared"
# (sora_ros.runtime.engine.share_thread_pool; the benches' --thread-pool).
THREAD_POOLS = ("per-session", "shared")
# The torch weights fine-tuning starts from (sora_ros/model/weights.py). The runtime never reads
# it: a robot may leave it out of a deployed directory; where it is present its hash is checked.
TRAINABLE_WEIGHTS = "weights.safetensors"
OPTIONAL_FILES = (TRAINABLE_WEIGHTS,)
# Rectified flow as the runtime sampler implements it (sora_ros/runtime/sampler.py).
FLOW_CONVENTION = "x_t = (1 - t) * data + t * noise; velocity = noise - data; Euler from t = 1 to t = 0"
ACTION_FORMULA = "network_action = (action - offset) / scale"
HASH_CHUNK = 1 << 20
# The action range a model accepts, per component: offset +- ACTION_RANGE_SCALES x scale, i.e.
# network inputs in [-3, 3] (training normalises the commands it saw to about [-1, 1]).
ACTION_RANGE_SCALES = 3.0
# model.json larger than this is refused unread (the shipped one is ~16 KB).
MAX_MODEL_JSON_BYTES = 1 << 20
# The range of every numeric field of model.json, inclusive: a value outside it is refused at
# load, before it can make a rollout run for ever (steps, horizon) or a stamp overflow (dt).
# default_horizon and sampler.steps are capped as ~/rollout requests are (core/requests.py).
FIELD_RANGES: dict[str, tuple[float, float]] = {
    "dt": (1e-3, 60.0),  # seconds per predicted step
    "context_frames": (1, 64),
    "default_horizon": (1, MAX_HORIZON),
    "patch_size": (1, 64),
    "sampler.steps": (1, MAX_SAMPLER_STEPS),
    "sampler.context_noise": (0.0, 1.0),
    "input.height": (1, 4096),
    "input.width": (1, 4096),
    "input.aspect_range[]": (0.05, 20.0),  # width / height
    "action.dim": (0, 64),
    "latent_shape[]": (1, 4096),  # every entry
    "dynamics.context_kv_shape[]": (1, 1 << 16),  # every entry
    "action.normalisation.offset[]": (-1e6, 1e6),
    "action.normalisation.scale[]": (1e-6, 1e6),
    "anchor.config.horizon": (1, MAX_HORIZON),
    "anchor.config.plan_features": (0, MAX_HORIZON * 64 + 1),  # horizon x action.dim + 1
    "risk.horizon_steps": (1, MAX_HORIZON),  # the risk head's "blocked within the next k steps"
    "risk.frames": (1, 64),  # latents per risk-head window; also at most context_frames
}


# The facts of the weights that model.json states twice: top-level field (what the runtime reads) ->
# the field of the training "config" (ModelConfig.to_dict) that must say the same.
CONFIG_FIELDS = {
    "dt": "config.dt",
    "context_frames": "config.dit.context_frames",
    "patch_size": "config.dit.patch_size",
    "input.aspect_range": "config.aspect_range",
    "input.height": "config.vae.image_height",
    "input.width": "config.vae.image_width",
    "action.dim": "config.dit.action_dim",
    "action.normalisation.offset": "config.actions.offset",
    "action.normalisation.scale": "config.actions.scale",
}


class ModelDirError(Exception):
    """A model directory is missing something or does not match its model.json."""


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs from model.json, checked for consistency.

    Attributes:
        path: the model directory.
        image_size: (H, W) in pixels of the reference input (its pixel count is the budget); images
            are uint8 RGB (B, H, W, 3).
        latent_shape: (C, h, w) of one frame's latents at the reference input.
        context_frames: K.
        context_kv_shape: (L, 2, K * N, D), one sample's cached context keys/values at the reference input.
        per_frame_context: model.json dynamics.context_attention is "frame": the context graph takes
            any number of frames F and gives each its own keys/values (B, L, 2, F * N, D), which stay
            valid as the window slides (sora_ros.model.dit); absent in models up to 0.4 ("window").
        patch_grid: each camera's input size (sora_ros.core.patch_grid). Models exported before
            the grid followed the camera (no input.aspect_range) take every camera centre-cropped
            to their reference size, as they always did.
        grid_follows_camera: the graphs take any input size `patch_grid` chooses.
        action_offset, action_scale: normalisation, one entry per action dimension.
        raw: the whole parsed model.json.
        anchor: model.json's "anchor" section when the directory has an anchored decoder, else None.
        risk: model.json's "risk" section when the directory has a risk head (risk.onnx), else None.
        int8_graphs: graph role -> file of the int8 dynamics graphs (model.json "dynamics"."int8"),
            or None when the directory has none.
    """

    path: Path
    name: str
    version: str
    image_size: tuple[int, int]
    dt: float
    context_frames: int
    default_horizon: int
    latent_shape: tuple[int, int, int]
    patch_size: int
    action_dim: int
    action_names: tuple[str, ...]
    action_units: tuple[str, ...]
    action_offset: tuple[float, ...]
    action_scale: tuple[float, ...]
    sampler_steps: int
    context_noise: float
    context_kv_shape: tuple[int, int, int, int]
    patch_grid: PatchGrid
    grid_follows_camera: bool
    files: dict[str, str]
    raw: dict
    anchor: dict | None = None  # optional: older model directories have no anchored decoder
    risk: dict | None = None  # optional: older model directories have no risk head
    int8_graphs: dict[str, str] | None = None  # optional: added by `sora-ros quantize`
    per_frame_context: bool = False  # optional: models up to 0.4 recompute the whole window

    @property
    def action_range(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(low, high), one entry per action component in physical units: offset +- ACTION_RANGE_SCALES x scale."""
        return (tuple(o - ACTION_RANGE_SCALES * s for o, s in zip(self.action_offset, self.action_scale)),
                tuple(o + ACTION_RANGE_SCALES * s for o, s in zip(self.action_offset, self.action_scale)))

    def network_actions(self, actions: np.ndarray) -> np.ndarray:
        """float32 (..., A) actions in physical units -> the network's, by ACTION_FORMULA (NaN stays NaN)."""
        offset, scale = np.asarray(self.action_offset, np.float32), np.asarray(self.action_scale, np.float32)
        return ((np.asarray(actions, np.float32) - offset) / scale).astype(np.float32)

    def prediction_size(self, camera_hw: tuple[int, int]) -> tuple[int, int] | None:
        """(H, W) of the frames the model predicts for a camera of (height, width) pixels, or None
        when they come at the camera's own resolution (a model with an anchored decoder).

        Raises:
            AspectError: the camera's aspect ratio lies outside the model's range."""
        return None if self.anchor is not None else self.input_size(camera_hw)

    def graph_path(self, graph: str, precision: str = "float32") -> Path:
        """The file of a graph role; the int8 dynamics graphs with precision "int8".

        Raises:
            ModelDirError: int8 asked of a directory without int8 graphs, or of another graph.
        """
        if precision == "float32":
            return self.path / GRAPH_FILES[graph]
        if precision != "int8":
            raise ModelDirError(f"precision must be one of {', '.join((*PRECISIONS, AUTO_PRECISION))}, "
                                f"got {precision!r}")
        if self.int8_graphs is None:
            raise ModelDirError(f"{self.path} has no int8 dynamics graphs: add them with "
                                f"`sora-ros quantize --model {self.path}`, or run float32")
        if graph not in self.int8_graphs:
            raise ModelDirError(f"{graph} has no int8 version (only {', '.join(self.int8_graphs)})")
        return self.path / self.int8_graphs[graph]

    @property
    def downsample(self) -> int:
        """Input pixels per latent cell side."""
        return self.image_size[0] // self.latent_shape[1]

    def input_size(self, camera_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) model input for a camera of (height, width) pixels.

        Raises:
            AspectError: the camera's aspect ratio lies outside the model's range."""
        if not self.grid_follows_camera:
            return self.image_size  # fit_frame centre-crops every camera to it, as these models always did
        return self.patch_grid.input_size(*camera_hw)

    def signature_sizes(self) -> tuple[tuple, tuple, tuple]:
        """image_size, latent_shape and context_kv_shape as the graphs declare them: symbolic
        (GRID_DIMS) where the grid follows the camera, else the reference sizes."""
        if self.grid_follows_camera:
            return symbolic_sizes(self.latent_shape[0], self.context_kv_shape)
        return self.image_size, self.latent_shape, self.context_kv_shape

    def grid_sizes(self, image_hw: tuple[int, int]) -> dict[str, int]:
        """The GRID_DIMS values for a model input of (H, W) pixels."""
        return grid_sizes(image_hw, self.downsample, self.patch_size, self.context_frames)

    def one_frame_sizes(self, sizes: dict[str, int]) -> dict[str, int]:
        """`sizes` (from `grid_sizes`) for a per-frame context graph given one frame."""
        return {**sizes, FRAMES_DIM: 1, "context_tokens": sizes["context_tokens"] // self.context_frames}

    def check_latent_grid(self, grid_hw: tuple[int, int]) -> None:
        """Raises ValueError unless latents of (h, w) cells are what some camera's input encodes to."""
        h, w = grid_hw
        p = self.patch_size
        if self.grid_follows_camera:
            valid = h % p == 0 and w % p == 0 and (h // p, w // p) in self.patch_grid.grids()
        else:
            valid = (h, w) == self.latent_shape[1:]
        if not valid:
            raise ValueError(f"a {h}x{w} latent grid is not one this model encodes to (reference "
                             f"{self.latent_shape[1]}x{self.latent_shape[2]})")


def graph_signatures(image_size: tuple, latent_shape: tuple, context_frames: int,
                     context_kv_shape: tuple, action_dim: int, per_frame: bool = False) -> dict[str, dict]:
    """Every graph's inputs and outputs: {graph: {"inputs": {name: {"dtype", "shape"}}, "outputs": ...}}.

    Shapes are lists whose first entry is the symbolic batch dimension `BATCH`; a size given as a
    string (one of GRID_DIMS, see `symbolic_sizes`, or FRAMES_DIM) is a symbolic dimension too.
    With `per_frame` the context graph takes FRAMES_DIM frames and gives their keys/values
    (its output's token count then follows the frame count), and the step graph takes them as
    2L inputs (`layer_kv_names`).
    """

    def tensor(dtype: str, *dims: int) -> dict:
        return {"dtype": dtype, "shape": [BATCH, *dims]}

    height, width = image_size
    latent = tensor("float32", *latent_shape)
    kv = tensor("float32", *context_kv_shape)
    layers, _, tokens, kv_width = context_kv_shape
    context_inputs = {name: tensor("float32", tokens, kv_width) for name in layer_kv_names(layers)} if per_frame \
        else {"context_kv": kv}
    step_inputs = {**context_inputs, "noisy": latent, "flow_time": tensor("float32")}
    if action_dim:
        step_inputs["action"] = tensor("float32", action_dim)
    return {
        "encoder": {"inputs": {"image": tensor("uint8", height, width, 3)}, "outputs": {"latent": latent}},
        "decoder": {"inputs": {"latent": latent}, "outputs": {"image": tensor("float32", height, width, 3)}},
        "dynamics_context": {
            "inputs": {"context": tensor("float32", FRAMES_DIM if per_frame else context_frames, *latent_shape),
                       "context_noise": tensor("float32")},
            "outputs": {"context_kv": kv},
        },
        "dynamics": {"inputs": step_inputs, "outputs": {"velocity": latent}},
    }


def layer_kv_names(layers: int) -> list[str]:
    """The step graph's context inputs with a per-frame context: each layer's keys, then its values."""
    return [f"context_{kind}_{i}" for i in range(layers) for kind in ("keys", "values")]


def layer_kv(context_kv: np.ndarray) -> list[np.ndarray]:
    """The context graph's output (B, L, 2, T, D) as 2L views (B, T, D), in `layer_kv_names` order."""
    return [context_kv[:, j // 2, j % 2] for j in range(2 * context_kv.shape[1])]


def step_kv_inputs(context_kv: np.ndarray, per_frame: bool) -> dict[str, np.ndarray]:
    """The step graph's context inputs from the context graph's output (B, L, 2, K * N, D)."""
    if not per_frame:
        return {"context_kv": context_kv}
    return dict(zip(layer_kv_names(context_kv.shape[1]), map(np.ascontiguousarray, layer_kv(context_kv))))


def symbolic_sizes(latent_channels: int, context_kv_shape: tuple) -> tuple[tuple, tuple, tuple]:
    """image_size, latent_shape and context_kv_shape with GRID_DIMS where the grid follows the camera,
    for `graph_signatures`."""
    layers, pair, _, width = context_kv_shape
    height, width_px, h, w, tokens = GRID_DIMS
    return (height, width_px), (latent_channels, h, w), (layers, pair, tokens, width)


def grid_sizes(image_hw: tuple[int, int], downsample: int, patch_size: int, context_frames: int) -> dict[str, int]:
    """The GRID_DIMS values for a model input of (H, W) pixels."""
    height, width = image_hw
    h, w = height // downsample, width // downsample
    tokens = context_frames * (h // patch_size) * (w // patch_size)
    return {**dict(zip(GRID_DIMS, (height, width, h, w, tokens))), FRAMES_DIM: context_frames}


def concrete_shape(spec: dict, batch: int, sizes: dict[str, int]) -> list[int]:
    """A signature tensor's shape with the batch and GRID_DIMS filled in."""
    return [batch if d == BATCH else sizes.get(d, d) for d in spec["shape"]]


def write_model_json(directory: str | Path, model: dict) -> None:
    """Write `model` as DIRECTORY/model.json (indented, as people read it) through a temporary file
    and a rename: a node loading the model meanwhile, or a write that fails midway (a full disk,
    Ctrl-C), sees the old model.json or the new, never half of one.

    Raises:
        OSError: the temporary file cannot be written or renamed.
    """
    write_text_atomic(Path(directory) / MODEL_JSON, json.dumps(model, indent=2) + "\n")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _get(data: dict, dotted: str, kind: type | tuple[type, ...]):
    value = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ModelDirError(f"missing field '{dotted}'")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelDirError(f"field '{dotted}' has the wrong type ({type(value).__name__})")
    return value


def _in_range(dotted: str, value, bounds_key: str | None = None):
    """`value` if it lies in FIELD_RANGES[bounds_key or dotted] (an integer where both bounds are);
    NaN and Infinity never do. Checked before any conversion, so 1e400 cannot overflow."""
    low, high = FIELD_RANGES[bounds_key or dotted]
    integral = isinstance(low, int) and isinstance(high, int)
    if (not isinstance(value, int if integral else (int, float)) or isinstance(value, bool)
            or not low <= value <= high):  # False for NaN; exact for integers of any size
        raise ModelDirError(f"field '{dotted}' = {value!r:.40} is outside its range [{low:g}, {high:g}]"
                            + (" (integers only)" if integral else ""))
    return value


def _number(raw: dict, dotted: str):
    """A numeric field of model.json, checked against FIELD_RANGES."""
    return _in_range(dotted, _get(raw, dotted, (int, float)))


def _numbers(raw: dict, dotted: str) -> tuple:
    """A list field of model.json, every entry checked against FIELD_RANGES[dotted + "[]"]."""
    return tuple(_in_range(f"{dotted}[{i}]", v, dotted + "[]") for i, v in enumerate(_get(raw, dotted, list)))


def read_model_info(directory: str | Path) -> ModelInfo:
    """Parse and check model.json and the hashes of every file it lists.

    Args:
        directory: the model directory.

    Returns:
        The parsed, consistent ModelInfo.

    Raises:
        ModelDirError: naming the file and the problem (a directory that is missing or a file; model.json
            missing, unreadable or larger than MAX_MODEL_JSON_BYTES, wrong hash, a listed file that resolves
            outside the directory, symlinks included, a missing field or one outside its FIELD_RANGES range).
    """
    path = Path(directory)
    json_path = path / MODEL_JSON
    if not path.is_dir():  # "does not exist" would send one looking for a path that is there
        raise ModelDirError(f"{path}: a file, not a model directory (the folder that holds {MODEL_JSON})"
                            if path.exists() else f"{path}: model directory does not exist")
    try:
        _inside(path, MODEL_JSON)
        if json_path.exists() and not json_path.is_file():
            raise ModelDirError(f"{json_path}: not a regular file")
        if json_path.exists() and json_path.stat().st_size > MAX_MODEL_JSON_BYTES:
            raise ModelDirError(f"{json_path}: {json_path.stat().st_size} bytes, more than the "
                                f"{MAX_MODEL_JSON_BYTES} a model.json may have")
        raw = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{json_path}: missing") from None
    except (OSError, ValueError, RecursionError) as error:  # ValueError: bad UTF-8, bad JSON, a 5000-digit int
        raise ModelDirError(f"{json_path}: not readable JSON: {type(error).__name__}: {error}") from None
    if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
        raise ModelDirError(f"{json_path}: 'format' is not {MODEL_FORMAT!r}")
    try:
        info = _parse(path, raw)
    except ModelDirError as error:
        raise ModelDirError(f"{json_path}: {error}") from None
    for file_name, expected in info.files.items():
        file_path = _inside(path, file_name)
        if file_name in OPTIONAL_FILES and not file_path.exists():
            continue
        if not file_path.is_file():
            raise ModelDirError(f"{file_path}: missing (listed in {MODEL_JSON})")
        found = sha256_file(file_path)
        if found != expected:
            raise ModelDirError(f"{file_path}: SHA-256 mismatch: model.json says {expected}, the file has {found}")
    return info


def _inside(directory: Path, name: str) -> Path:
    """directory / name, refused unless it resolves (symlinks included) inside the directory.

    Raises:
        ModelDirError: an absolute name, `..` out of the directory, or a symlink that leads out.
    """
    root = directory.resolve()
    target = (directory / name).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ModelDirError(f"{directory / name}: resolves to {target}, outside the model directory {root}; "
                            f"every file a model directory names must lie inside it")
    return directory / name


def _parse(path: Path, raw: dict) -> ModelInfo:
    latent_shape = _numbers(raw, "latent_shape")
    kv_shape = _numbers(raw, "dynamics.context_kv_shape")
    offset = _numbers(raw, "action.normalisation.offset")
    scale = _numbers(raw, "action.normalisation.scale")
    names = tuple(_get(raw, "action.names", list))
    action_dim = _number(raw, "action.dim")
    files = _get(raw, "files", dict)
    if not all(isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()):
        raise ModelDirError("'files' must map file names to SHA-256 hex strings")
    if len(latent_shape) != 3 or len(kv_shape) != 4:
        raise ModelDirError("latent_shape needs 3 entries and dynamics.context_kv_shape 4")
    units = tuple(_get(raw, "action.units", list))
    if not all(isinstance(text, str) for text in (*names, *units)):
        raise ModelDirError("action.names and action.units must be lists of strings")
    if not (len(offset) == len(scale) == len(names) == len(units) == action_dim):
        raise ModelDirError(f"action names/units/offset/scale do not have action.dim = {action_dim} entries")
    if len(set(names)) != len(names) or "" in names:
        raise ModelDirError(f"action.names must be distinct and not empty, got {list(names)}")
    missing = [name for name in [*GRAPH_FILES.values(), DYNAMICS_WEIGHTS] if name not in files]
    if missing:
        raise ModelDirError(f"'files' does not list {missing}")
    image_size = (_number(raw, "input.height"), _number(raw, "input.width"))
    follows = "aspect_range" in _get(raw, "input", dict)
    aspect_range = _numbers(raw, "input.aspect_range") if follows else (image_size[1] / image_size[0],) * 2
    if len(aspect_range) != 2 or aspect_range[0] > aspect_range[1]:
        raise ModelDirError(f"input.aspect_range must be [lowest, highest], got {list(aspect_range)}")
    if image_size[0] % latent_shape[1] or image_size[0] // latent_shape[1] != image_size[1] // latent_shape[2]:
        raise ModelDirError(f"input {image_size} is not a whole multiple of latent grid {latent_shape[1:]}")
    cell = image_size[0] // latent_shape[1] * _number(raw, "patch_size")
    tokens = (image_size[0] // cell) * (image_size[1] // cell)
    try:
        grid = PatchGrid(cell, tokens, aspect_range)
    except ValueError as error:
        raise ModelDirError(str(error)) from None
    info = ModelInfo(
        path=path,
        name=_get(raw, "name", str),
        version=_get(raw, "version", str),
        image_size=image_size,
        dt=float(_number(raw, "dt")),
        context_frames=_number(raw, "context_frames"),
        default_horizon=_number(raw, "default_horizon"),
        latent_shape=latent_shape,
        patch_size=_number(raw, "patch_size"),
        action_dim=action_dim,
        action_names=names,
        action_units=units,
        action_offset=offset,
        action_scale=scale,
        sampler_steps=_number(raw, "sampler.steps"),
        context_noise=float(_number(raw, "sampler.context_noise")),
        context_kv_shape=kv_shape,
        patch_grid=grid,
        grid_follows_camera=follows,
        files=files,
        raw=raw,
        anchor=_anchor_section(raw, files),
        risk=_risk_section(raw, files, _number(raw, "context_frames")),
        int8_graphs=_int8_section(raw, files),
        per_frame_context=_context_attention(raw) == "frame",
    )
    _check_lineage(raw, files)
    _check_pixel_budget(raw, image_size)
    if "config" in raw:
        _check_config(raw, latent_shape)
    if info.risk is not None:
        _check_risk_grid(info.risk, latent_shape, action_dim)
        _check_risk_trained_grids(info)
    return info


def _present(raw: dict, dotted: str) -> bool:
    """Whether the field at `dotted` exists (older model.json files lack some)."""
    value = raw
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def _same(a, b) -> bool:
    """Equal numbers or lists of numbers; floats equal to 1e-9 relative (JSON round trips are exact,
    a value computed twice may not be)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if not isinstance(a, numbers) or not isinstance(b, numbers) or isinstance(a, bool) or isinstance(b, bool):
        return False
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _disagree(field: str, value, config_field: str, config_value) -> ModelDirError:
    return ModelDirError(f"{field} = {value!r:.80} but {config_field} = {config_value!r:.80}: the weights were "
                         f"trained as the config says; a model.json edited in one place only would run them "
                         f"wrongly: make both say the same, or re-export the model")


def _check_pixel_budget(raw: dict, image_size: tuple[int, int]) -> None:
    """input.pixel_budget (where present) is the reference input's pixel count: the budget every
    camera's grid keeps near is computed from input.height x input.width."""
    if _present(raw, "input.pixel_budget"):
        budget = _get(raw, "input.pixel_budget", int)
        if budget != image_size[0] * image_size[1]:
            raise ModelDirError(f"input.pixel_budget = {budget} but input.height x input.width = "
                                f"{image_size[0]} x {image_size[1]} = {image_size[0] * image_size[1]}")


def _check_config(raw: dict, latent_shape: tuple) -> None:
    """The training "config" agrees with the top-level fields the runtime uses (CONFIG_FIELDS, and
    latent_shape against the config's VAE), each where both are present.

    Raises:
        ModelDirError: naming the field, both values and the config field.
    """
    for field, config_field in CONFIG_FIELDS.items():
        if _present(raw, field) and _present(raw, config_field):
            value, config_value = _get(raw, field, (int, float, list)), _get(raw, config_field, (int, float, list))
            if not _same(value, config_value):
                raise _disagree(field, value, config_field, config_value)
    vae = ("config.vae.latent_channels", "config.vae.image_height", "config.vae.image_width", "config.vae.channels")
    if all(_present(raw, key) for key in vae):
        channels, height, width = (_get(raw, key, int) for key in vae[:3])
        downsample = 2 ** (len(_get(raw, vae[3], list)) - 1)  # VAEConfig.downsample
        implied = [channels, height // downsample, width // downsample]
        if list(latent_shape) != implied:
            raise _disagree("latent_shape", list(latent_shape), "config.vae (latent_channels, image size / "
                            f"{downsample})", implied)


def _check_risk_grid(risk: dict, latent_shape: tuple, action_dim: int) -> None:
    """The risk head takes the reference latent grid (it ends in a Linear over its features): its
    signature (where recorded) must take latent_shape, risk.frames of them, and the model's actions.
    A model re-exported at another pixel budget with the old risk.onnx fails here, by name.

    Raises:
        ModelDirError: naming both shapes.
    """
    from sora_ros.runtime.risk import risk_signature

    if "signature" not in risk:
        return
    expected = risk_signature(tuple(latent_shape), action_dim, risk["frames"])["inputs"]
    found = risk["signature"].get("inputs") if isinstance(risk["signature"], dict) else None
    shapes = {name: spec.get("shape") if isinstance(spec, dict) else None for name, spec in (found or {}).items()}
    wanted = {name: spec["shape"] for name, spec in expected.items()}
    if shapes != wanted:
        raise ModelDirError(f"risk.signature inputs {shapes} but latent_shape {list(latent_shape)}, risk.frames "
                            f"{risk['frames']} and action.dim {action_dim} need {wanted}: the risk head takes the "
                            "reference latent grid; retrain it for this model (sora-ros train-risk)")


def _check_risk_trained_grids(info: ModelInfo) -> None:
    """Every grid risk.grids lists (the cameras' grids the head trained on) is one the model encodes a
    camera to (`ModelInfo.check_latent_grid`): a hand edit of another grid would hide nothing but a typo.

    Raises:
        ModelDirError: naming the entry.
    """
    for i, grid in enumerate(info.risk.get("grids", [])):
        try:
            info.check_latent_grid(tuple(grid))
        except ValueError as error:
            raise ModelDirError(f"risk.grids[{i}]: {error}; it lists the cameras' grids the head trained on "
                                f"(`sora-ros train-risk` writes them)") from None


def _listed_file(raw: dict, dotted: str, files: dict) -> str:
    """The file name at `dotted`, which must be a plain name (no folder) that 'files' lists and hashes."""
    name = _get(raw, dotted, str)
    if name not in files or "/" in name or "\\" in name:
        raise ModelDirError(f"{dotted} {name!r} is not a file that 'files' lists")
    return name


def _anchor_section(raw: dict, files: dict) -> dict | None:
    """model.json's optional "anchor" section, checked: it names a file that 'files' lists (and
    hashes), and its config's horizon and `plan` input size are in range (graphs exported before
    the `plan` input have no plan_features: 0)."""
    if "anchor" not in raw:
        return None
    anchor = _get(raw, "anchor", dict)
    _listed_file(raw, "anchor.file", files)
    config = _get(raw, "anchor.config", dict)
    horizon = _number(raw, "anchor.config.horizon")
    if "plan_features" not in config:
        return {**anchor, "config": {**config, "plan_features": 0}}
    features, wanted = _number(raw, "anchor.config.plan_features"), horizon * _number(raw, "action.dim") + 1
    if features not in (0, wanted):  # sora_ros.runtime.anchor.plan_size
        raise ModelDirError(f"anchor.config.plan_features = {features}, but horizon {horizon} x action.dim + 1 = {wanted}")
    return anchor


def _risk_section(raw: dict, files: dict, context_frames: int) -> dict | None:
    """model.json's optional "risk" section, checked: "graph" names a file of the directory that
    'files' lists with the same SHA-256 as the section's "sha256", "horizon_steps" and "frames"
    lie in their FIELD_RANGES ranges (and frames at most context_frames: the first predicted
    frame's window reaches back into the context only), "label" is text, "metrics" an object and
    "grids" (optional: the cameras' latent grids it trained on) a non-empty list of [h, w], each a grid
    the model encodes to (`_check_risk_trained_grids`)."""
    if "risk" not in raw:
        return None
    risk = _get(raw, "risk", dict)
    name = _listed_file(raw, "risk.graph", files)
    if _get(raw, "risk.sha256", str) != files[name]:
        raise ModelDirError(f"risk.sha256 differs from the SHA-256 'files' lists for {name}")
    _number(raw, "risk.horizon_steps")
    if _number(raw, "risk.frames") > context_frames:
        raise ModelDirError(f"risk.frames = {risk['frames']} exceeds context_frames = {context_frames}")
    _get(raw, "risk.label", str)
    _get(raw, "risk.metrics", dict)
    if "grids" in risk:
        grids = _get(raw, "risk.grids", list)
        if not grids:  # export writes the reference grid for a head that trained on it alone
            raise ModelDirError("risk.grids lists no grid: a head trained on at least one camera's; leave the "
                                "field out for a head trained on the reference grid alone")
        for i, grid in enumerate(grids):
            if not (isinstance(grid, list) and len(grid) == 2 and all(
                    isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in grid)):
                raise ModelDirError(f"risk.grids must be a list of [h, w] latent grids (positive integers): "
                                    f"risk.grids[{i}] is {json.dumps(grid):.40}")
    return risk


def _int8_section(raw: dict, files: dict) -> dict[str, str] | None:
    """model.json's optional "dynamics"."int8"."graphs": both dynamics roles, each a file that
    'files' lists (and hashes)."""
    if "int8" not in _get(raw, "dynamics", dict):
        return None
    graphs = _get(raw, "dynamics.int8.graphs", dict)
    if set(graphs) != set(INT8_GRAPH_FILES):
        raise ModelDirError(f"dynamics.int8.graphs must name {sorted(INT8_GRAPH_FILES)}, got {sorted(graphs)}")
    return {graph: _listed_file(raw, f"dynamics.int8.graphs.{graph}", files) for graph in graphs}


# model.json "parent" (a fine-tuned model's parent, sora_ros/model/weights.py parent_record): field -> type.
PARENT_FIELDS = {"name": str, "version": str, "id": str, "weights_sha256": str}
SHA256_HEX_CHARS = 64


def _check_lineage(raw: dict, files: dict) -> None:
    """The optional "weights" and "parent" sections: weights name a file 'files' lists; a parent
    has a name, version, id and the SHA-256 (hex) of the weights the fine-tune started from."""
    if "weights" in raw:
        name = _get(raw, "weights.file", str)
        if name != TRAINABLE_WEIGHTS or name not in files:
            raise ModelDirError(f"weights.file {name!r} is not {TRAINABLE_WEIGHTS!r} listed in 'files'")
    if "parent" in raw:
        for field, kind in PARENT_FIELDS.items():
            _get(raw, f"parent.{field}", kind)
        digest = raw["parent"]["weights_sha256"]
        if len(digest) != SHA256_HEX_CHARS or any(c not in "0123456789abcdef" for c in digest):
            raise ModelDirError(f"parent.weights_sha256 {digest!r:.80} is not a hex SHA-256")


def expected_signatures(info: ModelInfo) -> dict[str, dict]:
    """The graph signatures model.json's facts imply (see `graph_signatures`)."""
    image_size, latent_shape, kv_shape = info.signature_sizes()
    return graph_signatures(image_size, latent_shape, info.context_frames, kv_shape, info.action_dim,
                            info.per_frame_context)


def _context_attention(raw: dict) -> str:
    """model.json dynamics.context_attention; "window" where absent (models up to 0.4)."""
    if "context_attention" not in _get(raw, "dynamics", dict):
        return "window"
    value = _get(raw, "dynamics.context_attention", str)
    if value not in ("window", "frame"):
        raise ModelDirError(f"dynamics.context_attention must be 'window' or 'frame', got {value!r:.40}")
    return value


# ONNX Runtime's type names -> the dtype names in model.json.
ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def _describe(args) -> dict[str, dict]:
    """ONNX Runtime NodeArgs -> {name: {"dtype", "shape"}} in the signature format; a dimension
    without a fixed size is shown by its symbolic name, or "?" when it has none."""
    return {
        arg.name: {"dtype": ORT_DTYPES.get(arg.type, arg.type),
                   "shape": [d if isinstance(d, (int, str)) else "?" for d in arg.shape]}
        for arg in args
    }


def check_session(file_path: Path, session, signature: dict) -> None:
    """Compare an ONNX Runtime session's inputs and outputs with the expected signature.

    Args:
        file_path: the graph file (for the message).
        session: an onnxruntime.InferenceSession of that file.
        signature: {"inputs": ..., "outputs": ...} from `graph_signatures`.

    Raises:
        ModelDirError: naming the file, the tensor, what was expected and what was found.
    """
    for kind, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        found, expected = _describe(args), signature[kind]
        if list(found) != list(expected):
            raise ModelDirError(f"{file_path}: {kind} are {list(found)}, expected {list(expected)}")
        for name, spec in expected.items():
            if found[name] != spec:
                raise ModelDirError(f"{file_path}: {kind[:-1]} '{name}' is {found[name]['dtype']} "
                                    f"{found[name]['shape']}, expected {spec['dtype']} {spec['shape']}")
