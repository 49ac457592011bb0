"""rclpy messages of the world-model nodes: PatchLatents, FutureFrames, DiagnosticArray,
and parameter descriptors. Conversions only; the logic is in sora_ros/live."""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from std_msgs.msg import Header

from sora_ros.image_conversion import numpy_to_image
from sora_ros.live.latents import latent_bytes
from sora_ros.live.stats import StatusEntry
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.nodes.ros_messages import header
from sora_ros.units import NS_PER_S
from sora_ros.runtime.model_dir import ModelInfo

RGB8 = "rgb8"


def stamp_ns(msg_header: Header) -> int:
    """A header's stamp in integer nanoseconds."""
    return msg_header.stamp.sec * NS_PER_S + msg_header.stamp.nanosec


def duration(seconds: float) -> Duration:
    sec, nanosec = divmod(max(0, round(seconds * NS_PER_S)), NS_PER_S)
    return Duration(sec=sec, nanosec=nanosec)


def _bytes_field(data: bytes) -> array.array:
    field = array.array("B")
    field.frombytes(data)  # one memcpy; the field setter would check every byte in Python
    return field


def patch_latents(latent: np.ndarray, stamp: int, frame_id: str, model: str, info: ModelInfo) -> PatchLatents:
    """PatchLatents of one float32 (C, h, w) latent grid."""
    channels, height, width = info.latent_shape
    return PatchLatents(header=header(stamp, frame_id), model_id=model, channels=channels, height=height,
                        width=width, patch_size=info.patch_size, dtype="float32", data=_bytes_field(latent_bytes(latent)))


def future_frames(*, origin_ns: int, frame_id: str, model: str, info: ModelInfo, latents: np.ndarray,
                  frames: np.ndarray | None, uncertainty: np.ndarray | None, actions: np.ndarray | None,
                  samples: int, steps: int, latency_s: float) -> FutureFrames:
    """One rollout as FutureFrames.

    Args:
        origin_ns: stamp of the last observed frame; step k (1-based) is stamped origin + k * dt.
        latents: float32 (H, C, h, w), the mean over samples.
        frames: uint8 (H, Hi, Wi, 3) RGB, or None to send latents only.
        uncertainty: float32 (H,), or None when samples == 1.
        actions: float32 (H, A) assumed, or None (unconditioned model).
    """
    dt_ns = round(info.dt * NS_PER_S)
    stamps = [origin_ns + (k + 1) * dt_ns for k in range(latents.shape[0])]
    msg = FutureFrames(header=header(origin_ns, frame_id), model_id=model, dt=float(info.dt),
                       horizon=latents.shape[0], samples=samples, sampler_steps=steps, latency=duration(latency_s))
    msg.latents = [patch_latents(latent, stamp, frame_id, model, info) for latent, stamp in zip(latents, stamps)]
    if frames is not None:
        msg.frames = [numpy_to_image(frame, RGB8, header(stamp, frame_id)) for frame, stamp in zip(frames, stamps)]
    if uncertainty is not None and samples > 1:
        msg.uncertainty = [float(u) for u in uncertainty]
    if actions is not None:
        msg.action_dim = info.action_dim
        msg.action_names = list(info.action_names)
        msg.actions = np.asarray(actions, np.float32).reshape(-1).tolist()  # NaN rows: unknown
    return msg


def diagnostic_array(entries: list[StatusEntry], hardware_id: str, stamp: int) -> DiagnosticArray:
    """/diagnostics message of plain status entries."""
    return DiagnosticArray(header=header(stamp, ""), status=[
        DiagnosticStatus(level=bytes([entry.level]), name=entry.name, message=entry.message, hardware_id=hardware_id,
                         values=[KeyValue(key=key, value=value) for key, value in entry.values.items()])
        for entry in entries
    ])


def float_descriptor(description: str, low: float, high: float, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only,
                               floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)])


def int_descriptor(description: str, low: int, high: int, read_only: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only,
                               integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])


def plain_descriptor(description: str, read_only: bool = True) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only)
