"""rclpy messages of every node: images, headers, camera info, odometry, paths, PatchLatents,
FutureFrames, DiagnosticArray, and parameter descriptors. Conversions only; the logic they
carry lives in sora_ros/core and sora_ros/runtime. Stamps are integer nanoseconds."""

from __future__ import annotations

import array
import json
import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from sora_ros.core.camera import pinhole_matrices
from sora_ros.core.image import encode_compressed, pack_image
from sora_ros.core.parameters import ParameterSpec
from sora_ros.core.stats import StatusEntry
from sora_ros.core.units import NS_PER_S, ros_time_ns, sec_nanosec
from sora_ros.msg import FutureFrames, PatchLatents
from sora_ros.runtime.latents import latent_bytes
from sora_ros.runtime.model_dir import ModelInfo
from sora_ros.runtime.pipeline import RolloutOutcome

RGB8 = "rgb8"


def model_info(model: str, info: ModelInfo, providers: list[str], precision: str) -> String:
    """~/model_info: std_msgs/String holding one JSON object that describes the loaded model.

    Keys: model_id ("<name>@<version>#<hash>"), sha256 (file -> hash), dt_s, context_frames,
    default_horizon, latent_shape [C, h, w] and input_size [H, W] pixels (uint8 RGB) at the
    reference size whose pixel count is the budget, aspect_range [lowest, highest] camera
    width / height served (each camera's grid follows its own, sora_ros.core.patch_grid),
    patch_size, actions [{"name", "unit"}] in the model's order, providers (the ONNX Runtime
    execution providers in use), dynamics_precision (float32 or int8).
    """
    return String(data=json.dumps({
        "model_id": model, "sha256": info.files, "dt_s": info.dt, "context_frames": info.context_frames,
        "default_horizon": info.default_horizon, "latent_shape": list(info.latent_shape),
        "patch_size": info.patch_size,
        "actions": [{"name": n, "unit": u} for n, u in zip(info.action_names, info.action_units)],
        "input_size": list(info.image_size), "aspect_range": list(info.patch_grid.aspect_range),
        "providers": list(providers), "dynamics_precision": precision,
    }, sort_keys=True))


def header(stamp_ns: int, frame_id: str) -> Header:
    sec, nanosec = sec_nanosec(stamp_ns)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_ns(msg_header: Header) -> int:
    """A header's stamp in integer nanoseconds."""
    return ros_time_ns(msg_header.stamp)


def duration(seconds: float) -> Duration:
    sec, nanosec = sec_nanosec(max(0, round(seconds * NS_PER_S)))
    return Duration(sec=sec, nanosec=nanosec)


def _bytes_field(data: bytes | np.ndarray) -> array.array:
    field = array.array("B")
    field.frombytes(data)  # one memcpy; the field setter would check every byte in Python
    return field


def numpy_to_image(pixels: np.ndarray, encoding: str, msg_header: Header | None = None, *,
                   bigendian: bool = False) -> Image:
    """A sensor_msgs/Image of a pixel array.

    Args:
        pixels: (H, W) or (H, W, C) in the encoding's dtype and channel order.
        encoding: a key of sora_ros.core.image.FORMATS.
        msg_header: stamp and frame_id, optional.
        bigendian: write multi-byte pixels big-endian.

    Raises:
        ImageConversionError: the array does not fit the encoding.
    """
    packed = pack_image(pixels, encoding, bigendian=bigendian)
    msg = Image(height=packed.height, width=packed.width, encoding=packed.encoding,
                is_bigendian=packed.is_bigendian, step=packed.step, data=_bytes_field(packed.data))
    if msg_header is not None:
        msg.header = msg_header
    return msg


def rgb_to_compressed(rgb: np.ndarray, image_format: str = "jpeg", msg_header: Header | None = None,
                      quality: int = 90) -> CompressedImage:
    """A sensor_msgs/CompressedImage (JPEG or PNG) of uint8 (H, W, 3) RGB.

    Raises:
        ImageConversionError: unknown format or not an RGB image.
    """
    msg = CompressedImage(format=image_format, data=_bytes_field(encode_compressed(rgb, image_format, quality)))
    if msg_header is not None:
        msg.header = msg_header
    return msg


def camera_info(width: int, height: int, vertical_fov_deg: float, stamp_ns: int, frame_id: str) -> CameraInfo:
    """An ideal pinhole camera: square pixels, centred principal point, no distortion."""
    k, p = pinhole_matrices(width, height, vertical_fov_deg)
    return CameraInfo(header=header(stamp_ns, frame_id), width=width, height=height, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=k, r=np.eye(3).reshape(-1), p=p)


