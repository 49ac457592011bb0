"""The simulated world: a kinematic camera robot in a randomised pybullet room.

One seed fixes everything (room textures, lights, object kinds, sizes, colours
and places, ball kicks, the second robot's wandering), so an episode replays
frame for frame. The robot is kinematic: it moves exactly as the drive model
says, and a move that would overlap a wall or an object is refused (the robot
stops) instead of being resolved by the physics engine. Balls are real
rigid bodies; they roll, bounce, and get kicked now and then.

Units: metres, radians, seconds; the room is the square [-S/2, S/2]^2.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import pybullet as pb
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from sora_ros.sim import textures
from sora_ros.sim.drive import DriveLimits, Pose2D, integrate, limited_velocity
from sora_ros.sim.geometry import Footprints, clearance, ray_ranges
from sora_ros.sim.wander import RAY_ANGLES, WanderPolicy
from sora_ros.core.units import NS_PER_S

PHYSICS_HZ = 120  # rigid-body step for the balls; frames are rendered at the config rate
WALL_HEIGHT = 1.2
WALL_THICKNESS = 0.1
ROBOT_RADIUS = 0.22
ROBOT_HEIGHT = 0.25
START_CLEARANCE = 1.0  # m kept free around the robot's start
MAX_RANGE = 6.0  # m, range of the obstacle rays
BALL_KICK_PER_SECOND = 0.3  # expected kicks per ball per second
OTHER_ROBOT_URDF = "r2d2.urdf"
OTHER_ROBOT_SCALE = 0.45
OTHER_ROBOT_RADIUS = 0.25
MESH_URDFS = ("duck_vhacd.urdf", "teddy_vhacd.urdf")  # bundled with pybullet


@dataclass(frozen=True)
class WorldConfig:
    """Everything about a world that is not drawn from the seed."""

    width: int = 128  # image pixels
    height: int = 128
    rate_hz: float = 10.0  # frames per second of simulated time
    world_size: float = 8.0  # side of the square room, m
    num_objects: int = 30  # static objects
    num_balls: int = 4  # rolling balls
    other_robot: bool = True  # a second robot wandering by itself
    vertical_fov_deg: float = 70.0
    camera_height: float = 0.3  # m above the floor
    camera_pitch_deg: float = -10.0  # looking slightly down, so the floor's motion shows
    limits: DriveLimits = field(default_factory=DriveLimits)

    @property
    def period_ns(self) -> int:
        return round(NS_PER_S / self.rate_hz)


@dataclass(frozen=True)
class Lighting:
    direction: tuple[float, float, float]
    colour: tuple[float, float, float]
    ambient: float
    diffuse: float
    specular: float


@contextmanager
def _c_stdout_discarded() -> Iterator[None]:
    """Meanwhile, send what native code prints to stdout (file descriptor 1) to /dev/null; stderr,
    where pybullet reports its errors, stays as it is."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what C stdio still buffers goes to /dev/null too
        os.dup2(saved, 1)
        os.close(saved)


