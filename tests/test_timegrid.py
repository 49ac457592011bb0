"""The time-grid rule (sora_ros/core/timegrid.py), with every expectation worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sora_ros.core.timegrid import NO_FRAME, Gap, GridResampler, max_offset_ns, pick, resample
from sora_ros.core.units import NS_PER_MS, NS_PER_S

MS = NS_PER_MS
DT = 100 * MS


def kept(stamps: list[int], dt_ns: int = DT) -> list[int | Gap]:
    """What the streaming form keeps of `stamps` (each frame's item is its index)."""
    return [event if isinstance(event, Gap) else event[1] for event in resample([(s, i) for i, s in enumerate(stamps)], dt_ns)]


def test_15hz_at_dt_100ms_takes_the_earlier_of_two_equally_near_frames():
    stamps = [round(k * NS_PER_S / 15) for k in range(7)]  # 0, 66.67, 133.33, 200, 266.67, 333.33, 400 ms
    # Grid 100 ms: 66666667 and 133333333 are both 33333333 ns away -> the earlier (1); likewise 300 ms -> 4.
    assert kept(stamps) == [0, 1, 3, 4, 6]
    np.testing.assert_array_equal(pick(np.array(stamps), np.arange(5) * DT, DT), [0, 1, 3, 4, 6])


def test_30hz_at_dt_100ms_keeps_every_third_frame():
    stamps = [round(k * NS_PER_S / 30) for k in range(10)]  # 0, 33.33, 66.67, 100, ... 300 ms
    assert kept(stamps) == [0, 3, 6, 9]
    np.testing.assert_array_equal(pick(np.array(stamps), np.arange(4) * DT, DT), [0, 3, 6, 9])


def test_a_grid_time_without_a_frame_is_a_gap_and_the_next_frame_anchors_a_new_grid():
    stamps = [0, 100 * MS, 200 * MS, 500 * MS, 590 * MS, 720 * MS]
    # 300 ms owns no frame; the new grid is 500, 600, 700 ms: 590 is 10 ms off, 720 20 ms off.
    assert kept(stamps) == [0, 1, 2, Gap(300 * MS, 500 * MS), 3, 4, 5]
    # On the grid anchored at 0: 300 and 400 ms own nothing, 600 ms takes 590, 700 ms takes 720.
    np.testing.assert_array_equal(pick(np.array(stamps), np.arange(8) * DT, DT), [0, 1, 2, NO_FRAME, NO_FRAME, 3, 4, 5])


def test_jitter_within_half_a_step_is_kept_and_does_not_accumulate():
    jittered = [0, 118 * MS, 183 * MS, 305 * MS, 390 * MS]  # up to 18 ms off the 10 Hz grid
    assert kept(jittered) == [0, 1, 2, 3, 4]
    # A camera at ~8 Hz: 140 ms is 40 ms off 100 ms; 260 ms is 40 ms off 300 ms, so 200 ms owns nothing.
    # The grid stays on 0 + k dt; it does not follow the frames.
    assert kept([0, 140 * MS, 260 * MS]) == [0, 1, Gap(200 * MS, 260 * MS), 2]


def test_ties_go_to_the_earlier_frame_and_a_halfway_frame_to_the_earlier_grid_time():
    # 60 and 140 ms are both 40 ms from 100 ms: the earlier one represents it.
    assert kept([0, 60 * MS, 140 * MS, 200 * MS]) == [0, 1, 3]
    # 50 ms is halfway between 0 and 100 ms: it belongs to 0 (which has a nearer frame); 150 ms belongs to 100.
    assert kept([0, 50 * MS, 150 * MS]) == [0, 2]
    np.testing.assert_array_equal(pick(np.array([50 * MS, 150 * MS]), np.array([0, DT]), DT), [0, 1])
    # Alone, a frame exactly halfway after a grid time still represents it; 1 ns further does not.
    np.testing.assert_array_equal(pick(np.array([50 * MS]), np.array([0, DT]), DT), [0, NO_FRAME])
    np.testing.assert_array_equal(pick(np.array([50 * MS + 1]), np.array([0, DT]), DT), [NO_FRAME, 0])
    assert max_offset_ns(DT) == 50 * MS


def test_live_grid_ends_at_the_newest_frame():
    stamps = np.array([0, 67, 133, 200, 267, 333, 400]) * MS  # a 15 Hz camera, in whole ms
    grid = 400 * MS - np.array([2, 1, 0]) * DT  # K = 3: 200, 300, 400 ms
    np.testing.assert_array_equal(pick(stamps, grid, DT), [3, 4, 6])  # 267 and 333 tie at 300: 267
    assert np.all(pick(np.array([], np.int64), grid, DT) == NO_FRAME)


def test_the_streaming_form_refuses_stamps_that_do_not_increase_and_restarts_after_finish():
    grid: GridResampler[str] = GridResampler(DT)
    assert grid.push(0, "a") == [] and grid.push(DT, "b") == [(0, "a")]
    with pytest.raises(ValueError, match="stamps must increase"):
        grid.push(DT, "c")
    assert grid.finish() == [(DT, "b")] and grid.finish() == []
    assert grid.push(0, "d") == [], "after finish the next frame anchors a new run"
    with pytest.raises(ValueError, match="positive"):
        GridResampler(0)