def odometry(x: float, y: float, yaw: float, v: float, w: float, stamp_ns: int, frame_id: str,
             child_frame_id: str) -> Odometry:
    """A planar pose (m, m, rad) and body velocity (m/s, rad/s)."""
    msg = Odometry(header=header(stamp_ns, frame_id), child_frame_id=child_frame_id)
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = float(v), float(w)
    return msg


def yaw(orientation) -> float:
    """The heading about z (rad, in [-pi, pi]) of a geometry_msgs/Quaternion, for a robot on the floor;
    NaN for a quaternion that is not finite or all zero (no orientation given)."""
    x, y, z, w = orientation.x, orientation.y, orientation.z, orientation.w
    if not all(map(math.isfinite, (x, y, z, w))) or x == y == z == w == 0:
        return math.nan
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def path(poses: np.ndarray, start_ns: int, dt: float, frame_id: str) -> Path:
    """A nav_msgs/Path of planar poses float (T, 3) (x m, y m, yaw rad), pose k stamped start + k * dt s."""
    msg = Path(header=header(start_ns, frame_id))
    for k, (x, y, yaw) in enumerate(poses):
        stamped = PoseStamped(header=header(start_ns + round(k * dt * NS_PER_S), frame_id))
        stamped.pose.position.x, stamped.pose.position.y = float(x), float(y)
        stamped.pose.orientation.z, stamped.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        msg.poses.append(stamped)
    return msg


def patch_latents(latent: np.ndarray, stamp: int, frame_id: str, model: str, info: ModelInfo) -> PatchLatents:
    """PatchLatents of one float32 (C, h, w) latent grid (h x w follows the camera's aspect ratio)."""
    channels, height, width = latent.shape
    return PatchLatents(header=header(stamp, frame_id), model_id=model, channels=channels, height=height,
                        width=width, patch_size=info.patch_size, dtype="float32", data=_bytes_field(latent_bytes(latent)))


def future_frames(outcome: RolloutOutcome, candidate: int, model: str, info: ModelInfo,
                  latency_s: float) -> FutureFrames:
    """One candidate of a rollout as FutureFrames: latents always, frames when all were decoded,
    each stamped with the time it predicts; uncertainty when samples > 1; the risk per step when the
    model has a risk head; the actions assumed (NaN rows: unknown) unless the model is unconditioned."""
    forecast, origin = outcome.forecasts[candidate], outcome.context
    frame_id = origin.frame_id
    msg = FutureFrames(header=header(origin.newest_stamp_ns, frame_id), model_id=model, dt=float(info.dt),
                       horizon=len(forecast.stamps_ns), samples=outcome.samples, sampler_steps=outcome.plan.steps,
                       latency=duration(latency_s))
    msg.latents = [patch_latents(latent, stamp, frame_id, model, info)
                   for latent, stamp in zip(forecast.latents, forecast.stamps_ns)]
    if forecast.frames is not None:
        msg.frames = [numpy_to_image(frame, RGB8, header(stamp, frame_id))
                      for frame, stamp in zip(forecast.frames, forecast.stamps_ns)]
    if outcome.samples > 1:
        msg.uncertainty = [float(u) for u in forecast.uncertainty]
    if forecast.risk is not None:
        msg.risk = np.asarray(forecast.risk, np.float32).tolist()
    if forecast.actions is not None:
        msg.action_dim = info.action_dim
        msg.action_names = list(info.action_names)
        msg.actions = np.asarray(forecast.actions, np.float32).reshape(-1).tolist()
    return msg


def twist(v: float, w: float) -> Twist:
    """A planar command: linear.x = v m/s, angular.z = w rad/s."""
    msg = Twist()
    msg.linear.x, msg.angular.z = float(v), float(w)
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


def declare(node, spec: ParameterSpec):
    """Declare `spec` on `node` with a descriptor (description, range, read-only) and return its value."""
    if isinstance(spec.default, bool) or spec.low is None:
        descriptor = plain_descriptor(spec.description, spec.read_only)
    elif isinstance(spec.default, int):
        descriptor = int_descriptor(spec.description, int(spec.low), int(spec.high), spec.read_only)
    else:
        descriptor = float_descriptor(spec.description, spec.low, spec.high, spec.read_only)
    return node.declare_parameter(spec.name, spec.default, descriptor).value
