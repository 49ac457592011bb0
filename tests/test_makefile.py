"""`make setup` ends by saying how to put `sora-ros` on PATH, so README's commands work as written."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_setup_says_how_to_activate_the_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    doctor = venv / "bin" / "sora-ros"  # stands in for the installed command: the set-up itself is not rerun
    doctor.write_text("#!/bin/sh\nexit 0\n")
    doctor.chmod(0o755)
    stamp = f"{venv}/.interfaces-built"
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "setup", f"VENV={venv}", "-o", stamp],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"source {venv}/bin/activate" in result.stdout and f"{venv}/bin/sora-ros" in result.stdout
