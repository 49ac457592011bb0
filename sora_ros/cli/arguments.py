"""Argument checks shared by the subcommands: argparse `type=` converters that refuse a bad value
at parsing (one line, exit 2, as argparse reports any usage error), checks across a subcommand's
arguments run right after parsing (`usage_check`), and the check of an output directory before the
work that fills it. Not a subcommand itself."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path


def positive_int(text: str) -> int:
    """An integer >= 1 (a count, a stride).

    Raises:
        argparse.ArgumentTypeError: not an integer, or below 1.
    """
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seed).

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.
    """
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_seconds(text: str) -> float:
    """A finite number of seconds >= 0 (a start time).

    Raises:
        argparse.ArgumentTypeError: not a number, NaN, infinite, or negative.
    """
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def finite_float(text: str) -> float:
    """A finite number (no NaN, no infinity).

    Raises:
        argparse.ArgumentTypeError: not a number, NaN or infinite.
    """
    value = _number(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def float_between(low: float, high: float) -> Callable[[str], float]:
    """A converter for a finite number in [low, high], both included.

    Example: `type=float_between(MIN_FPS, MAX_FPS)` for a frame rate."""

    def convert(text: str) -> float:
        value = finite_float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {value:g}")
        return value

    return convert


def _number(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


# A name to file results under (model.json's evaluation.KEY): letters, digits, "_", "." and "-".
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def record_key(text: str) -> str:
    """A key to store results under, e.g. `sim_test` (a JSON key people read and scripts look up).

    Raises:
        argparse.ArgumentTypeError: empty, or a character other than A-Z a-z 0-9 _ . -
    """
    if not KEY_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be a non-empty name of letters, digits, '_', '.' and '-' "
                                         f"(e.g. sim_test), got {text!r}")
    return text


def usage_check(parser: argparse.ArgumentParser,
                problem: Callable[[argparse.Namespace], str | None]) -> Callable[[argparse.Namespace], None]:
    """A check across a subcommand's arguments (one option needs another, or is not read), for
    `parser.set_defaults(check_usage=...)`: `sora_ros.cli.main` runs it right after parsing, and
    what `problem` finds becomes `parser`'s usage error (its usage line, the message, exit 2).

    Example: eval's `--write-bag` without `--out` (sora_ros/cli/evaluate.py, `_usage_problem`).
    """

    def check(args: argparse.Namespace) -> None:
        message = problem(args)
        if message:
            parser.error(message)

    return check


def topic_name(text: str) -> str:
    """A fully qualified ROS 2 topic name (e.g. /camera/image_raw), as a bag stores it, checked with
    rclpy's own validator (the rules of rcl). Without rclpy (no ROS 2 installed) the name is taken
    as given: a bag can be written without ROS, and the rules are not copied here.

    Raises:
        argparse.ArgumentTypeError: rclpy says the name is not a valid fully qualified topic name.
    """
    try:
        from rclpy.exceptions import InvalidTopicNameException
        from rclpy.validate_full_topic_name import validate_full_topic_name
    except ImportError:
        return text
    try:
        validate_full_topic_name(text)
    except InvalidTopicNameException as error:
        # rclpy's message is three lines (the name, a caret under the fault); keep the first.
        reason = str(error).splitlines()[0].removeprefix("Invalid topic name: ").rstrip(":")
        raise argparse.ArgumentTypeError(f"{text!r} is not a ROS 2 topic name: {reason} "
                                         "(write it fully qualified, e.g. /camera/image_raw)") from None  # fmt: skip
    return text


def out_dir(text: str) -> Path:
    """An output directory's path, as --out takes it (its other checks are `out_dir_problem`'s, run
    by the command before its work). An empty string is refused here: as a Path it would be ".",
    the current directory, written into without anyone asking for it.

    Raises:
        argparse.ArgumentTypeError: `text` is empty.
    """
    if not text:
        raise argparse.ArgumentTypeError("must name a directory, got an empty string")
    return Path(text)


def out_dir_problem(path: Path | str) -> str | None:
    """Why `path` cannot become an output directory, or None when it can; creates nothing.

    Checked before a command's work, so that a long run does not fail at its last step: `path`
    must be a directory or not exist, and its nearest existing ancestor must be a directory this
    process may create entries in. An empty string, a dangling symbolic link, a name longer than the
    file system allows and any other OSError met while looking are reasons too, never raised.
    """
    if not str(path):
        return "an empty path; name a directory"
    path = Path(path)
    try:
        return _out_dir_problem(path)
    except OSError as error:  # e.g. ENAMETOOLONG, EACCES on a parent: stat() raises what exists() cannot hide
        return f"{path}: {error.strerror or error}; choose another output path"


def new_dir_problem(path: Path | str) -> str | None:
    """Why `path` cannot become a new directory (a bag: rosbag2 writes one that does not exist yet),
    or None; `out_dir_problem`'s checks, and `path` must not exist. Creates nothing."""
    problem = out_dir_problem(path)
    if problem is None and Path(path).exists():  # a writable directory, out_dir_problem found
        problem = f"{path} exists; a bag is written into a new directory: remove it or choose another path"
    return problem


def _out_dir_problem(path: Path) -> str | None:
    if path.is_symlink() and not path.exists():  # mkdir would fail on it; writing would follow it
        return f"{path} is a broken symbolic link; remove it or choose another output path"
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a directory; name a directory, or a path that does not exist yet"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable; name a directory you may write in"
        return None
    for ancestor in path.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{path}: {ancestor} is a file, not a directory; choose another output path"
            if not os.access(ancestor, os.W_OK | os.X_OK):
                return f"{path}: cannot create it in {ancestor} (not writable); choose another output path"
            return _name_length_problem(path, ancestor)
        if ancestor.is_symlink():  # a dangling link: mkdir would fail on it
            return f"{path}: {ancestor} is a broken symbolic link; choose another output path"
    return None


def _name_length_problem(path: Path, existing: Path) -> str | None:
    """A component of `path` below its existing ancestor `existing` longer than that file system allows."""
    limit = os.pathconf(existing, "PC_NAME_MAX")
    for name in path.absolute().relative_to(existing).parts:
        if len(os.fsencode(name)) > limit:
            return (f"{path}: the name {name[:16]}... is longer than the file system allows ({limit} bytes); "
                    "choose a shorter one")
    return None