class SimWorld:
    """A randomised room, stepped at the config rate and rendered on the CPU."""

    def __init__(self, config: WorldConfig, seed: int) -> None:
        """Build the world for `seed` (pybullet DIRECT, no window).

        Raises:
            ValueError: a config the room cannot hold (room too small, no size).
        """
        if config.world_size < 2 * START_CLEARANCE + 1 or config.width <= 0 or config.height <= 0:
            raise ValueError(f"world_size must be >= {2 * START_CLEARANCE + 1} m and the image non-empty: {config}")
        self.config, self.seed = config, seed
        self._rng = np.random.default_rng(seed)
        self._half = config.world_size / 2
        with _c_stdout_discarded():  # pybullet's connect prints an "argv[0]=" banner line there
            self._client = BulletClient(connection_mode=pb.DIRECT)
        self._client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self._client.setGravity(0, 0, -9.81)
        self._client.setTimeStep(1 / PHYSICS_HZ)
        self._texture_dir = tempfile.TemporaryDirectory(prefix="sora_sim_")
        self.pose = Pose2D(yaw=float(self._rng.uniform(-math.pi, math.pi)))
        self.step_count = 0
        self.collisions = 0
        # Discs (x, y, r) that keep objects apart when placing them (a box's or mesh's is wider than
        # the object); what the robot bumps into is the objects' own shapes, _circles and _boxes.
        self._placed: list[tuple[float, float, float]] = []
        self._circles: list[tuple[float, float, float]] = []
        self._boxes: list[tuple[float, float, float, float, float]] = []
        self._build_room()
        self._build_objects()
        self._balls = [self._add_ball() for _ in range(config.num_balls)]
        self._robot = self._add_robot_body()
        self._other: tuple[int, Pose2D, WanderPolicy] | None = self._add_other_robot() if config.other_robot else None
        self.lighting = Lighting(
            direction=(float(self._rng.uniform(-1, 1)), float(self._rng.uniform(-1, 1)), float(self._rng.uniform(0.5, 2))),
            colour=tuple(float(c) for c in 1 - 0.3 * self._rng.random(3)),
            ambient=float(self._rng.uniform(0.35, 0.75)),
            diffuse=float(self._rng.uniform(0.3, 0.7)),
            specular=float(self._rng.uniform(0.0, 0.3)),
        )
        aspect = config.width / config.height
        self._projection = self._client.computeProjectionMatrixFOV(config.vertical_fov_deg, aspect, 0.05, 2 * config.world_size)
        self._sync_bodies()

    # ---- building ----------------------------------------------------------------

    def _texture(self, repeat: tuple[int, int] = (1, 1)) -> int:
        """A random texture, tiled `repeat` (rows, cols) times, loaded into pybullet."""
        tile = textures.random_texture(self._rng)  # uint8 (S, S, 3) RGB
        image = np.tile(tile, (repeat[0], repeat[1], 1))
        path = Path(self._texture_dir.name) / f"texture_{len(list(Path(self._texture_dir.name).iterdir()))}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return self._client.loadTexture(str(path))

    def _static_box(self, half_extents: list[float], position: list[float], yaw: float = 0.0) -> int:
        c = self._client
        body = c.createMultiBody(
            0,
            c.createCollisionShape(pb.GEOM_BOX, halfExtents=half_extents),
            c.createVisualShape(pb.GEOM_BOX, halfExtents=half_extents),
            position,
            c.getQuaternionFromEuler([0, 0, yaw]),
        )
        return body

    def _build_room(self) -> None:
        half, c = self._half, self._client
        floor = self._static_box([half, half, 0.01], [0, 0, -0.01])
        c.changeVisualShape(floor, -1, textureUniqueId=self._texture((8, 8)), rgbaColor=[1, 1, 1, 1])
        length = half + WALL_THICKNESS
        for x, y, yaw in ((half + WALL_THICKNESS / 2, 0, 0), (-half - WALL_THICKNESS / 2, 0, 0), (0, half + WALL_THICKNESS / 2, math.pi / 2), (0, -half - WALL_THICKNESS / 2, math.pi / 2)):
            wall = self._static_box([WALL_THICKNESS / 2, length, WALL_HEIGHT / 2], [x, y, WALL_HEIGHT / 2], yaw)
            c.changeVisualShape(wall, -1, textureUniqueId=self._texture((1, 4)), rgbaColor=[1, 1, 1, 1])

    def _free_spot(self, radius: float) -> tuple[float, float] | None:
        """A random place for a disc of `radius` clear of walls, the start and the discs placed before."""
        limit = self._half - radius - 0.05
        for _ in range(50):
            x, y = self._rng.uniform(-limit, limit, 2)
            if math.hypot(x, y) < START_CLEARANCE + radius:
                continue
            if all(math.hypot(x - fx, y - fy) > radius + fr + 0.1 for fx, fy, fr in self._placed):
                return float(x), float(y)
        return None  # crowded room: leave the object out

    def _build_objects(self) -> None:
        c, rng = self._client, self._rng
        for _ in range(self.config.num_objects):
            kind = rng.choice(["box", "cylinder", "sphere", "pillar", "mesh"], p=[0.35, 0.25, 0.15, 0.1, 0.15])
            size = float(rng.uniform(0.1, 0.35))
            radius = size * (1.5 if kind == "mesh" else math.sqrt(2) if kind == "box" else 1.0)
            spot = self._free_spot(radius)
            if spot is None:
                continue
            yaw = float(rng.uniform(-math.pi, math.pi))
            colour = [*textures.random_colour(rng), 1.0]
            if kind == "mesh":
                body = c.loadURDF(str(rng.choice(MESH_URDFS)), [*spot, 0.0], c.getQuaternionFromEuler([math.pi / 2, 0, yaw]), useFixedBase=True, globalScaling=size * 6)
                c.changeVisualShape(body, -1, rgbaColor=colour)
                # Round enough for a disc: the larger half-side of its collision hull's bounding box.
                low, high = (np.array(corner[:2]) for corner in c.getAABB(body))
                self._circles.append((*((low + high) / 2).tolist(), float((high - low).max() / 2)))
            elif kind == "box":
                height = float(rng.uniform(0.1, 0.6))
                width = size * float(rng.uniform(0.5, 1))
                body = self._static_box([size, width, height], [*spot, height], yaw)
                self._boxes.append((*spot, yaw, size, width))
                if rng.random() < 0.5:
                    c.changeVisualShape(body, -1, textureUniqueId=self._texture(), rgbaColor=[1, 1, 1, 1])
                else:
                    c.changeVisualShape(body, -1, rgbaColor=colour)
            else:
                height = float(rng.uniform(0.6, 1.5)) if kind == "pillar" else float(rng.uniform(0.1, 0.7))
                shape = pb.GEOM_SPHERE if kind == "sphere" else pb.GEOM_CYLINDER
                z = size if kind == "sphere" else height / 2
                body = c.createMultiBody(
                    0,
                    c.createCollisionShape(shape, radius=size, height=height),
                    c.createVisualShape(shape, radius=size, length=height, rgbaColor=colour),
                    [*spot, z],
                )
                self._circles.append((*spot, size))
            self._placed.append((*spot, radius))

    def _add_ball(self) -> int:
        c, rng = self._client, self._rng
        radius = float(rng.uniform(0.08, 0.16))
        x, y = self._free_spot(radius) or (0.0, self._half - 0.5)
        body = c.createMultiBody(
            0.5,
            c.createCollisionShape(pb.GEOM_SPHERE, radius=radius),
            c.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=[*textures.random_colour(rng, (0.7, 1.0)), 1]),
            [x, y, radius],
        )
        c.changeDynamics(body, -1, restitution=0.8, rollingFriction=0.0005, lateralFriction=0.5, linearDamping=0.05)
        self._kick(body)
        return body

    def _kick(self, ball: int) -> None:
        speed, heading = self._rng.uniform(0.3, 1.2), self._rng.uniform(-math.pi, math.pi)
        self._client.resetBaseVelocity(ball, [speed * math.cos(heading), speed * math.sin(heading), 0])

    def _add_robot_body(self) -> int:
        """Our robot's body: kinematic, so balls bounce off it; its camera does not see it."""
        c = self._client
        return c.createMultiBody(
            0,
            c.createCollisionShape(pb.GEOM_CYLINDER, radius=ROBOT_RADIUS, height=ROBOT_HEIGHT),
            c.createVisualShape(pb.GEOM_CYLINDER, radius=ROBOT_RADIUS, length=ROBOT_HEIGHT, rgbaColor=[0.2, 0.2, 0.2, 1]),
            [0, 0, ROBOT_HEIGHT / 2],
        )

    def _add_other_robot(self) -> tuple[int, Pose2D, WanderPolicy] | None:
        spot = self._free_spot(OTHER_ROBOT_RADIUS)
        if spot is None:
            return None
        body = self._client.loadURDF(OTHER_ROBOT_URDF, [*spot, 0.5], useFixedBase=True, globalScaling=OTHER_ROBOT_SCALE)
        pose = Pose2D(*spot, yaw=float(self._rng.uniform(-math.pi, math.pi)))
        return body, pose, WanderPolicy(np.random.default_rng(self._rng.integers(2**63)), self.config.limits)

    # ---- stepping ----------------------------------------------------------------

    @property
    def stamp_ns(self) -> int:
        """Simulated time of the current state, integer nanoseconds from 0."""
        return self.step_count * self.config.period_ns

    def _obstacles(self, exclude_other: bool = False, moving: bool = True) -> Footprints:
        """The footprints of everything solid but our robot: with `moving` the balls and (unless
        `exclude_other`) the other robot where they are now."""
        circles = list(self._circles)
        for ball in self._balls if moving else ():
            (x, y, z), _ = self._client.getBasePositionAndOrientation(ball)
            circles.append((x, y, z))  # a resting ball's centre height is its radius
        if self._other is not None and moving and not exclude_other:
            circles.append((self._other[1].x, self._other[1].y, OTHER_ROBOT_RADIUS))
        boxes = np.array(self._boxes, np.float64).reshape(-1, 5)
        return Footprints(np.array(circles, np.float64).reshape(-1, 3), boxes)

    def obstacles(self, moving: bool = True) -> Footprints:
        """The footprints of the solid things but our robot, m: the static objects, and with
        `moving` the balls and the other robot where they are now."""
        return self._obstacles(moving=moving)

    def ranges(self) -> np.ndarray:
        """Free distance along each of wander.RAY_ANGLES from our robot: float (K,) m."""
        angles = self.pose.yaw + RAY_ANGLES
        return ray_ranges(self.pose.x, self.pose.y, angles, self._half, self._obstacles(), MAX_RANGE)

    def _drive(self, pose: Pose2D, v_cmd: float, w_cmd: float, radius: float, obstacles: Footprints) -> tuple[Pose2D, bool]:
        """Move `pose` one frame period; a move into something is refused. Returns (pose, blocked)."""
        dt = 1 / self.config.rate_hz
        v, w = limited_velocity(pose, v_cmd, w_cmd, self.config.limits, dt)
        moved = integrate(pose, v, w, dt)
        before = clearance(pose.x, pose.y, radius, self._half, obstacles)
        after = clearance(moved.x, moved.y, radius, self._half, obstacles)
        if after < 0 and after < before:  # would hit, or dig deeper into, something
            return integrate(pose, 0.0, w, dt), True
        return moved, False

    def step(self, v_cmd: float, w_cmd: float) -> Pose2D:
        """Advance one frame period with our robot commanded to (v m/s, w rad/s).

        Returns:
            The robot's new pose and velocity (velocity 0 after a refused move).
        """
        self.pose, blocked = self._drive(self.pose, v_cmd, w_cmd, ROBOT_RADIUS, self._obstacles())
        self.collisions += blocked
        if self._other is not None:
            body, pose, policy = self._other
            others = self._obstacles(exclude_other=True)
            own = others._replace(circles=np.vstack([others.circles, [[self.pose.x, self.pose.y, ROBOT_RADIUS]]]))
            ranges = ray_ranges(pose.x, pose.y, pose.yaw + RAY_ANGLES, self._half, own, MAX_RANGE)
            v, w = policy.act(ranges, 1 / self.config.rate_hz)
            self._other = (body, self._drive(pose, v, w, OTHER_ROBOT_RADIUS, own)[0], policy)
        kick_chance = BALL_KICK_PER_SECOND / self.config.rate_hz
        for ball in self._balls:
            if self._rng.random() < kick_chance:
                self._kick(ball)
        self._sync_bodies()
        for _ in range(max(1, round(PHYSICS_HZ / self.config.rate_hz))):
            self._client.stepSimulation()
        self.step_count += 1
        return self.pose

    def _sync_bodies(self) -> None:
        c = self._client
        c.resetBasePositionAndOrientation(self._robot, [self.pose.x, self.pose.y, ROBOT_HEIGHT / 2], c.getQuaternionFromEuler([0, 0, self.pose.yaw]))
        if self._other is not None:
            body, pose, _ = self._other
            c.resetBasePositionAndOrientation(body, [pose.x, pose.y, 0.5 * OTHER_ROBOT_SCALE], c.getQuaternionFromEuler([0, 0, pose.yaw - math.pi / 2]))

    # ---- rendering ---------------------------------------------------------------

    def render(self) -> np.ndarray:
        """The robot's camera view now: uint8 (H, W, 3) RGB."""
        cfg, pose, c = self.config, self.pose, self._client
        forward = ROBOT_RADIUS + 0.02  # the lens sits just in front of the body
        eye = [pose.x + forward * math.cos(pose.yaw), pose.y + forward * math.sin(pose.yaw), cfg.camera_height]
        pitch = math.radians(cfg.camera_pitch_deg)
        look = [math.cos(pitch) * math.cos(pose.yaw), math.cos(pitch) * math.sin(pose.yaw), math.sin(pitch)]
        # The image's up is the robot's vertical pitched with the camera, never parallel to `look` (a
        # fixed +z is, at +-90 degrees, and pybullet then renders nothing): looking down, the top of
        # the image is the robot's front; at any other pitch the image is the one +z gave.
        up = [-math.sin(pitch) * math.cos(pose.yaw), -math.sin(pitch) * math.sin(pose.yaw), math.cos(pitch)]
        view = c.computeViewMatrix(eye, [e + d for e, d in zip(eye, look)], up)
        light = self.lighting
        _, _, rgba, _, _ = c.getCameraImage(
            cfg.width,
            cfg.height,
            view,
            self._projection,
            renderer=pb.ER_TINY_RENDERER,
            lightDirection=light.direction,
            lightColor=light.colour,
            lightAmbientCoeff=light.ambient,
            lightDiffuseCoeff=light.diffuse,
            lightSpecularCoeff=light.specular,
            shadow=0,  # shadows double the render time
            flags=pb.ER_NO_SEGMENTATION_MASK,
        )
        return np.asarray(rgba, np.uint8).reshape(cfg.height, cfg.width, 4)[:, :, :3].copy()

    # ---- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Disconnect pybullet and delete the generated textures."""
        self._client.disconnect()
        self._texture_dir.cleanup()

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
