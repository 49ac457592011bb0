"""Writing outputs whole or not at all: a file or directory is written under a temporary name
beside its destination and renamed into place once complete, so that a failure or Ctrl-C leaves
neither half an output nor a stale one that blocks a rerun."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_path(path: Path | str, replace: bool = False) -> Iterator[Path]:
    """A path (not yet existing) to write a whole file or directory at, in a hidden temporary
    directory beside `path`: when the block ends without an exception, it is renamed to `path`;
    otherwise it is removed, so a failed or interrupted write leaves nothing behind.

        with staged_path(out) as staged:
            write_everything(staged)

    Parent directories of `path` that did not exist are created, and removed again on failure.
    With `replace`, what is at `path` is swapped out for the new output only when that is complete,
    then deleted.

    Raises:
        FileExistsError: `path` exists and `replace` is false (before the block runs, or by the
            time it ends).
        OSError: the staging directory cannot be made beside `path`, or the rename fails.
    """
    path = Path(path)
    if not replace and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{path} exists already, not overwriting.")
    created = [parent for parent in path.absolute().parents if not parent.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield staging / path.name  # keeps its final name inside (a bag's .mcap file is named after it)
        _move_into_place(staging / path.name, path, replace, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in created:
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging)  # empty, or what `replace` swapped out


def _move_into_place(staged: Path, path: Path, replace: bool, staging: Path) -> None:
    """Rename `staged` to `path`; with `replace`, what is at `path` goes into `staging` first
    (os.rename replaces only an empty directory) and comes back if the second rename fails."""
    if not (path.exists() or path.is_symlink()):
        os.rename(staged, path)
        return
    if not replace:  # made meanwhile
        raise FileExistsError(f"{path} exists already, not overwriting.")
    old = staging / ".replaced"
    os.rename(path, old)
    try:
        os.rename(staged, path)
    except BaseException:
        os.rename(old, path)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it and a rename: a reader sees the
    old content or the new, never a truncated file (a crash or a full disk midway changes nothing).

    Raises:
        OSError: the temporary file cannot be written or renamed.
    """
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)  # mkstemp makes it owner-only
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
