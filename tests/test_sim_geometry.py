"""The floor plan the sim's collisions and range sensor use: boxes are rectangles, not their
circumscribed discs, and every footprint agrees with the shape pybullet renders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sora_ros.sim.drive import Pose2D
from sora_ros.sim.geometry import Footprints, clearance, ray_ranges
from sora_ros.sim.world import ROBOT_RADIUS, SimWorld, WorldConfig

NO_CIRCLES = np.zeros((0, 3))
# A 0.6 x 0.2 m box at (1, 0) turned 90 degrees: its long side runs along y.
BOX = Footprints(NO_CIRCLES, np.array([[1.0, 0.0, math.pi / 2, 0.3, 0.1]]))


def approx(value: float):
    return pytest.approx(value, abs=1e-9)


def test_box_clearance_is_the_distance_to_its_sides() -> None:
    assert clearance(0.5, 0.0, 0.2, 100.0, BOX) == approx(0.5 - 0.1 - 0.2)  # facing its long side
    assert clearance(1.0, -0.8, 0.2, 100.0, BOX) == approx(0.8 - 0.3 - 0.2)  # beyond its end
    assert clearance(1.2, 0.4, 0.0, 100.0, BOX) == approx(math.hypot(0.1, 0.1))  # off a corner
    assert clearance(1.0, 0.25, 0.0, 100.0, BOX) == approx(-0.05)  # inside: minus the depth
    assert clearance(0.0, 0.0, 0.2, 0.5, BOX) == approx(0.3)  # the walls still count


def test_rays_meet_a_turned_box_at_its_side() -> None:
    # at it, away, near its end (y = 0.2 at x = 0.9), past its end (y = 0.4 there: it ends at 0.3), along x = 0
    angles = np.array([0.0, math.pi, math.atan2(0.2, 0.9), math.atan2(0.4, 0.9), math.pi / 2])
    ranges = ray_ranges(0.0, 0.0, angles, 100.0, BOX, 5.0)
    np.testing.assert_allclose(ranges, [0.9, 5.0, math.hypot(0.9, 0.2), 5.0, 5.0], atol=1e-9)
    inside = ray_ranges(1.0, 0.0, np.array([0.3]), 100.0, BOX, 5.0)
    assert inside[0] == 0.0
    parallel = ray_ranges(1.05, -1.0, np.array([math.pi / 2]), 100.0, BOX, 5.0)  # inside the x slab, along y
    np.testing.assert_allclose(parallel, [0.7], atol=1e-9)


def test_the_robot_drives_up_to_a_box_side_not_its_disc() -> None:
    with SimWorld(WorldConfig(width=8, height=8, num_balls=0, other_robot=False), seed=1000005) as world:
        boxes = world.obstacles(moving=False).boxes
        narrow = boxes[np.argmin(boxes[:, 4] / boxes[:, 3])]  # the box whose disc overhangs its sides most
        x, y, yaw, half_x, half_y = narrow
        normal = yaw + math.pi / 2  # along the short half-side
        start = half_y + ROBOT_RADIUS + 0.3
        world.pose = Pose2D(x + start * math.cos(normal), y + start * math.sin(normal), yaw=normal + math.pi)
        for _ in range(30):
            world.step(0.3, 0.0)
        gap = math.hypot(world.pose.x - x, world.pose.y - y) - half_y - ROBOT_RADIUS
        assert world.collisions > 0
        assert 0 <= gap < 0.05  # against the side, where the old disc would have stopped it
        assert half_x * math.sqrt(2) - half_y > 0.05  # ... this far off (the test means something)

