"""The world-model node in its own process over real DDS, with a tiny exported model:
futures and their stamps, ~/rollout, run-time parameters, bad input, the watchdog,
clock jumps, a model that fails configure, and the encoder/predictor split."""

from __future__ import annotations

import array
from collections.abc import Iterator

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from live_helpers import Probe, rollout_request, start_node, stop  # noqa: E402
from model_helpers import export_tiny  # noqa: E402
from sora_ros.msg import FutureFrames  # noqa: E402
from sora_ros.nodes.predictor import SERVICE_QOS  # noqa: E402
from sora_ros.srv import Rollout  # noqa: E402
from sora_ros.core.requests import MAX_CANDIDATES, MAX_SAMPLER_STEPS  # noqa: E402
from sora_ros.nodes.messages import stamp_ns  # noqa: E402
from sora_ros.nodes.messages import header, numpy_to_image  # noqa: E402
from sora_ros.core.units import NS_PER_S  # noqa: E402
from sora_ros.runtime.engine import WorldModelEngine  # noqa: E402
from sora_ros.runtime.risk import NO_RISK_HEAD  # noqa: E402

SIZE = (32, 32)  # the tiny model's input
DT_S = 0.1
T0_S = 1000.0
INPUT, INFERENCE = "world_model: input", "world_model: inference"
FAST_DIAGNOSTICS = ["-p", "diagnostics_period_s:=0.1", "-p", "watchdog_timeout_s:=0.5"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(export_tiny(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="module")
def ros() -> Iterator[None]:
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def world_model(ros, tiny_model) -> Iterator[Probe]:
    """One world_model node for the module's tests (in file order: the first sees no frame yet)."""
    process = start_node("sora_ros.nodes.world_model", "-p", f"model_path:={tiny_model}",
                         "-r", "image:=/wm_test/image", "-r", "cmd_vel:=/wm_test/cmd_vel", *FAST_DIAGNOSTICS,
                         "-p", "max_context_age_s:=60.0")  # calls wait on a loaded machine; not stale here
    probe = Probe("world_model", "/wm_test/image", SIZE)
    try:
        yield probe
    finally:
        probe.close()
        output = stop(process)
        assert "Traceback" not in output, output


def test_rollout_before_the_first_frame_is_refused(world_model: Probe) -> None:
    response = world_model.call(rollout_request(np.zeros((1, 4, 2), np.float32)))
    assert not response.success
    assert "no context yet" in response.message


def test_futures_have_the_horizon_and_future_stamps(world_model: Probe, tiny_model: str) -> None:
    for i in range(3):
        world_model.send(T0_S + i * DT_S)
    origin = round((T0_S + 2 * DT_S) * NS_PER_S)  # the newest frame
    world_model.wait_for(lambda: world_model.futures and stamp_ns(world_model.futures[-1].header) == origin,
                         "~/futures from the newest frame")
    with world_model.lock:
        futures = world_model.futures[-1]
    assert futures.horizon == 8 and len(futures.latents) == 8 and abs(futures.dt - DT_S) < 1e-6
    # No deadline is set (deadline_ms 0) and the probe subscribes to ~/futures: every frame is decoded.
    assert len(futures.frames) == 8, f"{len(futures.frames)} frames with 8 latents"
    step_ns = round(DT_S * NS_PER_S)
    for k, (latents, frame) in enumerate(zip(futures.latents, futures.frames), start=1):
        assert stamp_ns(latents.header) == origin + k * step_ns
        assert stamp_ns(frame.header) == origin + k * step_ns, f"frame {k}"
        assert (frame.height, frame.width, frame.encoding, frame.step) == (*SIZE, "rgb8", SIZE[1] * 3)
        assert len(frame.data) == SIZE[0] * SIZE[1] * 3
    # Each frame is the decoding of the latent stamped with it.
    engine = WorldModelEngine(tiny_model)
    shape = (latents.channels, latents.height, latents.width)
    grids = np.stack([np.frombuffer(bytes(m.data), "<f4").reshape(shape) for m in futures.latents])
    decoded = engine.decode(grids).astype(np.int16)
    sent = np.stack([np.frombuffer(bytes(f.data), np.uint8).reshape(*SIZE, 3) for f in futures.frames])
    assert np.abs(sent - decoded).max() <= 1
    assert list(futures.actions) == [0.0] * 16  # no cmd_vel: stand still


def test_rollout_depends_on_actions_and_repeats_with_the_seed(world_model: Probe) -> None:
    actions = np.array([[[0.5, 1.0]] * 4, [[0.5, -1.0]] * 4], np.float32)  # (N=2, H=4, A=2): left, right
    first = world_model.call(rollout_request(actions, seed=7))
    again = world_model.call(rollout_request(actions, seed=7))
    assert first.success, first.message
    assert len(first.futures) == 2 and all(len(f.frames) == 4 for f in first.futures)
    left, right = (np.frombuffer(f.latents[-1].data, np.float32) for f in first.futures)
    assert not np.allclose(left, right, atol=1e-4), "different actions gave the same future"
    for a, b in zip(first.futures, again.futures):
        assert [bytes(x.data) for x in a.frames] == [bytes(x.data) for x in b.frames]
    assert first.total_ms >= first.rollout_ms > 0


def test_rollout_uncertainty_with_samples(world_model: Probe) -> None:
    response = world_model.call(rollout_request(np.zeros((1, 3, 2), np.float32), samples=3, images=False))
    assert response.success, response.message
    (futures,) = response.futures
    assert futures.frames == [] and len(futures.latents) == 3
    assert len(futures.uncertainty) == 3 and all(u > 0 for u in futures.uncertainty)


def test_a_rollout_call_chooses_its_sampler_steps(world_model: Probe) -> None:
    request = rollout_request(np.zeros((2, 3, 2), np.float32), images=False)
    request.sampler_steps = 1
    response = world_model.call(request)
    assert response.success, response.message
    assert [f.sampler_steps for f in response.futures] == [1, 1]


@pytest.mark.parametrize("request_fields, message", [
    ({"action_dim": 3}, "action_dim is 3 but the model takes 2"),
    ({"horizon": 5}, "actions has 8 values; candidates x horizon x action_dim = 1 x 5 x 2 = 10"),
    ({"candidates": MAX_CANDIDATES + 1}, f"candidates must be 1..{MAX_CANDIDATES}"),
    ({"samples": 0}, "samples must be 1..8"),
    ({"sampler_steps": MAX_SAMPLER_STEPS + 1}, f"or 1..{MAX_SAMPLER_STEPS}, got {MAX_SAMPLER_STEPS + 1}"),
])
def test_bad_rollout_requests_get_a_message(world_model: Probe, request_fields: dict, message: str) -> None:
    request = rollout_request(np.zeros((1, 4, 2), np.float32))
    for key, value in request_fields.items():
        setattr(request, key, value)
    before = world_model.counter(INFERENCE, "service/refused/bad_request")
    response = world_model.call(request)
    assert not response.success and message in response.message
    world_model.wait_for(lambda: world_model._counter_unlocked(INFERENCE, "service/refused/bad_request") > before,
                         "the refusal in /diagnostics")


def image_msg(encoding: str, width: int, height: int, data: bytes, stamp_s: float) -> Image:
    msg = Image(header=header(round(stamp_s * NS_PER_S), "camera"), encoding=encoding, width=width, height=height,
                step=width * 3)
    msg.data = array.array("B", data)
    return msg


def test_bad_images_are_counted_drops_and_the_node_keeps_going(world_model: Probe) -> None:
    stamp = T0_S + 10.0
    bad = [
        (image_msg("rgb9", 32, 32, bytes(32 * 32 * 3), stamp), "drop/unknown_encoding"),
        (image_msg("rgb8", 32, 32, bytes(100), stamp), "drop/malformed_image"),  # truncated
        (image_msg("rgb8", 0, 0, b"", stamp), "drop/malformed_image"),  # zero size
        (image_msg("rgb8", 4, 4, bytes(4 * 4 * 3), stamp), "drop/image_too_small"),
        (image_msg("rgb8", 64, 48, bytes(128 * 96 * 3), stamp), "drop/malformed_image"),  # longer than its header
        (image_msg("rgb8", 20000, 20000, bytes(100), stamp), "drop/image_too_large"),
    ]
    for msg, counter in bad:
        world_model.send_bad(msg, counter, INPUT)
    with world_model.lock:
        before = len(world_model.futures)
    for i in range(3):  # still encodes and predicts
        world_model.send(stamp + i * DT_S)
    world_model.wait_for(lambda: len(world_model.futures) > before, "~/futures after the bad images")
    assert world_model.status(INPUT).level == b"\x01", "drops should turn the input status to WARN"


def test_stamps_out_of_order_are_dropped_and_a_jump_back_resets(world_model: Probe) -> None:
    newest = T0_S + 20.0
    world_model.send(newest)
    for stamp, counter in ((newest, "drop/duplicate_stamp"), (newest - 0.05, "drop/out_of_order_stamp")):
        before = world_model.counter(INPUT, counter)
        msg = image_msg("rgb8", 32, 32, world_model.frame().tobytes(), stamp)
        world_model._publish_until(msg, lambda: world_model._counter_unlocked(INPUT, counter) > before, counter)
    before = world_model.counter(INPUT, "reset/clock_jump")
    world_model.send(newest - 30.0)  # a bag starting over
    world_model.wait_for(lambda: world_model._counter_unlocked(INPUT, "reset/clock_jump") > before, "the reset")
    with world_model.lock:
        seen = len(world_model.futures)
    world_model.send(newest - 30.0 + DT_S)
    world_model.wait_for(lambda: len(world_model.futures) > seen, "futures from the new context")
    with world_model.lock:
        origin = world_model.futures[-1].header.stamp.sec
    assert origin < newest - 20, "a rollout mixed frames from before the jump"


def test_watchdog_reports_a_quiet_camera_then_recovers(world_model: Probe) -> None:
    world_model.wait_for(lambda: (s := world_model._status_unlocked(INPUT)) is not None and s.level == b"\x02",
                         "the watchdog ERROR")
    assert "no camera frame for" in world_model.status(INPUT).message
    world_model.send(T0_S + 100.0)
    world_model.wait_for(lambda: world_model._status_unlocked(INPUT).level != b"\x02", "the watchdog to clear")


def set_parameter(probe: Probe, name: str, value: ParameterValue) -> bool:
    client = probe.node.create_client(SetParameters, "/world_model/set_parameters")
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=value)]))
    probe.wait_for(future.done, "set_parameters")
    probe.node.destroy_client(client)
    return future.result().results[0].successful


