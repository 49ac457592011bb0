"""`sora-ros view`: the camera and the world model's outputs in the Foxglove app, with no ROS
install on the viewing side.

An rclpy node subscribes (best effort, so it matches any publisher and never slows one down)
to the camera, `~/predicted/image`, `~/comparison/image`, `~/futures` and `/diagnostics`, and
the Foxglove SDK's WebSocket server (foxglove-sdk on PyPI) serves them to the Foxglove app
(`ws://localhost:8765`, layout `config/foxglove_layout.json`). Channels:

    <camera topic>                       foxglove.RawImage (or CompressedImage)
    <world_model>/predicted/image        foxglove.RawImage: the frame predicted for the latest real one
    <world_model>/comparison/image       foxglove.RawImage: real | predicted | error
    <world_model>/futures/h<k>           foxglove.RawImage: frame k of the latest rollout, per horizon
    <world_model>/futures/stats          JSON: per-frame uncertainty, actions, sampler steps, latency (ms)
    /diagnostics                         JSON: each status with its level, message and values
"""

from __future__ import annotations

from sora_ros.core.units import NS_PER_S

DEFAULT_PORT = 8765
HORIZONS = (1, 2, 4, 8)
SPIN_TIMEOUT_S = 0.2


def _timestamp(header):
    import foxglove.messages as fm

    return fm.Timestamp(sec=header.stamp.sec, nsec=header.stamp.nanosec)


def _raw_image(msg):
    """A sensor_msgs/Image as a foxglove.RawImage (the pixels copied once)."""
    import foxglove.messages as fm

    return fm.RawImage(timestamp=_timestamp(msg.header), frame_id=msg.header.frame_id, width=msg.width,
                       height=msg.height, encoding=msg.encoding, step=msg.step, data=bytes(msg.data))  # fmt: skip


class FoxgloveView:
    """Subscriptions on `node` that forward to Foxglove channels of the running server."""

    def __init__(self, node, image_topic: str, world_model: str = "/world_model", compressed: bool = False) -> None:
        """Args:
        node: the rclpy node that subscribes.
        image_topic: the camera (sensor_msgs/Image; with `compressed`, <image_topic>/compressed).
        world_model: the world model node's full name, whose `~/` topics are shown.
        """
        import foxglove
        from diagnostic_msgs.msg import DiagnosticArray
        from foxglove.channels import CompressedImageChannel, RawImageChannel
        from rclpy.qos import qos_profile_sensor_data as best_effort
        from sensor_msgs.msg import CompressedImage, Image

        from sora_ros.msg import FutureFrames

        wm = world_model.rstrip("/")
        if compressed:
            camera = CompressedImageChannel(f"{image_topic}/compressed")
            node.create_subscription(CompressedImage, f"{image_topic}/compressed", lambda msg: camera.log(
                foxglove.messages.CompressedImage(timestamp=_timestamp(msg.header), frame_id=msg.header.frame_id,
                                                  format=msg.format, data=bytes(msg.data))), best_effort)  # fmt: skip
        else:
            camera = RawImageChannel(image_topic)
            node.create_subscription(Image, image_topic, lambda msg: camera.log(_raw_image(msg)), best_effort)
        for name in ("predicted/image", "comparison/image"):
            channel = RawImageChannel(f"{wm}/{name}")
            node.create_subscription(Image, f"{wm}/{name}", lambda msg, c=channel: c.log(_raw_image(msg)), best_effort)
        self._horizons = {h: RawImageChannel(f"{wm}/futures/h{h}") for h in HORIZONS}
        self._stats = foxglove.Channel(f"{wm}/futures/stats", message_encoding="json")
        self._diagnostics = foxglove.Channel("/diagnostics", message_encoding="json")
        node.create_subscription(FutureFrames, f"{wm}/futures", self._on_futures, best_effort)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, best_effort)

    def _on_futures(self, msg) -> None:
        for h, channel in self._horizons.items():
            if h <= len(msg.frames):
                channel.log(_raw_image(msg.frames[h - 1]))
        self._stats.log({
            "stamp_s": msg.header.stamp.sec + msg.header.stamp.nanosec / NS_PER_S,
            "uncertainty": list(msg.uncertainty), "actions": list(msg.actions), "action_names": list(msg.action_names),
            "sampler_steps": msg.sampler_steps, "samples": msg.samples,
            "latency_ms": (msg.latency.sec * NS_PER_S + msg.latency.nanosec) / 1e6,
        })  # fmt: skip

    def _on_diagnostics(self, msg) -> None:
        self._diagnostics.log({"status": [
            {"name": s.name, "level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
             "message": s.message, "values": {kv.key: kv.value for kv in s.values}} for s in msg.status]})  # fmt: skip


def serve(image_topic: str, world_model: str, compressed: bool, host: str, port: int) -> int:
    """Run the view until Ctrl-C or SIGTERM: start the WebSocket server, spin the node.

    Returns:
        The exit code: 0, or 1 when the server cannot listen on host:port.
    """
    import signal
    import sys

    import foxglove
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    def interrupt(_signum: int, _frame) -> None:
        raise KeyboardInterrupt

    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, interrupt)
    node = rclpy.create_node("foxglove_view")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    server = None
    try:
        # Every channel exists before the server starts, so a client that connects at once is
        # advertised the whole, final set (subscribing while channels appear raced in the SDK).
        view = FoxgloveView(node, image_topic, world_model, compressed)  # noqa: F841 (its channels must live)
        try:
            server = foxglove.start_server(name="sora_ros", host=host, port=port)
        except RuntimeError as error:
            print(f"sora-ros view: cannot serve on {host}:{port}: {error}", file=sys.stderr)
            return 1
        print(f"Foxglove: open ws://{'localhost' if host in ('0.0.0.0', '127.0.0.1') else host}:{server.port} "
              f"(camera {image_topic}, world model {world_model})", flush=True)  # fmt: skip
        while True:  # in short waits, so that Ctrl-C and SIGTERM get through
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        if server is not None:
            server.stop()
    return 0
