"""The world-model pipeline without rclpy: context from stamped frames, future stamps, the
deadline, the caps, and one rollout path for the live node and ~/rollout."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from model_helpers import export_tiny
from sora_ros.core.context import Verdict
from sora_ros.core.requests import MAX_HORIZON, MAX_PENDING_CALLS, MAX_SAMPLER_STEPS, MAX_SAMPLES, RequestError, \
    RolloutRequest, check_request
from sora_ros.core.units import MAX_STAMP_NS, NS_PER_S
from sora_ros.runtime.engine import WorldModelEngine
from sora_ros.runtime.pipeline import BusyError, FrameRefusedError, NoContextError, RolloutSettings, \
    StaleContextError, WorldModelPipeline

T0_NS = 1000 * NS_PER_S
HORIZON = 3


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> WorldModelEngine:
    return WorldModelEngine(export_tiny(tmp_path_factory.mktemp("tiny")))


@pytest.fixture
def pipeline(engine) -> WorldModelPipeline:
    """A pipeline whose context holds K frames dt apart, from T0_NS on."""
    pipeline = WorldModelPipeline(engine)
    pipeline.settings = RolloutSettings(horizon=HORIZON)
    rng = np.random.default_rng(0)
    height, width = engine.info.image_size
    for k in range(engine.info.context_frames):
        _, latent = pipeline.encode(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        assert pipeline.observe(T0_NS + k * pipeline.dt_ns, "camera", latent) is Verdict.ACCEPTED
    return pipeline


def _command(engine) -> np.ndarray:
    return np.linspace(-0.5, 0.5, engine.info.action_dim).astype(np.float32)  # (A,)


def test_no_context_until_k_frames_dt_apart(engine) -> None:
    pipeline = WorldModelPipeline(engine)
    _, latent = pipeline.encode(np.zeros((*engine.info.image_size, 3), np.uint8))
    pipeline.observe(T0_NS, "camera", latent)
    assert pipeline.latest_context() is None
    request = RolloutRequest(np.zeros((1, HORIZON, engine.info.action_dim), np.float32), 1, HORIZON, 1, 0, False)
    with pytest.raises(NoContextError, match="no context yet"):
        pipeline.what_if(request)


def test_future_frames_are_stamped_origin_plus_k_dt(pipeline) -> None:
    context = pipeline.latest_context()
    origin = T0_NS + (pipeline.info.context_frames - 1) * pipeline.dt_ns
    assert context.newest_stamp_ns == origin
    outcome = pipeline.predict(context, _command(pipeline.engine), seed=1, decode_all=True)
    forecast = outcome.forecasts[0]
    assert forecast.stamps_ns == tuple(origin + k * round(pipeline.info.dt * NS_PER_S) for k in (1, 2, 3))
    assert forecast.frames.shape == (HORIZON, *pipeline.info.image_size, 3)
    # The live path remembers what it predicted, for the frame that arrives at that stamp.
    remembered = pipeline.memory.match(forecast.stamps_ns[1])
    assert remembered is not None and remembered.step == 2
    np.testing.assert_array_equal(remembered.frame, forecast.frames[1])


def test_live_and_service_paths_give_identical_futures(pipeline) -> None:
    command = _command(pipeline.engine)
    pipeline.settings = RolloutSettings(horizon=HORIZON, samples=2, sampler_steps=2)
    live = pipeline.predict(pipeline.latest_context(), command, seed=7, decode_all=True).forecasts[0]
    actions = np.repeat(command[None, None], HORIZON, axis=1)  # (1, H, A): the command held
    service = pipeline.what_if(RolloutRequest(actions, 1, HORIZON, 2, 7, True)).forecasts[0]
    assert live.stamps_ns == service.stamps_ns
    np.testing.assert_array_equal(live.latents, service.latents)
    np.testing.assert_array_equal(live.frames, service.frames)
    np.testing.assert_array_equal(live.uncertainty, service.uncertainty)
    assert (live.uncertainty > 0).all(), "two samples must differ"


def test_service_honours_the_sampler_steps_setting(pipeline) -> None:
    actions = np.zeros((2, HORIZON, pipeline.info.action_dim), np.float32)
    assert pipeline.what_if(RolloutRequest(actions, 2, HORIZON, 1, 0, False)).plan.steps == pipeline.info.sampler_steps
    pipeline.settings = RolloutSettings(sampler_steps=1)
    outcome = pipeline.what_if(RolloutRequest(actions, 2, HORIZON, 1, 0, False))
    assert outcome.plan.steps == 1 and not outcome.decoded


def test_a_request_chooses_its_own_sampler_steps(pipeline) -> None:
    """A planner's what-if at 1 step beside a live loop at the model's: the request's steps win,
    and its futures are those of a rollout at 1 step."""
    actions = np.zeros((2, HORIZON, pipeline.info.action_dim), np.float32)
    context = pipeline.latest_context()
    fast = pipeline.what_if(RolloutRequest(actions, 2, HORIZON, 1, 0, False, sampler_steps=1), context)
    assert fast.plan.steps == 1 != pipeline.info.sampler_steps
    expected = pipeline.engine.rollout(np.broadcast_to(context.latents, (2, *context.latents.shape)), actions,
                                       seed=0, steps=1).latents.mean(axis=1)  # (N, H, C, h, w)
    np.testing.assert_allclose(np.stack([f.latents for f in fast.forecasts]), expected, rtol=1e-6, atol=1e-6)


def test_a_deadline_cuts_sampler_steps_then_decoding(pipeline) -> None:
    command = _command(pipeline.engine)
    context = pipeline.latest_context()
    pipeline.predict(context, command, seed=1, decode_all=True)  # measures the cost
    pipeline.settings = RolloutSettings(horizon=HORIZON, deadline_ms=1e-3)  # 1 us: nothing fits
    outcome = pipeline.predict(context, command, seed=2, decode_all=True, decode_first=True)
    assert outcome.plan.steps == 1 and outcome.plan.reduced_steps and outcome.plan.skipped_decode
    assert list(outcome.decoded) == [0], "only the frame shown now is decoded"
    assert outcome.forecasts[0].frames is None
    assert outcome.missed_deadline and any("over the" in note for note in outcome.notes)


def test_caps_refuse(pipeline) -> None:
    for settings in ({"horizon": MAX_HORIZON + 1}, {"samples": MAX_SAMPLES + 1}, {"samples": 0},
                     {"sampler_steps": MAX_SAMPLER_STEPS + 1}, {"deadline_ms": -1.0},
                     {"deadline_ms": float("inf")}, {"no_command_action": "guess"}, {"samples": 2.5},
                     {"sampler_steps": 1.5}, {"horizon": True}, {"output_size": (64.5, 64.5)}, {"output_size": "ab"}):
        with pytest.raises(ValueError):
            RolloutSettings(**settings)
    action_dim = pipeline.info.action_dim
    with pytest.raises(RequestError, match="horizon must be"):
        check_request(np.zeros((MAX_HORIZON + 1) * action_dim), 1, MAX_HORIZON + 1, action_dim, 1, 0, False,
                      action_dim)


@pytest.mark.parametrize("fields, message", [
    ({"actions": "inf"}, "must be finite"),  # was clamped to the range's edge and answered
    ({"actions": "partly_nan"}, "NaN in every component"),
    ({"candidates": 3}, r"actions must be \(candidates, horizon, A\) = \(3, 3, A\), A >= 1 .* got \(2, 3, "),
    ({"actions": np.zeros((2, HORIZON, 0), np.float32)}, r"A >= 1 .* got \(2, 3, 0\)"),  # said "must be finite"
    ({"actions": np.zeros((2, HORIZON, 2), bool)}, "array of real numbers"),
    ({"actions": np.full((2, HORIZON, 2), None)}, "array of real numbers"),
    ({"actions": np.zeros((2, HORIZON, 2), np.complex64)}, "array of real numbers"),
    ({"candidates": 2.0}, "candidates must be an integer, got 2.0"),
    ({"horizon": True}, "horizon must be an integer, got True"),
    ({"samples": "2"}, "samples must be an integer"),
    ({"seed": None}, "seed must be an integer, got None"),  # was silently unseeded
    ({"seed": -1}, "seed must be >= 0"),
    ({"sampler_steps": 1.5}, "sampler_steps must be an integer"),
    ({"horizon": MAX_HORIZON + 1}, "horizon must be"),
    ({"samples": MAX_SAMPLES + 1}, "samples must be"),
    ({"candidates": 0, "actions": None}, "candidates must be"),
    ({"sampler_steps": MAX_SAMPLER_STEPS + 1}, "sampler_steps must be"),
])
def test_requests_built_in_code_are_checked_as_the_service_checks_them(pipeline, fields, message) -> None:
    actions = np.zeros((2, HORIZON, pipeline.info.action_dim), np.float32)
    marker = fields.get("actions")
    if isinstance(marker, str) and marker == "inf":
        actions[1, 2, 0] = np.inf
    elif isinstance(marker, str) and marker == "partly_nan":
        actions[0, 1, 0] = np.nan
    request = {"actions": actions, "candidates": 2, "horizon": HORIZON, "samples": 1, "seed": 0,
               "return_images": False} | {k: v for k, v in fields.items() if not isinstance(v, str) or k != "actions"}
    with pytest.raises(RequestError, match=message):
        pipeline.what_if(RolloutRequest(**request))


def test_only_what_ifs_yield_and_only_when_the_setting_says_so(pipeline, monkeypatch) -> None:
    asked = []
    rollout = pipeline.engine.rollout
    monkeypatch.setattr(pipeline.engine, "rollout", lambda *a, **k: asked.append(k["yields"]) or rollout(*a, **k))
    request = RolloutRequest(np.zeros((2, HORIZON, pipeline.info.action_dim), np.float32), 2, HORIZON, 1, 0, False)
    command = _command(pipeline.engine)
    for yields in (False, True):
        pipeline.settings = RolloutSettings(horizon=HORIZON, what_if_yields=yields)
        pipeline.what_if(request)
        pipeline.predict(pipeline.latest_context(), command, seed=1, decode_all=False)
    assert asked == [False, False, True, False]  # the live rollout never yields


def test_what_if_refuses_actions_of_another_dimension(pipeline) -> None:
    wrong = np.zeros((1, HORIZON, pipeline.info.action_dim + 1), np.float32)
    with pytest.raises(RequestError, match=f"{pipeline.info.action_dim + 1} action values per step; the model "
                                           f"takes {pipeline.info.action_dim}"):
        pipeline.what_if(RolloutRequest(wrong, 1, HORIZON, 1, 0, False))
    with pytest.raises(RequestError, match="0 action values per step"):
        pipeline.what_if(RolloutRequest(None, 1, HORIZON, 1, 0, False))


def test_observe_takes_numpy_stamps_and_refuses_what_is_not_a_stamp_or_a_latent(engine) -> None:
    """A uint64 stamp used to wrap on a jump back (IndexError); a latent of any shape was kept."""
    pipeline = WorldModelPipeline(engine)
    _, latent = pipeline.encode(np.zeros((*engine.info.image_size, 3), np.uint8))
    start = np.uint64(5 * NS_PER_S)
    for k in range(engine.info.context_frames):
        assert pipeline.observe(start + np.uint64(k * pipeline.dt_ns), "camera", latent) is Verdict.ACCEPTED
    assert pipeline.latest_context() is not None
    assert pipeline.observe(np.uint64(1), "camera", latent) is Verdict.RESET  # 5 s back: a clock jump
    for stamp in (float("nan"), 1.5, "7"):
        with pytest.raises(TypeError, match="stamp_ns must be integer nanoseconds"):
            pipeline.observe(stamp, "camera", latent)
    for wrong in (latent[:, :-1], latent[None], latent[:-1]):
        with pytest.raises(ValueError, match="an observed latent"):
            pipeline.observe(2, "camera", wrong)
    with pytest.raises(ValueError, match="NaN or Inf"):
        pipeline.observe(2, "camera", np.full_like(latent, np.nan))
    for wrong in (latent.astype(np.int64), latent > 0, latent.astype(np.complex64), latent.tolist()):
        with pytest.raises(ValueError, match="an observed latent must be a float array"):
            pipeline.observe(2, "camera", wrong)
    with pytest.raises(TypeError, match="integer nanoseconds, got True"):
        pipeline.observe(True, "camera", latent)
    with pytest.raises(ValueError, match="receipt_s must be a finite"):
        pipeline.observe(2, "camera", latent, receipt_s=float("nan"))
    assert pipeline.latest_context() is None  # nothing refused was kept


def test_a_stamp_out_of_range_is_dropped_and_changes_nothing(pipeline) -> None:
    """2**63 overflowed inside the buffer after the frame was appended; the next good frame then
    restarted the context as a clock jump."""
    context = pipeline.latest_context()
    latent = context.latents[-1]
    for stamp in (-1, 2**63, np.uint64(2**64 - 1), MAX_STAMP_NS + 1):
        assert pipeline.observe(stamp, "camera", latent) is Verdict.STAMP_OUT_OF_RANGE
    assert pipeline.latest_context() == context
    assert pipeline.observe(context.newest_stamp_ns + pipeline.dt_ns, "camera", latent) is Verdict.ACCEPTED
    assert pipeline.counters.snapshot().get("reset/resolution", 0) == 0


def test_masked_actions_are_taken_when_nothing_is_masked_and_refused_naming_the_count(pipeline) -> None:
    """A masked array was refused as "not an array of real numbers", whatever its mask; np.asarray
    (check_request, a live command) dropped the mask and used the hidden values."""
    action_dim = pipeline.info.action_dim
    plain = np.linspace(-0.5, 0.5, 2 * HORIZON * action_dim, dtype=np.float32).reshape(2, HORIZON, action_dim)
    open_mask = np.ma.masked_array(plain, mask=np.zeros(plain.shape, bool))
    request = RolloutRequest(open_mask, 2, HORIZON, 1, 0, False)
    assert type(request.actions) is np.ndarray
    got = pipeline.what_if(request).forecasts
    expected = pipeline.what_if(RolloutRequest(plain, 2, HORIZON, 1, 0, False)).forecasts
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.latents, b.latents)
    hidden = np.ma.masked_array(plain, mask=np.zeros(plain.shape, bool))
    hidden[1, 2] = np.ma.masked  # one row: A values
    message = rf"actions is a masked array with {action_dim} of {plain.size} values masked.*np\.ma\.filled"
    with pytest.raises(RequestError, match=message):
        RolloutRequest(hidden, 2, HORIZON, 1, 0, False)
    with pytest.raises(RequestError, match=message):
        check_request(hidden.ravel(), 2, HORIZON, action_dim, 1, 0, False, action_dim)
    assert check_request(open_mask.ravel(), 2, HORIZON, action_dim, 1, 0, False, action_dim).actions.shape == plain.shape
    command = np.ma.masked_array(_command(pipeline.engine), mask=[True] + [False] * (action_dim - 1))
    with pytest.raises(ValueError, match=rf"command is a masked array with 1 of {action_dim} values masked"):
        pipeline.predict(pipeline.latest_context(), command, seed=0, decode_all=False)
    command.mask = False
    assert pipeline.predict(pipeline.latest_context(), command, seed=0, decode_all=False).forecasts


def test_futures_past_the_last_stamp_a_time_holds_are_refused(engine) -> None:
    """The newest frame may be stamped up to MAX_STAMP_NS; its futures, horizon x dt later, may not:
    builtin_interfaces/Time has int32 seconds, and a clamped stamp would say the wrong time."""
    from sora_ros.core.context import StampRangeError, future_stamps

    pipeline = WorldModelPipeline(engine)
    pipeline.settings = RolloutSettings(horizon=HORIZON)
    _, latent = pipeline.encode(np.zeros((*engine.info.image_size, 3), np.uint8))
    newest = MAX_STAMP_NS - HORIZON * pipeline.dt_ns + 1  # frame HORIZON lands 1 ns past the end
    for k in reversed(range(engine.info.context_frames)):
        assert pipeline.observe(newest - k * pipeline.dt_ns, "camera", latent) is Verdict.ACCEPTED
    context = pipeline.latest_context()
    actions = np.zeros((1, HORIZON, engine.info.action_dim), np.float32)
    with pytest.raises(StampRangeError, match=rf"predicted frame {HORIZON} would stand for .* past 2147483647 s"):
        pipeline.what_if(RolloutRequest(actions, 1, HORIZON, 1, 0, False))
    with pytest.raises(StampRangeError, match="int32 seconds"):
        pipeline.predict(context, _command(engine), seed=0, decode_all=False)
    short = RolloutRequest(actions[:, :HORIZON - 1], 1, HORIZON - 1, 1, 0, False)  # ends dt - 1 ns before the end
    assert pipeline.what_if(short).forecasts[0].stamps_ns[-1] == MAX_STAMP_NS - pipeline.dt_ns + 1
    assert future_stamps(MAX_STAMP_NS - 2 * pipeline.dt_ns, 2, pipeline.dt_ns)[-1] == MAX_STAMP_NS


def test_a_live_command_of_another_length_is_refused(pipeline) -> None:
    for command in (np.zeros(pipeline.info.action_dim + 1, np.float32), np.float32(0.1),
                    np.zeros((1, pipeline.info.action_dim), np.float32)):
        with pytest.raises(ValueError, match=rf"command must be \({pipeline.info.action_dim},\) in model order"):
            pipeline.predict(pipeline.latest_context(), command, seed=0, decode_all=False)


@pytest.mark.parametrize("max_age_s", [-1.0, float("nan"), float("inf")])
def test_what_if_refuses_a_max_age_that_is_not_a_time(pipeline, max_age_s) -> None:
    request = RolloutRequest(np.zeros((1, HORIZON, pipeline.info.action_dim), np.float32), 1, HORIZON, 1, 0, False)
    with pytest.raises(ValueError, match="max_age_s must be a finite number of seconds"):
        pipeline.what_if(request, max_age_s=max_age_s)


@pytest.mark.parametrize("frame, error, message", [
    (np.zeros((0, 64, 3), np.uint8), FrameRefusedError, "an empty 64x0 image"),
    (np.zeros((48, 0, 3), np.uint8), FrameRefusedError, "an empty 0x48 image"),
    (np.zeros((48, 64), np.uint8), ValueError, r"uint8 \(H, W, 3\) RGB array, got uint8 \(48, 64\)"),
    (np.zeros((48, 64, 4), np.uint8), ValueError, "uint8 \\(H, W, 3\\)"),
    (np.zeros((48, 64, 3), np.float32), ValueError, "got float32"),
])
def test_empty_or_malformed_frames_are_refused_with_a_reason(engine, frame, error, message) -> None:
    with pytest.raises(error, match=message) as refused:
        WorldModelPipeline(engine).encode(frame)
    if error is FrameRefusedError:
        assert refused.value.reason == "image_too_small"


def test_frames_too_small_are_refused_not_upscaled(engine) -> None:
    height, width = engine.info.image_size
    with pytest.raises(FrameRefusedError, match="upscales at most"):
        WorldModelPipeline(engine).encode(np.zeros((height // 8, width // 8, 3), np.uint8))


def test_a_clock_jump_back_restarts_the_context_and_forgets_predictions(pipeline) -> None:
    context = pipeline.latest_context()
    pipeline.predict(context, _command(pipeline.engine), seed=1, decode_all=True)
    latent = context.latents[-1]
    assert pipeline.observe(context.newest_stamp_ns, "camera", latent) is Verdict.DUPLICATE_STAMP
    assert pipeline.observe(T0_NS - 60 * NS_PER_S, "camera", latent) is Verdict.RESET
    assert pipeline.latest_context() is None
    assert pipeline.memory.match(context.newest_stamp_ns + pipeline.dt_ns) is None


@pytest.mark.parametrize("value", [1e30, -1e30, 3.4e38, np.inf])
def test_commands_outside_the_action_range_are_clamped_and_counted(pipeline, value) -> None:
    """A cmd_vel of 1e30 made every prediction NaN (drop/nonfinite_output); it is clamped instead."""
    low, high = (np.asarray(bound, np.float32) for bound in pipeline.info.action_range)
    command = np.full(pipeline.info.action_dim, value, np.float32)  # (A,)
    outcome = pipeline.predict(pipeline.latest_context(), command, seed=1, decode_all=True)
    assert outcome.forecasts[0].frames is not None and np.isfinite(outcome.forecasts[0].latents).all()
    expected = np.broadcast_to(high if value > 0 else low, outcome.forecasts[0].actions.shape)
    np.testing.assert_array_equal(outcome.forecasts[0].actions, expected)
    assert pipeline.counters.snapshot()["input/action_out_of_range"] == HORIZON * pipeline.info.action_dim
    assert "clamped" in outcome.notes[0]
    at_the_edge = pipeline.predict(pipeline.latest_context(), high if value > 0 else low, seed=1, decode_all=True)
    np.testing.assert_array_equal(at_the_edge.forecasts[0].latents, outcome.forecasts[0].latents)


def test_service_actions_outside_the_range_are_clamped_and_counted(pipeline) -> None:
    actions = np.zeros((2, HORIZON, pipeline.info.action_dim), np.float32)
    actions[1, 0] = -1e30
    actions[0, 1] = np.nan  # an unknown step stays unknown, not counted
    outcome = pipeline.what_if(RolloutRequest(actions, 2, HORIZON, 1, 0, False))
    assert pipeline.counters.snapshot()["service/input/action_out_of_range"] == pipeline.info.action_dim
    np.testing.assert_array_equal(outcome.forecasts[1].actions[0], pipeline.info.action_range[0])
    assert np.isnan(outcome.forecasts[0].actions[1]).all()


def test_a_stale_context_is_refused_with_its_age(engine) -> None:
    pipeline = WorldModelPipeline(engine)
    rng = np.random.default_rng(0)
    height, width = engine.info.image_size
    received = time.monotonic() - 6.3  # the camera went quiet 6.3 s ago
    for k in range(engine.info.context_frames):
        _, latent = pipeline.encode(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        pipeline.observe(T0_NS + k * pipeline.dt_ns, "camera", latent, received)
    request = RolloutRequest(np.zeros((1, HORIZON, engine.info.action_dim), np.float32), 1, HORIZON, 1, 0, False)
    with pytest.raises(StaleContextError, match=r"newest camera frame in the context is 6\.[3-9]\d s old, over the 1 s limit"):
        pipeline.what_if(request, max_age_s=1.0)
    assert pipeline.what_if(request, max_age_s=60.0).forecasts  # within the limit
    assert pipeline.what_if(request).forecasts  # no limit


def test_after_a_lost_frame_what_if_answers_from_the_last_complete_context_and_says_so(engine) -> None:
    pipeline = WorldModelPipeline(engine)
    k = engine.info.context_frames
    _, latent = pipeline.encode(np.zeros((*engine.info.image_size, 3), np.uint8))
    received = time.monotonic() - 0.5  # the last complete context's newest frame came 0.5 s ago
    for j in range(k):
        pipeline.observe(T0_NS + j * pipeline.dt_ns, "camera", latent, received)
    complete = pipeline.latest_context()
    pipeline.observe(T0_NS + (k + 1) * pipeline.dt_ns, "camera", latent, time.monotonic())  # frame k was lost
    assert pipeline.latest_context() is None
    request = RolloutRequest(np.zeros((1, HORIZON, engine.info.action_dim), np.float32), 1, HORIZON, 1, 0, False)
    outcome = pipeline.what_if(request, max_age_s=60.0)
    assert outcome.context.stamps_ns == complete.stamps_ns
    assert outcome.forecasts[0].stamps_ns[0] == complete.newest_stamp_ns + pipeline.dt_ns, "stamped from its origin"
    behind_ms = 2 * pipeline.dt_ns // 1_000_000
    assert any(f"context ending {behind_ms} ms before the newest camera frame" in note for note in outcome.notes)
    assert pipeline.counters.snapshot()["service/older_context"] == 1
    with pytest.raises(StaleContextError, match=r"is 0\.[5-9]\d s old"):  # its own newest frame's age, not 0
        pipeline.what_if(request, max_age_s=0.3)
    assert pipeline.counters.snapshot()["service/older_context"] == 1, "a refused call is no answer"
    pipeline.reset()
    with pytest.raises(NoContextError):
        pipeline.what_if(request)


def test_calls_beyond_the_pending_bound_are_refused_as_busy(pipeline) -> None:
    """Every call of a burst gets an answer: a rollout, or BusyError at once."""
    request = RolloutRequest(np.zeros((1, HORIZON, pipeline.info.action_dim), np.float32), 1, HORIZON, 1, 0, True)
    release, started = threading.Event(), threading.Event()
    engine_rollout = pipeline.engine.rollout

    def held_rollout(*args, **kwargs):
        started.set()
        release.wait(60)
        return engine_rollout(*args, **kwargs)

    pipeline.engine.rollout = held_rollout  # the instance attribute: this pipeline's engine only, undone below
    answers: list[str] = []
    try:
        def call() -> None:
            try:
                answers.append("ok" if pipeline.what_if(request).forecasts[0].frames is not None else "no frames")
            except BusyError:
                answers.append("busy")

        threads = [threading.Thread(target=call) for _ in range(MAX_PENDING_CALLS)]
        for thread in threads:
            thread.start()
        assert started.wait(60)
        burst = [threading.Thread(target=call) for _ in range(3 * MAX_PENDING_CALLS)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join(60)
        assert answers == ["busy"] * (3 * MAX_PENDING_CALLS)  # refused at once, while the others wait
        release.set()
        for thread in threads:
            thread.join(60)
    finally:
        release.set()
        del pipeline.engine.rollout
    assert sorted(answers) == ["busy"] * (3 * MAX_PENDING_CALLS) + ["ok"] * MAX_PENDING_CALLS


def test_the_pipeline_needs_no_rclpy_and_no_torch() -> None:
    import subprocess

    code = ("import sys, sora_ros.runtime.pipeline, sora_ros.evaluation.predictors; "
            "bad = {'rclpy', 'torch'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