def test_horizon_changes_at_run_time(world_model: Probe) -> None:
    assert set_parameter(world_model, "horizon", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=3))
    too_far = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=1000)
    assert not set_parameter(world_model, "horizon", too_far), "the descriptor's range should refuse 1000"
    maybe = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="maybe")
    assert not set_parameter(world_model, "no_command_action", maybe)
    for i in range(3):
        world_model.send(T0_S + 200.0 + i * DT_S)
    world_model.wait_for(lambda: world_model.futures[-1].horizon == 3, "futures of the new horizon")


def test_rollout_trigger_changes_at_run_time_and_refuses_other_values(world_model: Probe) -> None:
    string = lambda text: ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text)  # noqa: E731
    assert not set_parameter(world_model, "rollout_trigger", string("Arrival"))
    assert set_parameter(world_model, "rollout_trigger", string("newest"))
    for i in range(3):
        world_model.send(T0_S + 250.0 + i * DT_S)
    origin = round((T0_S + 250.0 + 2 * DT_S) * NS_PER_S)
    world_model.wait_for(lambda: stamp_ns(world_model.futures[-1].header) == origin, "~/futures from the newest frame")
    assert set_parameter(world_model, "rollout_trigger", string("arrival"))
    flag = lambda value: ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)  # noqa: E731
    assert set_parameter(world_model, "what_if_yields", flag(True))
    answer = world_model.call(rollout_request(np.zeros((2, 3, 2), np.float32)))
    assert answer.success and len(answer.futures) == 2, answer.message
    assert set_parameter(world_model, "what_if_yields", flag(False))


