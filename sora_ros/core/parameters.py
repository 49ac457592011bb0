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


def as_declared_type(default: object, value: object) -> object:
    """`value` as a parameter declared with `default` takes it: an integer (not a bool) given for a
    float parameter is that float (`-p risk_weight:=8` is 8.0, as `:=8.0` would be); any other value
    is returned as it is, for ROS to accept or refuse by its type (a string for a float: refused,
    naming the parameter and both types)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
