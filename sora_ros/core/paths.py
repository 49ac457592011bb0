"""Where the installed sora_ros package keeps its share files (launch/, config/, models/),
for a colcon install and `make setup` (the ament index, through ament_index_python) and a
plain pip install without AMENT_PREFIX_PATH (the source tree) alike; and the Fast DDS profile
the package ships for camera-sized messages."""

from __future__ import annotations

import os
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError as _NotInIndex
from ament_index_python.packages import get_package_prefix, get_package_share_directory

PACKAGE = "sora_ros"
# The variable Fast DDS reads its XML profile from, and the profile sora_ros ships.
FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
FASTDDS_PROFILE = Path("config") / "fastdds.xml"


class PackageNotFoundError(LookupError):
    """A ROS package is not in the ament index (and is not this source tree)."""


def package_prefix(package: str) -> Path | None:
    """The install prefix of a ROS package in the ament index (AMENT_PREFIX_PATH), or None."""
    try:
        return Path(get_package_prefix(package))
    except (_NotInIndex, OSError):  # OSError: AMENT_PREFIX_PATH is not set
        return None


def package_share(package: str) -> Path:
    """share/<package> of an installed package; for sora_ros, the source tree as a fallback.

    Raises:
        PackageNotFoundError: the package is not installed.
    """
    prefix = package_prefix(package)
    if prefix is not None:
        return Path(get_package_share_directory(package))
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


def apply_fastdds_profile(environ: dict[str, str] | os._Environ = os.environ) -> str | None:
    """Point Fast DDS at sora_ros's profile (config/fastdds.xml: a shared-memory segment that
    holds whole camera frames) unless `environ` already names a profile. Takes effect for
    processes started afterwards and for this one if rclpy is not yet initialised.

    Returns:
        The profile path now in `environ`, or None when the package is not found.
    """
    if FASTDDS_PROFILE_VARIABLE not in environ:
        try:
            environ[FASTDDS_PROFILE_VARIABLE] = str(package_share(PACKAGE) / FASTDDS_PROFILE)
        except PackageNotFoundError:
            return None
    return environ[FASTDDS_PROFILE_VARIABLE]