def test_a_deadline_it_cannot_meet_cuts_sampler_steps(world_model: Probe) -> None:
    budget = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.001)  # 1 us: nothing fits
    assert set_parameter(world_model, "deadline_ms", budget)
    before = world_model.counter(INFERENCE, "deadline/reduced_steps")
    for i in range(3):
        world_model.send(T0_S + 300.0 + i * DT_S)
    world_model.wait_for(lambda: world_model.futures[-1].sampler_steps == 1, "futures with 1 sampler step")
    world_model.wait_for(lambda: world_model._counter_unlocked(INFERENCE, "deadline/reduced_steps") > before,
                         "deadline/reduced_steps in /diagnostics")
    # ~/rollout under the same budget: its first call measures the cost, the next ones are cut.
    responses = [world_model.call(rollout_request(np.zeros((2, 3, 2), np.float32))) for _ in range(2)]
    assert set_parameter(world_model, "deadline_ms", ParameterValue(type=ParameterType.PARAMETER_DOUBLE))
    cut = responses[-1]
    assert cut.success and len(cut.futures) == 2 and len(cut.futures[0].frames) == 3, cut.message
    assert [f.sampler_steps for f in cut.futures] == [1, 1]
    assert "sampler steps" in cut.message and "budget" in cut.message
    unlimited = world_model.call(rollout_request(np.zeros((2, 3, 2), np.float32)))
    assert unlimited.message == NO_RISK_HEAD and unlimited.futures[0].sampler_steps > 1
    # The tiny model has no risk head: answered normally, risk left empty, and the message says why.
    assert unlimited.success and [len(f.risk) for f in unlimited.futures] == [0, 0]


