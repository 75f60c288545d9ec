"""Free TCP ports on the loopback interface."""
from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

# How many times a server start is retried on a fresh port when the chosen one was taken
# between free_port() and the server's bind (the race is small but real with parallel tests).
BIND_RETRIES = 3


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_on_free_port(server: Any, attempt: Callable[[], bool], log_tail: Callable[[], str]) -> bool:
    """Start ``server`` (which has ``port`` and ``_fixed_port``) with ``attempt()`` on a free port,
    again on a new one when the chosen port was taken meanwhile (``log_tail`` says "Address
    already in use"). A server that started once keeps its port on a restart: replicas and
    clients point at it. Returns whether it started."""
    for n in range(BIND_RETRIES + 1):
        if not server._fixed_port:
            server.port = free_port()
        if attempt():
            server._fixed_port = True
            return True
        taken = "Address already in use" in log_tail()
        if not taken or server._fixed_port or n == BIND_RETRIES:
            return False
    return False
