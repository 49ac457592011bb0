"""`sora-ros bench model` on bad input: exit 2 (as `bench closed-loop`), one line on stderr; a --checkpoint
that is no checkpoint named with what it is and what was expected, never a pickle or zip traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from model_helpers import export_tiny, tiny_modules  # noqa: E402

from sora_ros.cli import main as cli  # noqa: E402
from sora_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402

EXPECTED = "expected a torch checkpoint written by `sora-ros train`"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Files given as --checkpoint by mistake, by kind, with what the message must say of each."""
    root = tmp_path_factory.mktemp("checkpoints")
    files = {"empty": root / "empty.pt", "text": root / "notes.pt", "truncated": root / "checkpoint.pt",
             "binary": root / "random.pt"}  # fmt: skip
    files["empty"].write_bytes(b"")
    files["text"].write_text("step 1200: loss 0.031\n")
    vae, dit = tiny_modules()
    save_checkpoint(files["truncated"], dit.config, vae, dit, step=1)
    whole = files["truncated"].read_bytes()
    files["truncated"].write_bytes(whole[: len(whole) // 3])
    files["binary"].write_bytes(bytes(range(256)) * 4)
    return files


SAYS = {"empty": ["an empty file (0 bytes)", EXPECTED],
        "text": ["a text file (starting 'step 1200: loss 0.031'), not a torch checkpoint", EXPECTED],
        "truncated": ["truncated or damaged", "use an earlier checkpoint"],
        "binary": ["not a torch checkpoint file (UnpicklingError", EXPECTED]}


@pytest.mark.parametrize("kind", SAYS)
def test_a_checkpoint_that_is_no_checkpoint_is_exit_2_and_one_line_naming_it(model, checkpoints, kind, capsys):
    path = checkpoints[kind]
    assert cli(["bench", "model", "--model", str(model), "--checkpoint", str(path), "--repeats", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"sora-ros bench model: {path}: ") and captured.err.count("\n") == 1, captured.err
    assert all(words in captured.err for words in SAYS[kind]), captured.err
    assert "weights_only" not in captured.err, "torch's advice to unpickle unsafely is not passed on"
    assert not captured.out, "nothing timed"


def test_the_loader_says_what_the_file_is_and_what_was_expected(checkpoints, tmp_path):
    for kind, path in {**checkpoints, "missing": tmp_path / "nowhere.pt", "folder": tmp_path}.items():
        with pytest.raises(CheckpointError) as raised:
            load_checkpoint(path)
        message = str(raised.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (kind, message)
        assert all(words in message for words in SAYS.get(kind, [EXPECTED])), (kind, message)


def test_a_model_directory_that_is_missing_is_exit_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert cli(["bench", "model", "--model", str(missing), "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sora-ros bench model: {missing}") and err.count("\n") == 1


def test_a_truncated_checkpoint_in_a_process_exits_2_without_a_traceback(model, checkpoints):
    run = subprocess.run([sys.executable, "-m", "sora_ros.cli", "bench", "model", "--model", str(model),
                          "--checkpoint", str(checkpoints["truncated"])], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().startswith(f"sora-ros bench model: {checkpoints['truncated']}: truncated or damaged")