def test_predicted_and_comparison_images_for_arriving_frames(world_model: Probe) -> None:
    images: dict[str, list[Image]] = {"predicted": [], "comparison": []}
    for name, into in images.items():
        world_model.node.create_subscription(Image, f"/world_model/{name}/image", world_model._store(into),
                                             qos_profile_sensor_data)
    sent = []
    for i in range(40):  # until the node sees the subscribers and a rollout predicted the next frame
        stamp = T0_S + 400.0 + i * DT_S
        world_model.send(stamp)
        sent.append(round(stamp * NS_PER_S))
        if i >= 1:  # the tiny model's K = 2 frames make a context
            world_model.wait_for(lambda: world_model.futures and stamp_ns(world_model.futures[-1].header) == sent[-1],
                                 "the frame's rollout")
        with world_model.lock:
            if images["predicted"] and images["comparison"]:
                break
    world_model.wait_for(lambda: images["predicted"] and images["comparison"], "predicted and comparison images")
    comparison = images["comparison"][-1]
    assert (comparison.width, comparison.height, comparison.encoding) == (3 * SIZE[1], SIZE[0], "rgb8")
    assert stamp_ns(images["predicted"][-1].header) in sent[1:], "stamped with the real frame it shows"


def test_twist_stamped_cmd_vel_is_discovered_and_its_commands_assumed(world_model: Probe) -> None:
    """cmd_vel published as TwistStamped (stamp 0, as `ros2 topic pub` sends it) to a node left at its
    defaults: it subscribes with the publisher's type and the futures assume the command."""
    from geometry_msgs.msg import TwistStamped

    publisher = world_model.node.create_publisher(TwistStamped, "/wm_test/cmd_vel", 10)
    command = TwistStamped()
    command.twist.linear.x, command.twist.angular.z = 0.5, 1.0
    timer = world_model.node.create_timer(0.05, lambda: publisher.publish(command))
    try:
        stamp_s = T0_S + 500.0
        while True:  # new frames until a rollout assumed the command (discovery takes up to a second)
            stamp_s += DT_S
            world_model.send(stamp_s)
            origin = round(stamp_s * NS_PER_S)
            try:
                world_model.wait_for(lambda: world_model.futures and stamp_ns(world_model.futures[-1].header) >= origin
                                     and list(world_model.futures[-1].actions)
                                     == [0.5, 1.0] * world_model.futures[-1].horizon,
                                     "futures under the TwistStamped command", timeout_s=0.5)
                break
            except AssertionError:
                assert stamp_s < T0_S + 500.0 + 100 * DT_S, f"the command never reached the futures: " \
                    f"{list(world_model.futures[-1].actions)[:2] if world_model.futures else 'no futures'}"
        broken = TwistStamped()
        broken.twist.linear.x = float("nan")
        publisher.publish(broken)
        world_model.wait_for(lambda: world_model._counter_unlocked(INPUT, "drop/nonfinite_cmd_vel") > 0,
                             "drop/nonfinite_cmd_vel in /diagnostics")
    finally:
        world_model.node.destroy_timer(timer)
        world_model.node.destroy_publisher(publisher)


