"""HandOffExecutor: rclpy's MultiThreadedExecutor without its busy loop (sora_ros/nodes/executor.py)."""

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from sora_ros.nodes.executor import HandOffExecutor, _HandOffPool  # noqa: E402
from std_msgs.msg import String  # noqa: E402

MESSAGES = 50


def test_pool_submit_returns_once_the_call_has_started():
    started = []
    with _HandOffPool(2) as pool:
        for i in range(20):
            pool.submit(started.append, i)
            assert started == list(range(i + 1))  # a plain ThreadPoolExecutor returns before the worker runs


def test_spin_thread_waits_between_messages_instead_of_looping():
    """rclpy 9.1's MultiThreadedExecutor loops ~350 times per message here (19,501 for 50); one
    wait per message plus the 0.2 s timeouts is what an idle spin thread should cost."""
    rclpy.init()
    node = rclpy.create_node("hand_off_test")
    publisher_node = rclpy.create_node("hand_off_test_publisher")
    received = []
    node.create_subscription(String, "hand_off_test", lambda msg: received.append(msg.data), MESSAGES)
    publisher = publisher_node.create_publisher(String, "hand_off_test", MESSAGES)
    executor = HandOffExecutor(3)
    executor.add_node(node)
    waits = [0]
    wait_for_ready_callbacks = executor.wait_for_ready_callbacks

    def counted(*args, **kwargs):
        waits[0] += 1
        return wait_for_ready_callbacks(*args, **kwargs)

    executor.wait_for_ready_callbacks = counted
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.2)

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        deadline = time.monotonic() + 10.0
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        waits[0] = 0
        for i in range(MESSAGES):
            publisher.publish(String(data=str(i)))
            sum(range(20_000))  # this thread holds the GIL for a while, as a node's worker threads do
            time.sleep(0.01)
        while len(received) < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        loops = waits[0]
    finally:
        stop.set()
        spinner.join()
        executor.shutdown()
        node.destroy_node()
        publisher_node.destroy_node()
        rclpy.try_shutdown()
    assert received == [str(i) for i in range(MESSAGES)]
    assert loops <= 2 * MESSAGES + 20, f"{loops} executor loops for {MESSAGES} messages"
