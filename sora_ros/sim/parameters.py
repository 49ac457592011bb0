"""The sim node's ROS parameters: declared by nodes/sim.py, listed by `sora-ros sim --help`."""

from __future__ import annotations

from sora_ros.core.parameters import ParameterSpec

SIM_PARAMETERS = (
    ParameterSpec("rate", 10.0, "frames per second (wall clock and simulated time)", 0.5, 60.0),
    ParameterSpec("width", 128, "image width in pixels", 8, 1024),
    ParameterSpec("height", 128, "image height in pixels", 8, 1024),
    ParameterSpec("seed", 0, "world seed: same seed, same world and the same wandering", 0, 2**31 - 1),
    ParameterSpec("world_size", 8.0, "side of the square room in metres", 3.0, 50.0),
    ParameterSpec("num_objects", 30, "static objects in the room", 0, 300),
    ParameterSpec("cmd_vel_timeout", 0.5, "seconds without cmd_vel before the robot wanders by itself", 0.0, 60.0,
                  read_only=False),
    ParameterSpec("publish_clock", False, "publish /clock and stamp everything with simulated time (for use_sim_time)"),
)
# By name: for the command-line options that set them (sora-ros sim record, sora-ros demo).
SIM_SPECS = {spec.name: spec for spec in SIM_PARAMETERS}
