"""rclpy message construction shared by the nodes (stamps in integer nanoseconds)."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from sora_ros.bag.messages import pinhole_matrices
from sora_ros.units import NS_PER_S



def header(stamp_ns: int, frame_id: str) -> Header:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def camera_info(width: int, height: int, vertical_fov_deg: float, stamp_ns: int, frame_id: str) -> CameraInfo:
    """An ideal pinhole camera: square pixels, centred principal point, no distortion."""
    k, p = pinhole_matrices(width, height, vertical_fov_deg)
    return CameraInfo(
        header=header(stamp_ns, frame_id),
        width=width,
        height=height,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=k,
        r=np.eye(3).reshape(-1),
        p=p,
    )


def odometry(x: float, y: float, yaw: float, v: float, w: float, stamp_ns: int, frame_id: str, child_frame_id: str) -> Odometry:
    """A planar pose (m, m, rad) and body velocity (m/s, rad/s)."""
    msg = Odometry(header=header(stamp_ns, frame_id), child_frame_id=child_frame_id)
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = float(v), float(w)
    return msg
