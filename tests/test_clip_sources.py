"""Clips for the model: bags without commands and videos get unknown (NaN) actions, and say so."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from sora_ros.bag import messages as m
from sora_ros.bag.writing import BagWriter
from sora_ros.bag.clips import ClipReader
from sora_ros.bag.clip_sources import load_sequences, model_clips
from sora_ros.core.twist import CMD_VEL_ACTIONS


def camera_bag(path: Path, frames: int, with_commands: bool) -> Path:
    with BagWriter(path) as bag:
        for k in range(frames):
            stamp = k * 100_000_000
            bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(np.full((16, 16, 3), k, np.uint8), stamp, "cam"))
            if with_commands:
                bag.write("/cmd_vel", m.TWIST, stamp, m.twist(0.5, -0.25))
    return path


def test_bag_without_the_action_topic_gives_unknown_actions_and_a_note(tmp_path):
    notes: list[str] = []
    bags = [camera_bag(tmp_path / "driven", 8, True), camera_bag(tmp_path / "footage", 8, False)]
    clips = list(model_clips(bags, "/camera/image_raw", "/cmd_vel", dt=0.1, length=4, size=(8, 8),
                             action_names=CMD_VEL_ACTIONS, notes=notes))  # fmt: skip
    assert [Path(c.source).name for c in clips] == ["driven", "driven", "footage", "footage"]
    np.testing.assert_array_equal(clips[0].actions, [[0.5, -0.25]] * 4)
    assert np.isnan(clips[2].actions).all() and clips[2].actions.shape == (4, 2)
    assert any("footage: no /cmd_vel: actions unknown" in note for note in notes)


def test_a_caller_that_stops_early_still_gets_the_notes_of_what_was_read(tmp_path):
    """`eval --max-clips` stops reading mid-bag (scoring closes the generator): the drops read so far are noted."""
    with BagWriter(tmp_path / "bag") as bag:
        for k in range(16):
            stamp = k * 100_000_000
            bag.write("/camera/image_raw", m.IMAGE, stamp, m.image(np.full((16, 16, 3), k, np.uint8), stamp, "cam"))
            bag.write("/cmd_vel", m.TWIST, stamp, m.twist(float("nan") if k == 1 else 0.5, 0.0))
    notes: list[str] = []
    clips = model_clips([tmp_path / "bag"], "/camera/image_raw", "/cmd_vel", dt=0.1, length=4, size=(8, 8),
                        action_names=CMD_VEL_ACTIONS, notes=notes)
    next(clips)
    assert notes == []
    clips.close()
    assert any("action with NaN or Inf" in note for note in notes), notes


def test_video_clips_with_stride_and_video_time_stamps(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (16, 16))
    for k in range(20):  # 1 s at 20 fps -> 10 frames at dt 0.1
        writer.write(np.full((16, 16, 3), 10 * k, np.uint8))
    writer.release()
    clips = list(model_clips([path], None, None, dt=0.1, length=4, size=(8, 8), action_names=CMD_VEL_ACTIONS, stride=2))
    assert len(clips) == 4  # starts at frames 0, 2, 4, 6 of the 10
    np.testing.assert_array_equal(clips[1].stamps_ns, np.arange(2, 6) * 100_000_000)
    assert clips[0].frames.shape == (4, 8, 8, 3) and np.isnan(clips[0].actions).all()


def test_no_sequence_at_all_names_the_sources(tmp_path):
    bag = camera_bag(tmp_path / "tiny", 3, True)
    with pytest.raises(ValueError, match="no sequence of 10 frames at dt 0.1 s in .*tiny"):
        load_sequences([bag], "/camera/image_raw", "/cmd_vel", dt=0.1, length=10, size_for=lambda h, w: (8, 8),
                       action_names=CMD_VEL_ACTIONS)


def test_actions_are_read_by_the_model_s_twist_field_names(tmp_path):
    bag = camera_bag(tmp_path / "run", frames=6, with_commands=True)  # linear.x 0.5, angular.z -0.25
    read = dict(dt_ns=100_000_000, clip_length=4, size=(8, 8))
    swapped = next(iter(ClipReader(bag, "/camera/image_raw", "/cmd_vel", action_names=("angular_z", "linear_x"), **read)))
    np.testing.assert_array_equal(swapped.actions, np.tile([-0.25, 0.5], (4, 1)))
    sideways = next(iter(ClipReader(bag, "/camera/image_raw", "/cmd_vel", action_names=("linear_y",), **read)))
    np.testing.assert_array_equal(sideways.actions, np.zeros((4, 1)))
    with pytest.raises(ValueError, match="throttle"):
        ClipReader(bag, "/camera/image_raw", "/cmd_vel", action_names=("throttle",), **read)
