"""Patch latents as raw bytes (sora_ros/msg/PatchLatents.data) and back, with the checks a
receiver needs, plus the model id that says which model made them.

Legend: C latent channels, h/w latent grid.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from sora_ros.runtime.model_dir import ModelInfo

LATENT_DTYPES = ("float32", "float16")
MODEL_ID_HASH_CHARS = 12


class LatentsError(ValueError):
    """Latents that do not fit the loaded model; the message says what differs."""


def model_id(info: ModelInfo) -> str:
    """"<name>@<version>#<sha256 prefix>", the prefix over every file hash in model.json."""
    digest = hashlib.sha256(json.dumps(info.files, sort_keys=True).encode()).hexdigest()
    return f"{info.name}@{info.version}#{digest[:MODEL_ID_HASH_CHARS]}"


def latent_bytes(latent: np.ndarray) -> bytes:
    """float32 (C, h, w) -> little-endian bytes in (C, h, w) order."""
    return np.ascontiguousarray(latent, "<f4").tobytes()


def latent_from_bytes(data: bytes, dtype: str, shape: tuple[int, int, int], sender_model: str,
                      info: ModelInfo, own_model: str) -> np.ndarray:
    """Check and unpack received latents.

    Args:
        data: the raw bytes.
        dtype: "float32" or "float16".
        shape: (C, h, w) the message states.
        sender_model: the message's model id.
        info: the loaded model.
        own_model: the loaded model's id.

    Returns:
        float32 (C, h, w).

    Raises:
        LatentsError: another model, another shape, an unknown dtype, a size that does not
            match the shape, or non-finite values.
    """
    if sender_model != own_model:
        raise LatentsError(f"latents from model {sender_model!r}, this node runs {own_model!r}")
    if len(shape) != 3 or shape[0] != info.latent_shape[0]:
        raise LatentsError(f"latent shape {tuple(shape)}: the model's latents are ({info.latent_shape[0]}, h, w)")
    try:
        info.check_latent_grid(tuple(shape[1:]))
    except ValueError as error:
        raise LatentsError(str(error)) from None
    if dtype not in LATENT_DTYPES:
        raise LatentsError(f"latent dtype {dtype!r}; supported: {', '.join(LATENT_DTYPES)}")
    element = np.dtype(dtype).newbyteorder("<")
    expected = int(np.prod(shape)) * element.itemsize
    if len(data) != expected:
        raise LatentsError(f"latent data has {len(data)} bytes, {tuple(shape)} {dtype} needs {expected}")
    latent = np.frombuffer(data, element).reshape(shape).astype(np.float32)
    if not np.isfinite(latent).all():
        raise LatentsError("latent data contains NaN or Inf")
    return latent
