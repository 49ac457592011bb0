"""sora_ros.core.files: outputs appear whole, at their final name, or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sora_ros.core.files import staged_path, write_text_atomic


def test_a_staged_output_appears_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with staged_path(out) as staged:
        staged.mkdir()
        (staged / "a").write_text("a")
        assert not out.exists() and staged.name == "out"
    assert (out / "a").read_text() == "a"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["out"]
    with pytest.raises(FileExistsError, match="exists already"):
        with staged_path(out):
            pass


def test_a_failed_write_leaves_nothing_not_even_the_parents_it_made(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with staged_path(tmp_path / "new" / "deeper" / "out") as staged:
            staged.mkdir()
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_replace_swaps_the_old_out_only_when_the_new_one_is_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_path(out, replace=True) as staged:
            staged.mkdir()
            raise RuntimeError("export failed")
    assert [p.name for p in out.iterdir()] == ["old"]
    with staged_path(out, replace=True) as staged:
        staged.mkdir()
        (staged / "new").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_text_atomic_keeps_the_old_text_when_the_write_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.json"
    path.write_text("old")
    path.chmod(0o664)
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o664

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(path, "newer")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model.json"]
