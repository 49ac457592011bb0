"""`sora-ros eval`: what --max-clips scores (clips in turn from every bag, the cap said), and an --out that
cannot be written found before the scoring."""

import errno
import json
import os
from pathlib import Path

import pytest

from sora_ros.evaluation.spread import SpreadClips, cap_note

torch = pytest.importorskip("torch")
from model_helpers import export_tiny, export_tiny_with_risk  # noqa: E402

from sora_ros.bag.reading import find_bags  # noqa: E402
from sora_ros.cli import main as cli  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def three_bags(tmp_path_factory) -> Path:
    """Three sim runs of 2 s at 10 Hz, each long enough for several clips: a cap of 2 reads only some."""
    out = tmp_path_factory.mktemp("sim") / "runs"
    assert cli(["sim", "record", "--episodes", "3", "--seconds", "2", "--out", str(out),
                "--width", "32", "--height", "32", "--objects", "8", "--quiet"]) == 0  # fmt: skip
    return out


# --- SpreadClips on plain data -------------------------------------------------------------------


def test_spread_takes_clips_in_turn_and_opens_a_source_only_when_its_turn_comes():
    opened, closed = [], []

    def clips_of(source: str):
        opened.append(source)
        try:
            yield from (f"{source}{k}" for k in range({"a": 3, "b": 1, "c": 2}[source]))
        finally:
            closed.append(source)

    spread = SpreadClips(["a", "b", "c"], clips_of)
    assert list(spread) == ["a0", "b0", "c0", "a1", "c1", "a2"]
    assert spread.taken == {"a": 3, "b": 1, "c": 2} and sorted(spread.finished) == ["a", "b", "c"]
    assert spread.coverage(6) is None, "every source read to its end: nothing left out"

    opened.clear()
    spread = SpreadClips(["a", "b", "c"], clips_of)
    taken = []
    for clip in spread:
        taken.append(clip)
        if len(taken) == 2:
            break
    spread.close()
    assert taken == ["a0", "b0"] and opened == ["a", "b"], "c never opened"
    assert "a" in closed[-2:] and "b" in closed[-2:], "the open sources are closed (their clean-up ran)"
    coverage = spread.coverage(2)
    assert coverage == {"max_clips": 2, "clips_per_source": {"a": 1, "b": 1}, "sources": 3, "not_read": ["c"],
                        "read_in_part": ["a", "b"]}  # fmt: skip
    assert cap_note(coverage) == ("--max-clips 2 reached: 1 clip from a, 1 from b (taken in turn from each source, "
                                  "each from its start, one every --stride frames); 1 of 3 sources not read: c. "
                                  "Raise --max-clips, or leave it out, to score more.")  # fmt: skip
    assert SpreadClips(["a"], clips_of).coverage(None) is None


# --- the command ---------------------------------------------------------------------------------


def test_max_clips_takes_clips_from_every_bag_and_says_which_were_not_read(model, three_bags, tmp_path, capsys):
    bags = [str(bag) for bag in find_bags([three_bags])]
    out = tmp_path / "eval"
    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--max-clips", "2",
                "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 2 and metrics["bags"] == bags[:2], "one clip from each of the first two bags"
    cap = metrics["clip_cap"]
    assert cap["clips_per_source"] == {bags[0]: 1, bags[1]: 1} and cap["not_read"] == [bags[2]]
    note = f"--max-clips 2 reached: 1 clip from {bags[0]}, 1 from {bags[1]}"
    assert note in printed and f"1 of 3 sources not read: {bags[2]}" in printed
    report = (out / "report.md").read_text()
    assert note in report and f"1 of 3 sources not read: {bags[2]}" in report

    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--max-clips", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"--max-clips 4 reached: 2 clips from {bags[0]}, 1 from {bags[1]}, 1 from {bags[2]}" in printed
    assert "3 of 3 sources read only in part" in printed


def test_a_cap_above_every_clip_scores_them_all_and_says_nothing(model, three_bags, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--max-clips", "1000",
                "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clip_cap"] is None and len(metrics["bags"]) == 3
    assert "--max-clips" not in capsys.readouterr().out and "reached" not in (out / "report.md").read_text()


def test_the_risk_heads_clips_are_capped_across_the_bags_too(three_bags, tmp_path, capsys):
    model = export_tiny_with_risk(tmp_path / "risky")
    bags = [str(bag) for bag in find_bags([three_bags])]
    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--max-clips", "2",
                "--action-topic", "/cmd_vel"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    horizon = json.loads((model / "model.json").read_text())["default_horizon"]  # the risk clips' spacing
    assert (f"note: risk: --max-clips 2 reached: 1 labelled clip from {bags[0]}, 1 from {bags[1]} (taken in turn "
            f"from each source, each from its start, one every {horizon} frames); 1 of 3 sources not read: "
            f"{bags[2]}") in printed


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which refuses new entries")
def test_an_out_the_file_system_refuses_is_refused_before_any_scoring(model, three_bags, capsys):
    """/proc passes os.access as root; only making the folder shows it cannot be."""
    out = Path("/proc") / "sora_ros_eval_out"
    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"sora-ros eval: --out {out}: cannot write files there: ") and captured.err.count("\n") == 1
    assert "PSNR" not in captured.out, "no scoring before the refusal"


def test_a_folder_no_file_can_be_written_in_is_refused_and_nothing_is_left_behind(model, three_bags, tmp_path,
                                                                                 capsys, monkeypatch):
    """A read-only mount, simulated: creating any file in it fails, as for root too. The folders the
    check made to try are removed again."""
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    out = tmp_path / "new" / "eval"
    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"sora-ros eval: --out {out}: cannot write files there: Read-only file system; "
                            "choose another output path\n")
    assert "PSNR" not in captured.out and list(tmp_path.iterdir()) == []


def test_the_write_check_leaves_an_existing_out_as_it_was(model, three_bags, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    before = set(os.listdir(tmp_path))
    assert cli(["eval", str(three_bags), "--model", str(model), "--horizons", "1", "--max-clips", "1",
                "--out", str(out)]) == 0  # fmt: skip
    assert set(os.listdir(tmp_path)) == before
    assert not [name for name in os.listdir(out) if name.startswith(".sora_ros_write_check_")]
