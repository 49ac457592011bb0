"""ROS 2 nodes: thin rclpy adapters around the project's rclpy-free cores, and the one
module that builds and reads ROS messages (messages.py).

Rule: imports core/, runtime/, bag/, sim/, sora_ros.msg/srv and numpy, cv2, rclpy, ROS
message packages; no torch, no evaluation/, no harness/. A node converts messages, calls the core, converts back, publishes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any


def _stop_quietly(_signum: int, _frame) -> None:
    """Ctrl-C before a node runs (its modules import, rclpy starts): exit 0 at once, as a node stopped
    while running does; there is nothing to clean up yet. Not an exception: raised inside a C
    extension's import (rclpy's, onnxruntime's) it becomes an ImportError and a traceback, and inside
    an rclpy constructor it leaves a half-made object whose __del__ prints one."""
    os._exit(0)


def _stop_quietly_until_running() -> None:
    """From now until `_interrupt_as_usual`, a Ctrl-C is `_stop_quietly` (Python handles signals in the
    main thread only: elsewhere this changes nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop_quietly)


def _interrupt_as_usual() -> None:
    """Ctrl-C raises KeyboardInterrupt again, as rclpy and the spin loops expect."""
    if signal.getsignal(signal.SIGINT) is _stop_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# `python -m sora_ros.nodes.<exec>` (the harness, launch files, tests): while Python finds the module,
# sys.argv[0] is "-m", and the node module's imports (numpy, rclpy, onnxruntime: seconds) come next.
if sys.argv[:1] == ["-m"]:
    signal.signal(signal.SIGINT, _stop_quietly)

# The node executables the package installs (CMakeLists.txt installs lib/sora_ros/<exec> for each,
# running sora_ros.nodes.<exec>); the only modules of this folder a launch file may start.
EXECUTABLES = ("world_model", "encoder", "predictor", "planner", "sim", "video_camera")
SIGNAL_POLL_S = 0.2  # a node's executor wakes at least this often (wall clock) to notice Ctrl-C


def _ignore_interrupts() -> None:
    """From now on ignore SIGINT and SIGTERM: a Ctrl-C on `ros2 launch` reaches a node twice (from
    the terminal and from the launcher), and a second interrupt inside the clean-up would break it."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


PARAMETER_HINT = " (README, \"Nodes and the demo\", lists each node's parameters)"


def _log_refusal(make_node: Callable[[], Any], message: str, error: BaseException | None = None) -> None:
    """One error line for what ends a node before it runs (a bad parameter, an unreadable input),
    rather than a traceback: under the node's own logger (its name as remapped, e.g. `[planner]`)
    when `error` was raised inside a node's constructor after rclpy made the node, else under
    `make_node`'s name."""
    import rclpy
    from rclpy.node import Node

    made = [frame.f_locals.get("self") for frame, _ in traceback.walk_tb(error.__traceback__)] if error else []
    node = next((candidate for candidate in made if isinstance(candidate, Node)), None)
    try:
        logger = node.get_logger() if node is not None else None
    except Exception:  # the error came from rclpy's own Node.__init__: no handle yet
        logger = None
    (logger or rclpy.logging.get_logger(getattr(make_node, "__name__", "node"))).error(message)


def _init(make_node: Callable[[], Any], args: list[str] | None, **options) -> bool:
    """rclpy.init; False, after one error line, when rcl refuses the command line (e.g. a `-p`
    value that is not YAML, `-p x:=[1,`), which it reports as a bare RCLError."""
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation

    try:
        rclpy.init(args=args, **options)
    except rclpy_implementation.RCLError as error:
        _log_refusal(make_node, f"cannot start: {error}{PARAMETER_HINT}")
        return False
    return True


def spin(make_node: Callable[[], Any], args: list[str] | None = None,
         fatal: tuple[type[Exception], ...] = ()) -> int:  # fmt: skip
    """The standard node `main`: init, build the node, spin until Ctrl-C or shutdown, clean up.

    Args:
        make_node: builds the node (after rclpy.init).
        args: command-line arguments for rclpy (None: sys.argv).
        fatal: exceptions that end the node with a logged error and exit code 1 (besides a
            parameter of the wrong type or out of its range, always).

    Returns:
        The process exit code: 0, or 1 after one of `fatal`.
    """
    import rclpy  # here, not at import: `sora-ros --help` must not need ROS
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    _stop_quietly_until_running()
    if not _init(make_node, args):
        return 1
    node = executor = None
    try:
        executor = SingleThreadedExecutor()  # before the node, while a Ctrl-C still exits at once
        _interrupt_as_usual()
        node = make_node()
        executor.add_node(node)
        # Not rclpy.spin(): under load a SIGTERM sometimes shuts the context down without waking a
        # wait that has no timeout (seen in 7 of 60 runs of tests/test_interfaces_dds.py with both
        # cores busy: the node never exited); a wall-clock timeout notices the shutdown.
        while executor.context.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except ParameterException as error:
        _log_refusal(make_node, f"{error}{PARAMETER_HINT}", error)
        return 1
    except fatal as error:
        _log_refusal(make_node, str(error), error)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # Ctrl-C while the node was being built: rclpy's handler shut the context down under it
        # (e.g. "rcl node's context is invalid" from create_publisher); that is a stop, not a failure.
    finally:
        _ignore_interrupts()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def spin_lifecycle(make_node: Callable[[], Any], args: list[str] | None = None, threads: int = 2) -> int:
    """The standard `main` of a lifecycle node with worker threads (the world-model node).

    Ctrl-C and SIGTERM end the spin loop (before it starts, they raise KeyboardInterrupt; once,
    later ones are ignored) rather than going through rclpy's handler, which would invalidate the
    context while worker threads still publish: the node's `stop_workers()` runs first, then the
    executor and rclpy shut down. With the node's `autostart` parameter
    it configures and activates itself. `threads`: the executor's worker threads
    (`sora_ros.nodes.executor.HandOffExecutor`, rclpy's MultiThreadedExecutor without its busy loop).

    Returns:
        The process exit code: 0, or 1 when a parameter has the wrong type or is out of its range,
        or autostart is on and configure failed (logged).
    """
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.signals import SignalHandlerOptions

    from sora_ros.nodes.executor import HandOffExecutor

    spinning, stopping = threading.Event(), threading.Event()

    def interrupt(_signum: int, _frame) -> None:
        _ignore_interrupts()  # once: a second one inside the clean-up would leave threads running
        if not spinning.is_set():
            raise KeyboardInterrupt
        # While spinning, the loop ends within SIGNAL_POLL_S: raised there, the exception could land
        # inside rclpy itself (a Task half made, whose __del__ then prints a traceback at exit).
        stopping.set()

    _stop_quietly_until_running()
    if not _init(make_node, args, signal_handler_options=SignalHandlerOptions.NO):
        return 1
    node = executor = None
    try:
        executor = HandOffExecutor(threads)  # before the node, while a Ctrl-C still exits at once
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, interrupt)
        node = make_node()
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("activate failed: the lines above say why")
                return 1
        # Not executor.spin(): Python runs the Ctrl-C handler only when the wait returns, and under
        # use_sim_time with no /clock no timer ever ends it; a wall-clock timeout does.
        spinning.set()
        while executor.context.ok() and not stopping.is_set():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except ParameterException as error:
        _log_refusal(make_node, f"{error}{PARAMETER_HINT}", error)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop_workers()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
