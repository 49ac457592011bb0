"""Node parameters as data: one table per node declares them (rclpy) and documents them
(`sora-ros ... --help`, which must work without ROS)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter: its name, default (whose type is the parameter's), meaning and range.

    `low`/`high` bound int and float parameters (inclusive); None leaves them unbounded.
    Read-only parameters are set at start (`--ros-args -p name:=value`) and fixed after.
    """

    name: str
    default: bool | int | float | str
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = True


def parameters_help(specs: tuple[ParameterSpec, ...]) -> str:
    """The parameters as --help lines: `name (default 10.0, 0.5 to 60, changeable): description`."""
    lines = []
    for spec in specs:
        facts = [f"default {spec.default!r}" if isinstance(spec.default, str) else f"default {spec.default}"]
        if spec.low is not None and spec.high is not None:
            facts.append(f"{spec.low} to {spec.high}")
        if not spec.read_only:
            facts.append("changeable at run time")
        lines.append(f"  {spec.name} ({', '.join(facts)}): {spec.description}")
    return "\n".join(lines)
