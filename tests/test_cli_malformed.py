"""Every subcommand on malformed input: one line naming the file and the problem, exit 1 (failed
work) or 2 (usage), never a traceback. The inputs are those of the issue-16 barrage, kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """Malformed files, by kind."""
    root = tmp_path_factory.mktemp("malformed")
    files = {
        "mcap_header_only": (root / "header_only.mcap", b"\x89MCAP0\r\n"),
        "not_sqlite": (root / "junk.db3", b"SQLite format 3\x00" + bytes(50)),
        "not_video": (root / "junk.mp4", b"\x00\x00\x00\x18ftypmp42 not really"),
        "not_utf8_launch": (root / "latin1.launch.yaml", "launch:\n- arg: {name: caf\xe9}\n".encode("latin-1")),
        "not_checkpoint": (root / "junk.pt", b"PK\x03\x04 not a zip"),
        "existing_file": (root / "metrics.json", b"{}"),
    }
    paths = {}
    for kind, (path, data) in files.items():
        path.write_bytes(data)
        paths[kind] = path
    for kind, entity in {"pkg_path": {"include": {"file": "$(find-pkg-share ../../etc)/x.launch.yaml"}},
                         "prefix_path": {"include": {"file": "$(find-pkg-prefix ../x)/x.launch.yaml"}},
                         "exec_path": {"node": {"pkg": "sora_ros", "exec": "../../bin/sh"}},
                         "exec_dot": {"node": {"pkg": "sora_ros", "exec": ".hidden"}},
                         "not_installed": {"node": {"pkg": "sora_ros", "exec": "messages"}}}.items():
        paths[kind] = root / f"{kind}.launch.yaml"
        paths[kind].write_text(json.dumps({"launch": [entity]}))
    model = root / "model"
    shutil.copytree(ROOT / "models" / "default", model)
    meta = json.loads((model / "model.json").read_text())
    meta["dt"] = float("inf")
    (model / "model.json").write_text(json.dumps(meta))
    paths["model_dt_infinity"] = model
    return paths


CASES = {
    "bag info, MCAP header only": ["bag", "info", "{mcap_header_only}"],
    "bag info, not sqlite": ["bag", "info", "{not_sqlite}"],
    "bag from-video, not a video": ["bag", "from-video", "{not_video}", "{tmp}/out_bag"],
    "eval, MCAP header only": ["eval", "{mcap_header_only}"],
    "eval, --out an existing file": ["eval", "{mcap_header_only}", "--out", "{existing_file}"],
    "eval, dt Infinity": ["eval", "{mcap_header_only}", "--model", "{model_dt_infinity}"],
    "launch, not UTF-8": ["launch", "{not_utf8_launch}", "--print"],
    "launch, find-pkg-share path": ["launch", "{pkg_path}", "--print"],
    "launch, find-pkg-prefix path": ["launch", "{prefix_path}", "--print"],
    "launch, exec a path": ["launch", "{exec_path}", "--print"],
    "launch, exec a dot name": ["launch", "{exec_dot}", "--print"],
    "launch, a module that is no executable": ["launch", "{not_installed}", "--print"],
    "export, not a checkpoint": ["export", "--checkpoint", "{not_checkpoint}", "--out", "{tmp}/out_model"],
    "train, MCAP header only": ["train", "--data", "{mcap_header_only}", "--out", "{tmp}/out_train"],
    "video-camera, not a video": ["video-camera", "{not_video}"],
    "demo, dt Infinity": ["demo", "--model", "{model_dt_infinity}", "--duration", "1"],
    "bench model, dt Infinity": ["bench", "model", "--model", "{model_dt_infinity}"],
}


@pytest.mark.parametrize("words", CASES.values(), ids=CASES.keys())
def test_malformed_input_gets_one_line_not_a_traceback(bad, words, tmp_path):
    argv = [word.format(tmp=tmp_path, **bad) for word in words]
    run = subprocess.run([sys.executable, "-m", "sora_ros.cli", *argv], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    assert run.returncode in (1, 2), (run.returncode, run.stdout, run.stderr)
    assert (run.stderr + run.stdout).strip(), "says what is wrong"


# Commands that fill an --out folder after long work: an --out that cannot become a folder is
# refused before the work (exit 2, one line), not found out at its end.
OUT_COMMANDS = {
    "eval": ["eval", "{tmp}/no_such_bag", "--out", "{out}"],
    "train": ["train", "--data", "{tmp}/no_such_bag", "--out", "{out}"],
    "train-anchor": ["train-anchor", "--data", "{tmp}/no_such_bag", "--out", "{out}"],
    "train-risk": ["train-risk", "--data", "{tmp}/no_such_bag", "--out", "{out}"],
    "export": ["export", "--preset", "cpu64", "--out", "{out}"],
    "bench fine-tune": ["bench", "fine-tune", "--out", "{out}"],
    "bench closed-loop": ["bench", "closed-loop", "--out", "{out}"],
    "sim record": ["sim", "record", "--episodes", "1", "--seconds", "1", "--out", "{out}"],
    "demo": ["demo", "--duration", "1", "--out", "{out}"],
}


@pytest.mark.parametrize("under", ["a file", "a file, two levels", "an existing file"])
@pytest.mark.parametrize("words", OUT_COMMANDS.values(), ids=OUT_COMMANDS.keys())
def test_out_that_cannot_be_a_folder_is_refused_before_the_work(words, under, tmp_path, capsys):
    from sora_ros import cli

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    out = {"a file": afile / "sub", "a file, two levels": afile / "sub" / "deeper", "an existing file": afile}[under]
    argv = [word.format(tmp=tmp_path, out=out) for word in words]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sora-ros {' '.join(words[:2]) if words[0] in ('bench', 'sim') else words[0]}: --out {out}")
    expected = "exists and is not a directory" if out == afile else f"{afile} is a file, not a directory"
    assert expected in err and "\n" not in err, err
    assert afile.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _prefix(words: list[str]) -> str:
    return f"sora-ros {' '.join(words[:2]) if words[0] in ('bench', 'sim') else words[0]}"


@pytest.mark.parametrize("words", OUT_COMMANDS.values(), ids=OUT_COMMANDS.keys())
def test_an_empty_out_is_refused_at_parsing(words, tmp_path, capsys):
    from sora_ros import cli

    with pytest.raises(SystemExit) as stop:
        cli.main([word.format(tmp=tmp_path, out="") for word in words])
    assert stop.value.code == 2
    assert "argument --out: must name a directory, got an empty string" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("under", ["a dangling link", "a name too long"])
@pytest.mark.parametrize("words", OUT_COMMANDS.values(), ids=OUT_COMMANDS.keys())
def test_out_that_the_file_system_refuses_is_one_line_before_the_work(words, under, tmp_path, capsys):
    from sora_ros import cli

    out = tmp_path / ("link" if under == "a dangling link" else "n" * 300)
    if under == "a dangling link":
        out.symlink_to(tmp_path / "gone")
    assert cli.main([word.format(tmp=tmp_path, out=out) for word in words]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{_prefix(words)}: --out {out}") and "\n" not in err, err
    assert ("broken symbolic link" if under == "a dangling link" else "too long") in err
    assert [p.name for p in tmp_path.iterdir()] == (["link"] if under == "a dangling link" else [])


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which refuses new entries")
@pytest.mark.parametrize("out", ["/proc/sora_ros_out", "/proc/self/sora_ros_out/run"])
@pytest.mark.parametrize("words", OUT_COMMANDS.values(), ids=OUT_COMMANDS.keys())
def test_out_the_file_system_will_not_write_is_refused_before_the_work(words, out, tmp_path, capsys):
    """os.access says yes to root for /proc; only making the folder and a file in it shows it cannot be."""
    from sora_ros import cli

    assert cli.main([word.format(tmp=tmp_path, out=out) for word in words]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{_prefix(words)}: --out {out}: cannot write files there: ") and "\n" not in err, err
