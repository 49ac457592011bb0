"""One way to call a ROS service from a process whose executor spins elsewhere.

A client that has just discovered a service can lose the first response: the client sees the
match before the server's response writer has matched the client's reader, and DDS drops a
response sent in that window (see ros2/rmw_fastrtps#392 and ros2/ros2#1253). The call is
resent after `attempt_s`; calls here are idempotent (a seeded rollout, a state query)."""

from __future__ import annotations

import time


class ServiceTimeout(RuntimeError):
    """No response came within the time allowed."""


def call(client, request, timeout_s: float, attempt_s: float = 10.0):
    """The first response to `request`, resent every `attempt_s` seconds until `timeout_s`.

    Needs an executor spinning the client's node in another thread. Raises ServiceTimeout
    when the service never appears or never answers."""
    deadline = time.monotonic() + timeout_s
    if not client.wait_for_service(timeout_sec=timeout_s):
        raise ServiceTimeout(f"{client.srv_name} never appeared within {timeout_s:g} s")
    futures = []
    while time.monotonic() < deadline:
        futures.append(client.call_async(request))
        resend_at = min(deadline, time.monotonic() + attempt_s)
        while time.monotonic() < resend_at:
            for future in futures:
                if future.done():
                    for other in futures:
                        if other is not future:
                            client.remove_pending_request(other)
                    return future.result()
            time.sleep(0.005)
    raise ServiceTimeout(f"{client.srv_name} did not answer within {timeout_s:g} s ({len(futures)} tries)")