def test_a_burst_of_concurrent_rollout_calls_is_answered_in_full(world_model: Probe) -> None:
    """20 calls at once: 10-11 used to be answered and the rest never. Each gets a rollout or 'busy'."""
    for k in range(8):
        world_model.send(T0_S + 500.0 + k * DT_S)
    world_model.wait_for(lambda: world_model.futures, "futures")
    actions = np.zeros((2, 8, 2), np.float32)
    # A client that keeps every response (the default keep-last 10 would drop answers on its side).
    client = world_model.node.create_client(Rollout, "/world_model/rollout", qos_profile=SERVICE_QOS)
    assert client.wait_for_service(timeout_sec=60)
    calls = [client.call_async(rollout_request(actions, samples=2)) for _ in range(20)]
    world_model.wait_for(lambda: all(call.done() for call in calls), "an answer to every call")
    answers = [call.result() for call in calls]
    assert all(a.success or a.message.startswith("busy") for a in answers), \
        [a.message for a in answers if not a.success]
    assert sum(a.success for a in answers) >= 1


def test_a_wide_camera_gets_its_own_grid_and_one_outside_the_range_is_dropped(world_model: Probe) -> None:
    """The tiny model's budget is 4x4 tokens of 8x8 pixels: a 5:3 camera gets 3x5 tokens, ~/latents
    carry that grid, ~/futures follow it; an aspect ratio of 6 (range 1/3 to 3) is refused."""
    wide = np.random.default_rng(3).integers(0, 256, (60, 100, 3), dtype=np.uint8)  # H, W
    for k in range(3):
        world_model.send(T0_S + 600.0 + k * DT_S, wide)
    world_model.wait_for(lambda: world_model.futures and world_model.futures[-1].latents[0].width == 10,
                         "~/futures on the 3x5-token grid")
    with world_model.lock:
        latents, futures = world_model.latents[-1], world_model.futures[-1]
    assert (latents.channels, latents.height, latents.width) == (4, 6, 10)
    assert len(latents.data) == 4 * 6 * 10 * 4
    assert all((f.height, f.width) == (24, 40) for f in futures.frames)  # no anchored decoder: the model input
    world_model.wait_for(lambda: world_model._counter_unlocked(INPUT, "reset/resolution") >= 1,
                         "reset/resolution: a camera of another grid restarts the context")
    too_wide = image_msg("rgb8", 120, 20, bytes(120 * 20 * 3), T0_S + 700.0)
    world_model.send_bad(too_wide, "drop/aspect_ratio", INPUT)


def test_a_stamp_whose_nanosec_is_not_below_a_second_is_dropped(world_model: Probe) -> None:
    """sec + 1.5e9 ns is no time: before, it was encoded and the outputs carried the normalised stamp
    (sec + 1, 5e8 ns), not the input's."""
    msg = image_msg("rgb8", 32, 32, world_model.frame().tobytes(), T0_S + 750.0)
    msg.header.stamp.nanosec = 1_500_000_000
    with world_model.lock:
        seen = len(world_model.latents)
    world_model.send_bad(msg, "drop/stamp_out_of_range", INPUT)
    with world_model.lock:
        assert len(world_model.latents) == seen, "a frame with a malformed stamp was encoded and published"


def test_a_frame_id_change_restarts_the_context(world_model: Probe) -> None:
    """Frames of another camera (frame_id) on the topic never share a context with the first one's:
    before, a rollout mixed them without a word."""
    for k in range(4):
        world_model.send(T0_S + 800.0 + k * DT_S)  # frame_id "camera": a complete context
    assert world_model.call(rollout_request(np.zeros((1, 2, 2), np.float32), images=False)).success
    before = world_model.counter(INPUT, "reset/frame_id")
    with world_model.lock:
        seen = len(world_model.latents)
    other = numpy_to_image(world_model.frame(), "rgb8", header(round((T0_S + 800.4) * NS_PER_S), "other_camera"))
    world_model._publish_until(other, lambda: len(world_model.latents) > seen, "the other camera's latents")
    world_model.wait_for(lambda: world_model._counter_unlocked(INPUT, "reset/frame_id") > before,
                         "reset/frame_id in /diagnostics")
    answer = world_model.call(rollout_request(np.zeros((1, 2, 2), np.float32), images=False))
    assert not answer.success and answer.message.startswith("no context yet"), answer.message


