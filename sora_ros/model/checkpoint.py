"""Checkpoints: plain state dicts plus the config dict, loadable with weights_only=True."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field

import torch

from sora_ros.model.config import ModelConfig
from sora_ros.model.dit import DiT
from sora_ros.model.vae import VAE

CHECKPOINT_FORMAT = "sora_ros.checkpoint/1"
# torch.save writes a zip archive, which starts so and ends with its index: a file that starts so
# without the index at its end is a checkpoint cut short.
_ZIP_START = b"PK\x03\x04"
_SNIFF_BYTES = 512  # of a file's start, to say what it is when torch cannot load it
# What a file given as a checkpoint should have been, closing every refusal that is not about its contents.
EXPECTED = "expected a torch checkpoint written by `sora-ros train` (its --out's checkpoint.pt or checkpoint_best.pt)"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the modules built from the stored config, plus training state.

    Attributes:
        extra: whatever the trainer stored beside the weights (step, optimiser state dicts,
            data summary); plain tensors, numbers, strings, lists and dicts only.
    """

    config: ModelConfig
    vae: VAE
    dit: DiT
    extra: dict = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, config: ModelConfig, vae: VAE, dit: DiT, **extra) -> None:
    """Write a checkpoint atomically (temporary file, then rename).

    Args:
        path: destination file.
        config: the config both modules were built from.
        extra: training state to keep (plain data only, see `Checkpoint.extra`).
    """
    payload = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(),
               "vae": vae.state_dict(), "dit": dit.state_dict(), "extra": extra}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


class CheckpointError(ValueError):
    """A file that is not a readable sora_ros checkpoint; the message names the file and says why."""


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> Checkpoint:
    """Load a checkpoint without unpickling arbitrary objects (torch.load weights_only=True).

    Raises:
        CheckpointError (a ValueError): the file cannot be read, is truncated or damaged, is not a
            torch file (text, empty, a zip of something else), is not a sora_ros checkpoint (other keys), or its config or
            weights do not fit one another.
    """
    payload = _read_payload(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a sora_ros checkpoint (expected format {CHECKPOINT_FORMAT}); "
                              "name the checkpoint.pt that sora-ros train wrote")
    wrong = [key for key in ("config", "vae", "dit") if not isinstance(payload.get(key), dict)]
    wrong += [] if isinstance(payload.get("extra", {}), dict) else ["extra"]
    if wrong:
        raise CheckpointError(f"{path}: a sora_ros checkpoint whose {', '.join(wrong)} is missing or not a dict; "
                              "the file is damaged or was not written by sora-ros train")
    try:
        config = ModelConfig.from_dict(payload["config"])
        vae, dit = VAE(config.vae), DiT(config)
    except (ValueError, TypeError, AttributeError, KeyError) as error:  # unknown, missing or inconsistent fields
        raise CheckpointError(f"{path}: its stored config is not valid: {error}") from error
    try:
        vae.load_state_dict(payload["vae"])
        dit.load_state_dict(payload["dit"])
    except RuntimeError as error:
        reason = " ".join(str(error).split())[:300]  # torch lists every key on lines of their own
        raise CheckpointError(f"{path}: weights do not match the stored config: {reason}") from error
    return Checkpoint(config, vae, dit, payload.get("extra", {}))


def _read_payload(path: str | os.PathLike, map_location: str):
    """torch.load(path) with weights_only=True, any failure as a CheckpointError naming the file,
    saying what it is instead (empty, text, cut short) and what was expected."""
    try:
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
    except OSError as error:  # missing, a directory, not readable
        raise CheckpointError(f"{path}: cannot read it: {error.strerror or error}; {EXPECTED}") from error
    if not head:  # torch would say only "EOFError"
        raise CheckpointError(f"{path}: an empty file (0 bytes); {EXPECTED}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch's many ways of failing on a file that is no torch file  # noqa: BLE001
        if head.startswith(_ZIP_START) and not zipfile.is_zipfile(path):  # torch says "Invalid argument" or miniz's
            raise CheckpointError(f"{path}: truncated or damaged (a copy cut short, a full disk?); use an earlier "
                                  "checkpoint (e.g. the run's checkpoint_best.pt) or train again") from error
        if _looks_like_text(head):  # torch's unpickler says e.g. "KeyError: 101" (the byte "e")
            first = head.decode("utf-8", "replace").splitlines()[0][:40] if head.strip() else ""
            raise CheckpointError(f"{path}: a text file (starting {first!r}), not a torch checkpoint; "
                                  f"{EXPECTED}") from error
        first_line = (str(error).splitlines() or [""])[0][:200]
        if "weights_only" in first_line:  # torch's advice to load it unsafely: not for a file that is no checkpoint
            first_line = "no pickle of tensors torch loads safely"
        raise CheckpointError(f"{path}: not a torch checkpoint file ({type(error).__name__}: {first_line}); "
                              f"{EXPECTED}") from error


def _looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 text (a torch file is a zip or a pickle: binary)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut at the end of `head` is still text
        if error.start < len(head) - 3:
            return False
        text = head[: error.start].decode("utf-8")
    return all(char.isprintable() or char in "\t\n\r\f" for char in text)
