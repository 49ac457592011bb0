"""`sora-ros bench image`: sensor_msgs/Image <-> numpy for a 640x480 rgb8 frame, against a
plain copy of the same bytes."""

from __future__ import annotations

import argparse

import numpy as np

from sora_ros.bench.timing import median_ms
from sora_ros.core.image import image_to_numpy, image_to_rgb
from sora_ros.core.machine import machine_description


def run(args: argparse.Namespace) -> int:
    """Image message <-> numpy for a 640x480 rgb8 frame, against a plain copy of the same bytes."""
    from sora_ros.nodes.messages import numpy_to_image  # rclpy messages: what the nodes build

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    msg = numpy_to_image(frame, "rgb8")
    bgr_msg = numpy_to_image(frame[..., ::-1].copy(), "bgr8")
    rows = [
        ("memcpy of the 921,600 bytes (baseline)", lambda: frame.copy()),
        ("Image -> numpy (rgb8, zero-copy view)", lambda: image_to_numpy(msg)),
        ("Image -> numpy, owned copy", lambda: image_to_numpy(msg).copy()),
        ("Image -> RGB (bgr8, colour conversion)", lambda: image_to_rgb(bgr_msg)),
        ("numpy -> Image (rgb8)", lambda: numpy_to_image(frame, "rgb8")),
    ]
    print(f"machine: {machine_description()}")
    print(f"{'640x480 rgb8':44s} {'ms':>8s} {'x baseline':>11s}")
    baseline = None
    for name, func in rows:
        ms = median_ms(func, args.repeats)
        baseline = baseline or ms
        print(f"{name:44s} {ms:8.3f} {ms / baseline:11.2f}")
    return 0
