"""A lifecycle cleanup while a ~/rollout call is in progress (sora_ros/nodes/predictor.py): the call is
answered over DDS from the model it started with, the cleanup waits for it, and the node lives on.
Before, the call's answer read the unloaded model (AttributeError in the executor: the node died)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402

from live_helpers import rollout_request  # noqa: E402
from sora_ros.core.paths import default_model_dir  # noqa: E402
from sora_ros.core.units import NS_PER_S  # noqa: E402
from sora_ros.nodes.executor import HandOffExecutor  # noqa: E402
from sora_ros.nodes.predictor import EXECUTOR_THREADS  # noqa: E402
from sora_ros.nodes.world_model import WorldModelNode  # noqa: E402
from sora_ros.srv import Rollout  # noqa: E402

NAMESPACE = "/cleanup_test"  # a name of its own: no other test's node answers for this one
TIMEOUT_S = 60.0


def wait_until(condition, what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.01)


def test_cleanup_answers_a_rollout_call_in_progress_and_the_node_lives_on() -> None:
    rclpy.init(args=["--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"model_path:={default_model_dir()}",
                     "-p", "autostart:=false", "-p", "max_context_age_s:=600.0"])
    node = WorldModelNode()
    client_node = rclpy.create_node("cleanup_test_client")
    executor = HandOffExecutor(EXECUTOR_THREADS)
    stop, errors = threading.Event(), []
    entered, release = threading.Event(), threading.Event()

    def spin() -> None:
        while not stop.is_set():
            try:
                executor.spin_once(timeout_sec=0.1)
            except Exception as error:  # a callback's exception: what ends spin_lifecycle, and the node
                errors.append(error)

    spinner = threading.Thread(target=spin)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        executor.add_node(node)
        executor.add_node(client_node)
        spinner.start()
        pipeline = node.pipeline
        rng = np.random.default_rng(0)
        for k in range(pipeline.info.context_frames):  # a context, as the encoder thread adds one
            _fitted, latent = pipeline.encode(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            pipeline.observe(round((10.0 + k * pipeline.info.dt) * NS_PER_S), "camera", latent, time.monotonic())
        what_if = pipeline.what_if

        def held_what_if(*args, **kwargs):  # a long call: still in progress when the cleanup begins
            outcome = what_if(*args, **kwargs)
            entered.set()
            release.wait(TIMEOUT_S)
            return outcome

        pipeline.what_if = held_what_if
        client = client_node.create_client(Rollout, f"{NAMESPACE}/world_model/rollout")
        assert client.wait_for_service(timeout_sec=TIMEOUT_S)
        future = client.call_async(rollout_request(np.zeros((1, 4, 2), np.float32), images=False))
        wait_until(entered.is_set, "the ~/rollout call to start")
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        cleaned = []
        cleanup = threading.Thread(target=lambda: cleaned.append(node.trigger_cleanup()))
        cleanup.start()
        time.sleep(0.5)
        assert cleanup.is_alive(), "the cleanup must wait for the call in progress, not unload the model under it"
        release.set()
        wait_until(future.done, "the call's answer")
        cleanup.join(TIMEOUT_S)
        response = future.result()
        assert response.success, response.message
        assert len(response.futures) == 1 and response.futures[0].horizon == 4
        assert cleaned == [TransitionCallbackReturn.SUCCESS] and node.pipeline is None
        time.sleep(0.3)  # the executor has handed on whatever the callbacks raised
        assert errors == []
        # The node serves again after configure and activate.
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert errors == []
    finally:
        release.set()
        stop.set()
        if spinner.is_alive():
            spinner.join()
        executor.shutdown()
        node.stop_workers()
        node.destroy_node()
        client_node.destroy_node()
        rclpy.try_shutdown()
