"""Where the installed sora_ros package keeps its share files (launch/, config/, models/),
for a colcon install (the ament index) and a pip install (the source tree) alike."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "sora_ros"


class PackageNotFoundError(LookupError):
    """A ROS package is not in the ament index (and is not this source tree)."""


def package_prefix(package: str) -> Path | None:
    """The install prefix of a ROS package from the ament index (AMENT_PREFIX_PATH), or None."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        if (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / package).exists():
            return Path(prefix)
    return None


def package_share(package: str) -> Path:
    """share/<package> of an installed package; for sora_ros, the source tree as a fallback.

    Raises:
        PackageNotFoundError: the package is not installed.
    """
    prefix = package_prefix(package)
    if prefix is not None:
        return prefix / "share" / package
    if package == PACKAGE:  # pip (editable) install: launch/ and models/ live beside the package
        source_root = Path(__file__).resolve().parents[2]
        if (source_root / "package.xml").exists():
            return source_root
    raise PackageNotFoundError(f"package {package!r} not found in AMENT_PREFIX_PATH (source its setup.bash?)")


def default_model_dir() -> Path | None:
    """models/default of the installed package (which may lack it: loading says so), or None
    when the package itself is not found."""
    try:
        return package_share(PACKAGE) / "models" / "default"
    except PackageNotFoundError:
        return None
