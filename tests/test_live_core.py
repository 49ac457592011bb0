"""The live pipeline's rclpy-free core, with values worked out by hand."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from sora_ros.core.actions import assumed_actions
from sora_ros.core.twist import twist_indices
from sora_ros.core.comparison import ERROR_GAIN, FutureMemory, Prediction, comparison_image
from sora_ros.core.context import ContextBuffer, Verdict
from sora_ros.core.deadline import CostModel, plan_rollout
from sora_ros.core.planner import obstacle_fraction
from sora_ros.core.requests import MAX_BATCH, MAX_CANDIDATES, MAX_IMAGE_CANDIDATES, MAX_SAMPLER_STEPS, RequestError, \
    check_request
from sora_ros.core.scheduling import LatestSlot, RolloutGate, Turns
from sora_ros.core.stats import ERROR, OK, STALE, WARN, CounterWindow, InputBounds, RateMeter, Throttle, \
    watchdog_entry
from sora_ros.core.units import NS_PER_MS

MS = NS_PER_MS


def latent(value: float) -> np.ndarray:
    return np.full((1, 2, 2), value, np.float32)


def test_context_picks_the_frame_nearest_each_grid_time():
    buffer = ContextBuffer(context_frames=3, dt_s=0.1, jump_back_s=1.0)
    for i in range(7):  # a 15 Hz camera: 0, 67, 133, 200, 267, 333, 400 ms
        buffer.add(round(i * 200 / 3) * MS, latent(i))
    context = buffer.latest()
    # grid 200, 300, 400 ms -> frames 200 (i=3), 267 or 333 (333 is 33 ms away, 267 is 33 too: first wins), 400
    assert context.stamps_ns[0] == 200 * MS and context.stamps_ns[2] == 400 * MS
    assert context.stamps_ns[1] in (267 * MS, 333 * MS)
    assert context.latents.shape == (3, 1, 2, 2) and context.newest_stamp_ns == 400 * MS


def test_context_waits_for_k_frames_and_refuses_gaps():
    buffer = ContextBuffer(context_frames=2, dt_s=0.1, jump_back_s=1.0)
    assert buffer.add(0, latent(0)) is Verdict.ACCEPTED
    assert buffer.latest() is None  # one frame, K = 2
    buffer.add(100 * MS, latent(1))
    assert buffer.latest().stamps_ns == (0, 100 * MS)
    buffer.add(700 * MS, latent(2))  # the camera paused for 600 ms
    assert buffer.latest() is None, "a context must not bridge a gap in the stream"
    buffer.add(800 * MS, latent(3))
    assert buffer.latest().stamps_ns == (700 * MS, 800 * MS)


def test_after_a_lost_frame_the_last_complete_context_is_still_offered():
    buffer = ContextBuffer(context_frames=3, dt_s=0.1, jump_back_s=0.5)
    stamps = [round(i * 200 / 3) for i in range(12)]  # a 15 Hz camera, ms
    lost = stamps.pop(7)  # 467 ms
    for stamp in stamps[:9]:  # ... 400, 533, 600
        buffer.add(stamp * MS, latent(stamp))
    complete = buffer.latest()
    assert complete.stamps_ns == (400 * MS, 533 * MS, 600 * MS)
    buffer.add(stamps[9] * MS, latent(stamps[9]))  # 667 ms: grid 467 owns (417, 517] ms, only the lost frame
    assert buffer.latest() is None and lost == 467
    assert buffer.newest_complete() is complete, "the earlier context stays offered, with its own stamps"
    assert buffer.newest_stamp_ns() == 667 * MS
    buffer.add(stamps[10] * MS, latent(stamps[10]))  # 733 ms: grid 533, 633, 733, past the lost frame
    assert buffer.latest() is not None and buffer.newest_complete() is buffer.latest()
    assert buffer.latest().newest_stamp_ns == 733 * MS
    buffer.add(1033 * MS, latent(1033))  # a stall, not a lost frame: 300 ms, within K dt + dt/2 = 350 ms
    assert buffer.latest() is None and buffer.newest_complete().newest_stamp_ns == 733 * MS
    buffer.add(1100 * MS, latent(1100))  # 367 ms after the last complete context: too old to stand in
    assert buffer.latest() is None and buffer.newest_complete() is None
    assert buffer.add(0, latent(0)) is Verdict.RESET  # 733 ms back: nothing older survives a reset
    assert buffer.newest_complete() is None


@pytest.mark.parametrize("rate_hz, off_grid", [(7.0, True), (10.0, False), (15.0, False)])
def test_a_camera_slower_than_the_grid_is_told_apart_from_one_that_has_not_run_long(rate_hz, off_grid):
    buffer = ContextBuffer(context_frames=4, dt_s=0.1, jump_back_s=1.0)
    buffer.add(0, latent(0))
    assert not buffer.off_grid(), "one frame: the stream has not run long enough"
    for i in range(1, 20):
        buffer.add(round(i * 1000 / rate_hz) * MS, latent(i))
    assert buffer.off_grid() is off_grid
    assert (buffer.latest() is None) is off_grid


@pytest.mark.parametrize("rate_hz", [10.0, 15.0, 30.0])
def test_a_camera_that_pauses_is_not_off_the_grid_while_it_starts_again(rate_hz):
    """After a 2 s pause the first frames make no context yet, as at start: not counted as off the grid
    (before, every pause warned "a camera slower than 1/dt, or irregular stamps")."""
    buffer = ContextBuffer(context_frames=4, dt_s=0.1, jump_back_s=5.0)
    stamps_ms = [round(i * 1000 / rate_hz) for i in range(round(2 * rate_hz))]
    stamps_ms += [4000 + stamp for stamp in stamps_ms]  # the same again after a 2 s pause
    for stamp in stamps_ms:
        buffer.add(stamp * MS, latent(stamp))
        assert not buffer.off_grid(), f"{stamp} ms"
    assert buffer.latest() is not None


@pytest.mark.parametrize("rate_hz", [2.0, 2.5])
def test_a_camera_slower_than_the_context_span_is_off_the_grid(rate_hz):
    """Every frame comes after a gap no grid time bridges: not a pause, a camera off the grid."""
    buffer = ContextBuffer(context_frames=4, dt_s=0.1, jump_back_s=5.0)
    flags = []
    for i in range(6):
        buffer.add(round(i * 1000 / rate_hz) * MS, latent(i))
        flags.append(buffer.off_grid())
    assert flags[2:] == [True] * 4 and buffer.latest() is None


def test_context_drops_late_frames_and_resets_on_a_jump_back():
    buffer = ContextBuffer(context_frames=2, dt_s=0.1, jump_back_s=1.0)
    buffer.add(5000 * MS, latent(0))
    buffer.add(5100 * MS, latent(1))
    assert buffer.add(5100 * MS, latent(2)) is Verdict.DUPLICATE_STAMP
    assert buffer.add(5050 * MS, latent(2)) is Verdict.OUT_OF_ORDER_STAMP
    assert buffer.add(0, latent(3)) is Verdict.RESET  # 5.1 s back: a bag loop
    assert buffer.resets == 1 and buffer.latest() is None
    buffer.add(100 * MS, latent(4))
    assert buffer.latest().stamps_ns == (0, 100 * MS)


def test_latest_slot_keeps_only_the_newest():
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0.0) == 4 and slot.superseded == 4
    assert slot.take(0.01) is None
    slot.close()
    assert slot.take(10.0) is None  # closed: returns at once


def test_rollout_gate_runs_once_per_new_context_at_most_at_the_rate():
    gate = RolloutGate(rate_hz=20.0)
    assert not gate.wait(0.01), "no context announced yet"
    gate.announce(1)
    assert gate.wait(0.01)
    first_start = time.monotonic()
    assert not gate.wait(0.01), "context 1 was already rolled out"
    gate.announce(2)
    assert gate.wait(1.0)
    assert time.monotonic() - first_start >= 0.045, "20 Hz allows one start per 50 ms"
    closer = threading.Timer(0.05, gate.close)
    closer.start()
    assert not gate.wait(10.0)


def test_rollout_gate_on_arrival_starts_on_the_next_frame_not_one_that_came_during_a_rollout():
    gate = RolloutGate(rate_hz=1000.0, on_arrival=True)
    for version in (1, 2):  # a camera period of about 50 ms
        gate.announce(version)
        time.sleep(0.05)
    assert gate.wait(0.01), "an idle gate starts on arrival"
    gate.announce(3)  # arrives while rollout 2 runs
    assert not gate.wait(0.03), "context 3 came during a rollout: held for the next frame"
    gate.announce(4)
    assert gate.wait(0.01), "the next frame starts at once"
    gate.announce(5)  # during rollout 4, and then the camera stops
    start = time.monotonic()
    assert gate.wait(2.0), "with no newer frame, the held one is rolled out after all"
    assert time.monotonic() - start >= 0.04  # 1.5 camera periods after rollout 4 ended
    newest = RolloutGate(rate_hz=1000.0)  # the other trigger: the newest context once the rollout ends
    newest.announce(1)
    assert newest.wait(0.01)
    newest.announce(2)
    assert newest.wait(0.01)
    gate.configure(rate_hz=1000.0, on_arrival=False)
    gate.announce(6)  # during rollout 5, now rolled out at once
    assert gate.wait(0.01)


def test_rollout_gate_on_arrival_holds_a_context_that_came_before_the_rate_allowed():
    gate = RolloutGate(rate_hz=10.0, on_arrival=True)
    gate.announce(1)
    assert gate.wait(0.01)
    assert not gate.wait(0.01)  # rollout 1 ended at once; the rate allows the next 100 ms after it started
    gate.announce(2)  # too early, but no rollout runs
    start = time.monotonic()
    assert gate.wait(0.3), "context 2 came while no rollout ran: rolled out once the rate allows"
    assert time.monotonic() - start >= 0.05


def test_an_urgent_turn_goes_before_others_that_waited_longer():
    turns, order = Turns(), []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with turns.hold(urgent=False):
            holding.set()
            release.wait(5)

    def take(name: str, urgent: bool) -> None:
        with turns.hold(urgent):
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert holding.wait(5)
    for name, urgent in (("what-if", False), ("live", True)):  # the what-if waits first
        threads.append(threading.Thread(target=take, args=(name, urgent)))
        threads[-1].start()
        time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["live", "what-if"]


def test_deadline_plan_cuts_steps_then_decoding():
    cost = CostModel()
    cost.observe_rollout(ms=64.0, frames=8, steps=4)  # 2 ms per frame-step
    cost.observe_decode(ms=16.0, frames=8)  # 2 ms per frame
    everything = tuple(range(8))
    plan = plan_rollout(cost, 8, 4, everything, (0,), budget_ms=0)
    assert (plan.steps, plan.decode, plan.notes) == (4, everything, ())
    plan = plan_rollout(cost, 8, 4, everything, (0,), budget_ms=70.0)  # 4 steps: 80 ms; 3 steps: 64 ms
    assert plan.steps == 3 and plan.decode == everything and plan.reduced_steps and not plan.skipped_decode
    plan = plan_rollout(cost, 8, 4, everything, (0,), budget_ms=20.0)  # 1 step + 8 frames = 32 ms; + 1 frame = 18 ms
    assert plan.steps == 1 and plan.decode == (0,) and plan.skipped_decode and plan.estimate_ms == 18.0


def test_request_checks():
    ok = check_request(np.zeros(12), 2, 3, 2, 1, 5, True, model_action_dim=2)
    assert ok.actions.shape == (2, 3, 2) and ok.seed == 5
    unknown = np.full(6, np.nan)
    assert np.isnan(check_request(unknown, 1, 3, 2, 1, 0, False, 2).actions).all()
    with pytest.raises(RequestError, match="12 values; candidates x horizon x action_dim = 2 x 3 x 3 = 18"):
        check_request(np.zeros(12), 2, 3, 3, 1, 0, True, model_action_dim=3)
    with pytest.raises(RequestError, match=f"exceeds the cap of {MAX_BATCH}"):
        check_request(np.zeros(MAX_CANDIDATES * 2), MAX_CANDIDATES, 1, 2, 2, 0, False, model_action_dim=2)
    many = check_request(np.zeros(MAX_CANDIDATES * 2), MAX_CANDIDATES, 1, 2, 1, 0, False, model_action_dim=2)
    assert many.candidates == MAX_CANDIDATES  # latents only: a sampling planner's candidate set
    with pytest.raises(RequestError, match=f"with return_images, candidates must be 1..{MAX_IMAGE_CANDIDATES}"):
        check_request(np.zeros((MAX_IMAGE_CANDIDATES + 1) * 2), MAX_IMAGE_CANDIDATES + 1, 1, 2, 1, 0, True,
                      model_action_dim=2)
    assert check_request(np.zeros(2), 1, 1, 2, 1, 0, False, 2, sampler_steps=1).sampler_steps == 1
    too_many = MAX_SAMPLER_STEPS + 1
    with pytest.raises(RequestError, match=f"sampler_steps must be 0 .* or 1..{MAX_SAMPLER_STEPS}, got {too_many}"):
        check_request(np.zeros(2), 1, 1, 2, 1, 0, False, 2, sampler_steps=MAX_SAMPLER_STEPS + 1)
    with pytest.raises(RequestError, match="mark an unknown step with NaN in every component"):
        check_request(np.array([np.nan, 0.0]), 1, 1, 2, 1, 0, True, model_action_dim=2)
    with pytest.raises(RequestError, match="must be finite"):
        check_request(np.array([np.inf, 0.0]), 1, 1, 2, 1, 0, True, model_action_dim=2)


def test_actions_follow_twist_fields_and_the_no_command_choice():
    assert twist_indices(("linear_x", "angular_z")) == [0, 5]
    with pytest.raises(ValueError, match="not cmd_vel"):
        twist_indices(("throttle",))
    assert assumed_actions(np.array([0.5, -1.0]), 3, 2, "zero").tolist() == [[0.5, -1.0]] * 3
    assert assumed_actions(None, 2, 2, "zero").tolist() == [[0.0, 0.0]] * 2
    assert np.isnan(assumed_actions(None, 2, 2, "unknown")).all()
    assert assumed_actions(None, 2, 0, "zero") is None


def test_future_memory_matches_the_latest_prediction_of_a_stamp():
    memory = FutureMemory(tolerance_ns=50 * MS)
    frame = lambda v: np.full((2, 2, 3), v, np.uint8)  # noqa: E731
    memory.add([Prediction(100 * MS, 0, 1, frame(1)), Prediction(200 * MS, 0, 2, frame(2))])
    memory.add([Prediction(200 * MS, 100 * MS, 1, frame(3))])
    assert memory.match(210 * MS).frame[0, 0, 0] == 3  # the newer rollout wins
    assert memory.match(210 * MS, step=2).frame[0, 0, 0] == 2
    assert memory.match(100 * MS).frame[0, 0, 0] == 1
    assert memory.match(0) is None  # made from that very frame: not a prediction of it
    assert memory.match(400 * MS) is None


def test_comparison_image_is_real_predicted_error():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    predicted = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    real[0, 0], predicted[0, 0] = (10, 20, 30), (13, 14, 30)  # |d| = 3, 6, 0: mean 3, x3 -> 9
    real[0, 1], predicted[0, 1] = (0, 255, 0), (255, 0, 255)  # mean 255, x3 -> 765, clipped to 255
    real[0, 2], predicted[0, 2] = (7, 7, 7), (7, 7, 7)  # no error -> the colormap's 0
    picture = comparison_image(real, predicted)
    assert picture.shape == (4, 15, 3)
    assert (picture[:, :5] == real).all() and (picture[:, 5:10] == predicted).all()
    # Hand-computed: |real - predicted| averaged over colour, times ERROR_GAIN (3), clipped to
    # 255: with a gain of 3 the value is the sum of the three channel errors.
    gain = 3
    assert ERROR_GAIN == gain
    summed = np.abs(real.astype(int) - predicted.astype(int)).sum(axis=2)
    scaled = np.minimum(summed, 255).astype(np.uint8)
    assert scaled[0, :3].tolist() == [9, 255, 0]
    expected = cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO)[..., ::-1]  # OpenCV's BGR -> RGB
    assert picture[:, 10:].tolist() == expected.tolist()
    assert not (expected == expected[0, 0]).all(), "the panel must vary with the error"
    with pytest.raises(ValueError):
        comparison_image(real, predicted[:2])


def test_obstacle_fraction_is_the_share_of_non_floor_pixels_ahead():
    floor = np.array([100, 60, 180], np.float32)
    clear = np.broadcast_to(floor.astype(np.uint8), (2, 12, 12, 3)).copy()  # (H=2, 12, 12, 3)
    blocked = clear.copy()
    blocked[:, 6:, 4:8] = (200, 30, 30)  # the whole lower-centre window
    half = clear.copy()
    half[:, 9:, 4:8] = (200, 30, 30)  # half of it
    assert obstacle_fraction(blocked[0], floor) == 1.0 and obstacle_fraction(half[0], floor) == 0.5
    fractions = obstacle_fraction(np.stack([blocked, half, clear]), floor)  # (N=3, H=2): the MPC's hazard
    assert fractions.tolist() == [[1.0, 1.0], [0.5, 0.5], [0.0, 0.0]]


def test_watchdog_and_throttle():
    meter, bounds = RateMeter(window_s=1.0), InputBounds(watchdog_s=0.5)
    assert watchdog_entry("cam", meter, bounds, {}, now_s=10.0).level == STALE
    meter.tick(10.0)
    meter.tick(10.5)
    entry = watchdog_entry("cam", meter, bounds, {}, now_s=10.6)
    assert entry.level == OK and entry.values["input_rate_hz"] == "2.00" and entry.values["frames_received"] == "2"
    quiet = watchdog_entry("cam", meter, bounds, {}, now_s=12.0)
    assert quiet.level == ERROR and "no camera frame for 1.5 s" in quiet.message
    inactive = watchdog_entry("cam", meter, bounds, {}, active=False, now_s=12.0)
    assert inactive.level == OK and inactive.message.startswith("inactive"), "deactivated on purpose: no camera ERROR"
    throttle = Throttle(5.0)
    assert throttle.ready("a", 0.0) and not throttle.ready("a", 4.0) and throttle.ready("b", 4.0)
    assert throttle.ready("a", 5.0)


def test_drops_warn_for_one_window_then_clear_and_lifetime_totals_stay():
    meter, bounds, recent = RateMeter(window_s=2.0), InputBounds(watchdog_s=1.0), CounterWindow(2.0, now_s=0.0)
    lifetime = {}
    for t in np.arange(0.0, 10.0, 0.1):  # a steady 10 Hz camera; 3 frames dropped at t = 1 s
        meter.tick(t)
        if abs(t - 1.0) < 1e-6:
            lifetime = {"drop/malformed_image": 3}
        window = recent.update(lifetime, now_s=t)
        if abs(t - 1.5) < 1e-6:
            warned = watchdog_entry("cam", meter, bounds, lifetime, window, now_s=t)
    assert warned.level == WARN and "3 frames dropped in the last 2 s" in warned.message
    assert warned.values["window/drop/malformed_image"] == "3"
    clean = watchdog_entry("cam", meter, bounds, lifetime, recent.update(lifetime, now_s=10.0), now_s=10.0)
    assert clean.level == OK and clean.message == "receiving", "a clean window clears the WARN"
    assert clean.values["drop/malformed_image"] == "3" and "window/drop/malformed_image" not in clean.values


def test_frames_that_make_no_context_warn_with_the_reason():
    meter, bounds, recent = RateMeter(window_s=2.0), InputBounds(watchdog_s=1.0), CounterWindow(2.0, now_s=0.0)
    lifetime = {}
    for t in np.arange(0.0, 3.0, 1 / 7):  # a 7 Hz camera for a 10 Hz model
        meter.tick(t)
        lifetime = {"context/off_grid": int(t * 7)}
        window = recent.update(lifetime, now_s=t)
    warned = watchdog_entry("cam", meter, bounds, lifetime, window, now_s=t)
    assert warned.level == WARN and "made no context" in warned.message and "slower than 1/dt" in warned.message


def test_rate_bounds_and_stamp_age_warn_like_frequency_and_timestamp_status():
    bounds = InputBounds(watchdog_s=1.0, min_rate_hz=12.0, max_rate_hz=20.0, max_stamp_age_s=0.5)
    slow, fast, late = RateMeter(window_s=2.0), RateMeter(window_s=2.0), RateMeter(window_s=2.0)
    for t in np.arange(0.0, 4.0, 1 / 15):
        slow.tick(t, value=0.05) if round(t * 15) % 2 == 0 else None  # 7.5 Hz
        fast.tick(t, value=0.05)
        fast.tick(t + 0.01, value=0.05)  # 30 Hz
        late.tick(t, value=0.9)  # 15 Hz, stamps 0.9 s old
    assert "below the expected 12 Hz" in watchdog_entry("cam", slow, bounds, {}, now_s=4.0).message
    assert "above the expected 20 Hz" in watchdog_entry("cam", fast, bounds, {}, now_s=4.0).message
    old = watchdog_entry("cam", late, bounds, {}, now_s=4.0)
    assert old.level == WARN and "header stamps +0.90 s from the node clock" in old.message
    assert old.values["stamp_age_s_max"] == "0.900"
    early = RateMeter(window_s=2.0)
    early.tick(0.0, value=0.0)
    assert watchdog_entry("cam", early, bounds, {}, now_s=0.5).level == OK, "no rate verdict before a full window"
