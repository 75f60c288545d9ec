"""A man in the middle for tests: a loopback TCP relay in front of a real server that records every
byte the client sends. It lets a test prove what reached the wire (a password in clear text, say),
which no server-side log can."""
from __future__ import annotations

import socket
import threading


class Wiretap:
    """Listens on 127.0.0.1:``port``; each accepted connection is relayed to ``upstream``."""

    def __init__(self, upstream: tuple[str, int] | None):
        self.upstream = upstream  # None: accept and record, never answer (a dead end)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.from_client = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accept = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Wiretap:
        self._accept.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._accept.join(5)
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def captured(self) -> bytes:
        with self._lock:
            return bytes(self.from_client)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._sockets.append(client)
            if self.upstream is None:
                self._spawn(self._pump, client, None, True)
                continue
            server = socket.create_connection(self.upstream, timeout=5)
            self._sockets.append(server)
            self._spawn(self._pump, client, server, True)
            self._spawn(self._pump, server, client, False)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _pump(self, src: socket.socket, out: socket.socket | None, record: bool) -> None:
        """Copy src → out (None: nowhere); ``record``: these bytes come from the client."""
        src.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if record:
                with self._lock:
                    self.from_client.extend(data)
            if out is not None:
                try:
                    out.sendall(data)
                except OSError:
                    break
        for s in (src, out):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
