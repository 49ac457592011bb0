"""Message construction for bags: rosbags message classes from one typestore.

The rosbags classes are plain dataclasses; these helpers fill them from numpy
and integer-nanosecond stamps so every writer in the project stamps the same
way. Time is integer nanoseconds since the epoch of the clock that made it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from sora_ros.core.image import encode_compressed, pack_image
from sora_ros.core.camera import pinhole_matrices
from sora_ros.core.units import sec_nanosec

# The newest ROS 2 distribution rosbags 0.11 knows, matching the rclpy wheels.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TWIST = "geometry_msgs/msg/Twist"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
ODOMETRY = "nav_msgs/msg/Odometry"
CLOCK = "rosgraph_msgs/msg/Clock"

_T = TYPESTORE.types
_Time = _T["builtin_interfaces/msg/Time"]
_Header = _T["std_msgs/msg/Header"]
_Vector3 = _T["geometry_msgs/msg/Vector3"]


def time_msg(stamp_ns: int) -> Any:
    """builtin_interfaces/Time for a non-negative stamp in nanoseconds."""
    sec, nanosec = sec_nanosec(stamp_ns)
    return _Time(sec=sec, nanosec=nanosec)


def header(stamp: int, frame_id: str) -> Any:
    """std_msgs/Header with the stamp in nanoseconds."""
    return _Header(stamp=time_msg(stamp), frame_id=frame_id)


def image(rgb: np.ndarray, stamp: int, frame_id: str) -> Any:
    """sensor_msgs/Image, rgb8, from uint8 (H, W, 3) RGB."""
    packed = pack_image(rgb, "rgb8")
    return _T[IMAGE](
        header=header(stamp, frame_id),
        height=packed.height,
        width=packed.width,
        encoding=packed.encoding,
        is_bigendian=packed.is_bigendian,
        step=packed.step,
        data=packed.data,
    )


def compressed_image(rgb: np.ndarray, stamp: int, frame_id: str, image_format: str = "jpeg") -> Any:
    """sensor_msgs/CompressedImage (JPEG or PNG) from uint8 (H, W, 3) RGB."""
    return _T[COMPRESSED_IMAGE](
        header=header(stamp, frame_id), format=image_format, data=encode_compressed(rgb, image_format)
    )


def camera_info(width: int, height: int, vertical_fov_deg: float, stamp: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo of an ideal pinhole camera (see pinhole_matrices).

    Args:
        width, height: image size in pixels.
        vertical_fov_deg: full vertical field of view in degrees.
        stamp: nanoseconds.
        frame_id: the camera's optical frame.
    """
    k, p = pinhole_matrices(width, height, vertical_fov_deg)
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T[CAMERA_INFO](
        header=header(stamp, frame_id),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=k,
        r=np.eye(3).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def twist(linear_x: float, angular_z: float) -> Any:
    """geometry_msgs/Twist for a planar robot: forward speed (m/s) and yaw rate (rad/s)."""
    return _T[TWIST](linear=_Vector3(x=float(linear_x), y=0.0, z=0.0), angular=_Vector3(x=0.0, y=0.0, z=float(angular_z)))


def odometry(
    x: float, y: float, yaw: float, linear_x: float, angular_z: float, stamp: int, frame_id: str, child_frame_id: str
) -> Any:
    """nav_msgs/Odometry of a planar pose (m, m, rad) and body velocity (m/s, rad/s)."""
    pose = _T["geometry_msgs/msg/Pose"](
        position=_T["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=0.0),
        orientation=_T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)),
    )
    covariance = np.zeros(36, np.float64)
    return _T[ODOMETRY](
        header=header(stamp, frame_id),
        child_frame_id=child_frame_id,
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=covariance),
        twist=_T["geometry_msgs/msg/TwistWithCovariance"](twist=twist(linear_x, angular_z), covariance=covariance.copy()),
    )


def clock(stamp: int) -> Any:
    """rosgraph_msgs/Clock at `stamp` nanoseconds."""
    return _T[CLOCK](clock=time_msg(stamp))
