"""Argument checks shared by the subcommands: argparse `type=` converters that refuse a bad value
at parsing (one line, exit 2, as argparse reports any usage error), checks across a subcommand's
arguments run right after parsing (`usage_check`), and the check of an output directory before the
work that fills it. Not a subcommand itself."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sora_ros.core.parameters import ParameterSpec


def positive_int(text: str) -> int:
    """An integer >= 1 (a count, a stride).

    Raises:
        argparse.ArgumentTypeError: not an integer, or below 1.
    """
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_int_up_to(high: int) -> Callable[[str], int]:
    """A converter for an integer from 1 to `high`, e.g. a batch size capped so that a typo cannot
    grow the process until the kernel kills it; below 1 it says what `positive_int` says."""

    def convert(text: str) -> int:
        value = positive_int(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be from 1 to {high}, got {value}")
        return value

    return convert


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a count where 0 means none, e.g. train --dit-steps 0).

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.
    """
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# Seeds above 32 bits are refused: numpy's legacy seeding takes 32 bits, and torch's generators
# overflow on seeds derived from a larger one (the trainer seeds with seed * 1000 + rank).
MAX_SEED = 2**32 - 1


def random_seed(text: str) -> int:
    """A seed: an integer from 0 to MAX_SEED.

    Raises:
        argparse.ArgumentTypeError: not an integer, negative, or above MAX_SEED.
    """
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEED} (32 bits), got {value}")
    return value


