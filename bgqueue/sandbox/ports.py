"""Free TCP ports on the loopback interface."""
from __future__ import annotations

import socket

# How many times a server start is retried on a fresh port when the chosen one was taken
# between free_port() and the server's bind (the race is small but real with parallel tests).
BIND_RETRIES = 3


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
