"""The shared argument checks of sora_ros/cli/arguments.py: an --out that cannot become a directory
is a one-line reason, never an exception."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest

from sora_ros.cli.arguments import out_dir, out_dir_problem, refused

TOO_LONG = "n" * 300  # NAME_MAX is 255 bytes on every Linux file system


def test_an_empty_out_is_refused_not_taken_as_the_current_directory() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="empty string"):
        out_dir("")
    assert out_dir("out/eval") == Path("out/eval")
    assert out_dir_problem("") == "an empty path; name a directory"


def test_a_dangling_symbolic_link_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert out_dir_problem(link) == f"{link} is a broken symbolic link; remove it or choose another output path"
    assert out_dir_problem(link / "sub") == f"{link / 'sub'}: {link} is a broken symbolic link; choose another output path"
    link.unlink()
    link.symlink_to(link)  # a loop is no directory either
    assert "broken symbolic link" in out_dir_problem(link)
    (tmp_path / "real").mkdir()
    (tmp_path / "good").symlink_to(tmp_path / "real")
    assert out_dir_problem(tmp_path / "good") is None


@pytest.mark.parametrize("depth", ["beside", "below a folder to create"])
def test_a_name_too_long_for_the_file_system_is_refused(tmp_path: Path, depth: str) -> None:
    path = tmp_path / TOO_LONG if depth == "beside" else tmp_path / "new" / TOO_LONG / "run"
    problem = out_dir_problem(path)
    assert problem is not None and problem.startswith(f"{path}: ") and "\n" not in problem
    assert "too long" in problem.lower() or "longer than the file system allows" in problem
    assert list(tmp_path.iterdir()) == []


def test_any_other_os_error_is_a_reason_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    def failing(self):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Path, "is_symlink", failing)
    assert out_dir_problem(tmp_path / "out") == f"{tmp_path / 'out'}: Input/output error; choose another output path"


def test_refused_prints_one_line_naming_the_command_and_the_option(capsys) -> None:
    assert not refused("train", "--out", None) and capsys.readouterr().err == ""
    assert refused("bag record", "OUT", "runs/x exists; choose another path")
    assert capsys.readouterr().err == "sora-ros bag record: OUT runs/x exists; choose another path\n"


def test_a_folder_no_file_can_be_written_in_is_refused_and_nothing_is_left_behind(tmp_path, monkeypatch) -> None:
    """A read-only mount, simulated: creating any file in it fails, for root too, whatever os.access says."""
    import os
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    (tmp_path / "old").mkdir()
    assert out_dir_problem(tmp_path / "old") == (f"{tmp_path / 'old'}: cannot write files there: Read-only file "
                                                 "system; choose another output path")  # fmt: skip
    new = tmp_path / "new" / "run"
    assert out_dir_problem(new) == (f"{new}: cannot write files there: Read-only file system; choose another "
                                    "output path")  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and list((tmp_path / "old").iterdir()) == []