def seed_span_problem(first: int, count: int, high: int, first_option: str, count_option: str) -> str | None:
    """Why the seeds `first` .. `first + count - 1` (one per episode) do not all lie at or below `high`,
    the largest seed, as a usage error naming both options; or None. The first seed alone is checked at
    parsing, the last needs both options."""
    last = first + count - 1
    if last <= high:
        return None
    return (f"{first_option} {first} with {count_option} {count} runs seeds up to {last}; {first_option} + "
            f"{count_option} - 1 must be at most {high}, the largest seed")


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A converter for an integer in [low, high], both included (e.g. a ROS parameter's range)."""

    def convert(text: str) -> int:
        value = _number(text, int, "an integer")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return convert


def parameter_value(spec: ParameterSpec) -> Callable[[str], int | float]:
    """A converter for a value of the ROS parameter `spec` (an int or float with a range), so that an
    option taking it refuses what the node would refuse (e.g. sim record --rate, the sim's `rate`)."""
    if isinstance(spec.default, int):
        return int_between(int(spec.low), int(spec.high))
    return float_between(spec.low, spec.high)


def float_between(low: float = -math.inf, high: float = math.inf, *, above: bool = False,
                  below: bool = False) -> Callable[[str], float]:
    """A converter for a finite number from `low` to `high`, both included unless `above` (`low`
    excluded) or `below` (`high` excluded); NaN and infinity are refused with the range named.

    Example: `type=float_between(MIN_FPS, MAX_FPS)` for a frame rate; `positive_float` below.
    """
    wanted = _range_words(low, high, above, below)

    def convert(text: str) -> float:
        value = _number(text, float, "a number")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number{wanted and ' '}{wanted}, got {text!r}")
        if not low <= value <= high or (above and value == low) or (below and value == high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value:g}")
        return value

    return convert


def _range_words(low: float, high: float, above: bool, below: bool) -> str:
    """[low, high] in words: "from 0 to 1", "above 0", "0 or more", "above 0 and below 1"; "" for any."""
    if not (above or below or math.isinf(low) or math.isinf(high)):
        return f"from {low:g} to {high:g}"
    words = []
    if not math.isinf(low):
        words.append(f"above {low:g}" if above else f"{low:g} or more")
    if not math.isinf(high):
        words.append(f"below {high:g}" if below else f"{high:g} or less")
    return " and ".join(words)


# Any finite number (an offset, a time that may be negative).
finite_float = float_between()
# A finite number > 0: a duration, a rate, a learning rate, a scale.
positive_float = float_between(0.0, above=True)
# A finite number >= 0: a start time, a weight decay, a threshold.
non_negative_float = float_between(0.0)
# A share, from 0 to 1.
fraction = float_between(0.0, 1.0)
# Longest simulated episode a command runs (sim record, bench closed-loop): a day. Without a bound a
# typo such as 1e308 seconds overflows the frame count once the work has begun.
MAX_EPISODE_S = 86_400.0
episode_seconds = float_between(0.0, MAX_EPISODE_S, above=True)


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


# Name prefix of the folder and file `_write_problem` writes and removes.
WRITE_PROBE = ".sora_ros_write_check_"


def out_dir_problem(path: Path | str) -> str | None:
    """Why `path` cannot become an output directory, or None when it can; leaves nothing behind.

    Checked before a command's work, so that a long run does not fail at its last step: `path`
    must be a directory or not exist, and a file must be creatable in it (`_write_problem`). An
    empty string, a dangling symbolic link, a name longer than the file system allows and any other
    OSError met while looking are reasons too, never raised.
    """
    if not str(path):
        return "an empty path; name a directory"
    path = Path(path)
    try:
        return _out_dir_problem(path) or _write_problem(path)
    except OSError as error:  # e.g. ENAMETOOLONG, EACCES on a parent: stat() raises what exists() cannot hide
        return f"{path}: {error.strerror or error}; choose another output path"


def new_dir_problem(path: Path | str) -> str | None:
    """Why `path` cannot become a new directory (a bag: rosbag2 writes one that does not exist yet),
    or None; `out_dir_problem`'s checks, and `path` must not exist. Creates nothing."""
    problem = out_dir_problem(path)
    if problem is None and Path(path).exists():  # a writable directory, out_dir_problem found
        problem = f"{path} exists; a bag is written into a new directory: remove it or choose another path"
    return problem


def occupied_dir_problem(path: Path | str, force: bool, replaces: str) -> str | None:
    """Why writing into the output directory `path` needs --force (it has files in it), or None: it
    is new or empty, or `force` is given. `replaces` says what --force does there, e.g. "replace it
    with the new model"; a path `out_dir_problem` refuses is that function's to report."""
    path = Path(path)
    if force or not path.is_dir():
        return None
    try:
        entries = sorted(entry.name for entry in path.iterdir())
    except OSError as error:
        return f"{path}: cannot list it: {error.strerror or error}"
    if not entries:
        return None
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    return f"{path} is not empty ({shown}); add --force to {replaces}, or choose another --out"


def refused(command: str, option: str, problem: str | None) -> bool:
    """Whether `problem` (an output path's, from `out_dir_problem` or `new_dir_problem`, checked
    before the command's work) refuses the run; if so, it is printed as one line,
    `sora-ros COMMAND: OPTION PROBLEM`, and the command returns 2 (a usage error):

        if refused("train", "--out", out_dir_problem(args.out)):
            return 2
    """
    if problem:
        print(f"sora-ros {command}: {option} {problem}", file=sys.stderr)
    return bool(problem)


def action_topic_status(command: str, paths: list[str], action_topic: str | None, advice: str = "") -> int | None:
    """The exit status to stop with when `action_topic` is in none of the bags of `paths` (2, a typo
    or video files only: sora_ros.bag.clip_sources.action_topic_problem, then `advice`) or they
    cannot be read (1), said on stderr; None when some bag has it or no topic is given."""
    from sora_ros.bag.clip_sources import action_topic_problem
    from sora_ros.bag.reading import BagError

    try:
        problem = action_topic_problem(paths, action_topic) if action_topic else None
    except (FileNotFoundError, BagError) as error:
        print(f"sora-ros {command}: {error}", file=sys.stderr)
        return 1
    if problem:
        print(f"sora-ros {command}: {problem}{advice}", file=sys.stderr)
        return 2
    return None


def _out_dir_problem(path: Path) -> str | None:
    if path.is_symlink() and not path.exists():  # mkdir would fail on it; writing would follow it
        return f"{path} is a broken symbolic link; remove it or choose another output path"
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a directory; name a directory, or a path that does not exist yet"
        return None
    for ancestor in path.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{path}: {ancestor} is a file, not a directory; choose another output path"
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


def _write_problem(out: Path) -> str | None:
    """Why no file can be written into the output folder `out`, or None: proved, not guessed, by
    writing a file of a unique name where the command will write (in `out`, or, while `out` does not
    exist, in a new folder of a unique name beside its outermost missing part), then removing what
    this made. Not judged by os.access, which answers yes for root and on file systems that refuse
    writes anyway (/proc, a read-only mount). Unique names: ranks of one torchrun job probe at once."""
    missing, folder = first_missing(out), None
    try:
        if missing is not None:
            folder = Path(tempfile.mkdtemp(prefix=WRITE_PROBE, dir=missing.parent))
        handle, probe = tempfile.mkstemp(prefix=WRITE_PROBE, dir=folder or out)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        return f"{out}: cannot write files there: {error.strerror or error}; choose another output path"
    finally:
        if folder is not None:
            with contextlib.suppress(OSError):
                folder.rmdir()
    return None


def first_missing(path: Path | str) -> Path | None:
    """The outermost of `path` and its parents that does not exist (what creating `path` creates), or None."""
    path = Path(path).absolute()
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            return missing
        missing = candidate
    return missing