@pytest.mark.own_process
def test_bad_compressed_images_are_counted_drops(ros, tiny_model: str) -> None:
    from test_image_conversion import corrupted_jpeg, other_codec, png_bomb

    process = start_node("sora_ros.nodes.encoder", "-p", f"model_path:={tiny_model}", "-p", "compressed:=true",
                         "-r", "image/compressed:=/enc_test/image/compressed", "-r", "__node:=enc_test_encoder",
                         *FAST_DIAGNOSTICS)  # a name of its own: no other test's encoder answers for it
    probe = Probe("enc_test_encoder", "/enc_test/image", SIZE)
    bad = [(b"\xff\xd8\xff\xe0 this is no JPEG", "jpeg", "drop/malformed_image"),
           (corrupted_jpeg(), "jpeg", "drop/malformed_image"),
           (png_bomb(20000), "png", "drop/image_too_large"),
           (other_codec("bmp"), "jpeg", "drop/unknown_encoding"),
           (other_codec("webp"), "webp", "drop/unknown_encoding")]
    failure = None
    try:
        for data, image_format, counter in bad:
            msg = CompressedImage(header=header(0, "camera"), format=image_format)
            msg.data = array.array("B", data)
            probe.send_bad(msg, counter, "enc_test_encoder: input")
        assert probe.counter("enc_test_encoder: input", "error/encode") == 0
    except AssertionError as error:
        failure = error
    finally:
        probe.close()
        output = stop(process)
    assert failure is None, f"{failure}; the node said:\n{output}"
    assert "Traceback" not in output and "Corrupt JPEG" not in output, output


def test_compressed_follows_the_remapped_image_topic_as_image_transport_does(ros, tiny_model: str) -> None:
    """`-r image:=/cmp_test/image -p compressed:=true` subscribes /cmp_test/image/compressed (before: the
    unremapped /image/compressed, and the node heard nothing)."""
    import cv2

    process = start_node("sora_ros.nodes.encoder", "-p", f"model_path:={tiny_model}", "-p", "compressed:=true",
                         "-r", "image:=/cmp_test/image", "-r", "__node:=cmp_test_encoder")
    probe = Probe("cmp_test_encoder", "/cmp_test/image", SIZE)
    try:
        ok, jpeg = cv2.imencode(".jpg", probe.frame())
        msg = CompressedImage(header=header(round(T0_S * NS_PER_S), "camera"), format="jpeg")
        msg.data = array.array("B", jpeg.tobytes())
        probe._publish_until(msg, lambda: len(probe.latents) > 0, "latents of a JPEG on /cmp_test/image/compressed")
    finally:
        probe.close()
        output = stop(process)
    assert "Traceback" not in output, output


def test_diagnostics_under_use_sim_time_without_a_clock(ros, tiny_model: str) -> None:
    """use_sim_time with no /clock (not yet, or a bag that ended): /diagnostics still come, and say the
    camera is silent (before, the diagnostics timer ran on the stopped sim clock: nothing came)."""
    process = start_node("sora_ros.nodes.world_model", "-p", f"model_path:={tiny_model}", "-p", "use_sim_time:=true",
                         "-r", "image:=/simtime_test/image", "-r", "__node:=simtime_test", *FAST_DIAGNOSTICS)
    probe = Probe("simtime_test", "/simtime_test/image", SIZE)
    try:
        probe.wait_for(lambda: (s := probe._status_unlocked("simtime_test: input")) is not None
                       and s.message == "no camera frame received yet", "/diagnostics of the node")
    finally:
        probe.close()
        output = stop(process)
    assert "Traceback" not in output, output


def test_encoder_and_predictor_as_two_nodes(ros, tiny_model: str) -> None:
    encoder = start_node("sora_ros.nodes.encoder", "-p", f"model_path:={tiny_model}", "-r", "image:=/split/image")
    predictor = start_node("sora_ros.nodes.predictor", "-p", f"model_path:={tiny_model}",
                           "-r", "latents:=/encoder/latents")
    probe = Probe("encoder", "/split/image", SIZE)
    futures: list[FutureFrames] = []
    probe.node.create_subscription(FutureFrames, "/predictor/futures", probe._store(futures), 10)
    try:
        for i in range(300):  # a streaming camera: the predictor may discover the encoder a few frames late
            probe.send(T0_S + i * DT_S)
            with probe.lock:
                if futures:
                    break
        probe.wait_for(lambda: futures, "/predictor/futures")
        assert int(T0_S) <= futures[-1].header.stamp.sec and futures[-1].horizon == 8
    finally:
        probe.close()
        outputs = stop(encoder) + stop(predictor)
    assert "Traceback" not in outputs, outputs


def test_missing_model_fails_configure_with_the_reason(tmp_path) -> None:
    process = start_node("sora_ros.nodes.world_model", "-p", f"model_path:={tmp_path / 'nowhere'}")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"configure failed: model {tmp_path / 'nowhere'}" in output and "does not exist" in output
