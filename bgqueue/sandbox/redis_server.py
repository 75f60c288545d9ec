"""A throw-away redis-server on the loopback interface (no persistence)."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from bgqueue.model.errors import BgqueueError
from bgqueue.sandbox.binaries import ServerProcess, find_binary, pid_running, stop_pid, tail
from bgqueue.sandbox.ports import start_on_free_port


class ServerStartError(BgqueueError):
    """A sandbox server did not become ready; the message carries the end of its log."""


def redis_process(port: int, workdir: Path) -> ServerProcess:
    """How a redis-server started by ``RedisServer`` shows in /proc: it retitles itself
    "redis-server 127.0.0.1:PORT" and runs in its workdir (its --dir)."""
    return ServerProcess(find_binary("redis-server"), (f"127.0.0.1:{port}",), cwd=str(workdir), retitled=True)


class RedisServer:
    """One redis-server process. Non-detached: a child we wait() on; detached: its own session."""

    def __init__(self, workdir: Path, port: int | None = None, detach: bool = False):
        self.workdir = Path(workdir)
        self.port = port
        self.detach = detach
        self._fixed_port = port is not None
        self._proc: subprocess.Popen | None = None
        self.pid: int | None = None

    @property
    def url(self) -> str:
        """The Redis URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def logfile(self) -> Path:
        """The server's log file (in the workdir)."""
        return self.workdir / "redis.log"

    def start(self, timeout: float = 5) -> RedisServer:
        """Start the server and return once it answers PING; retry on a new port if the port was taken."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if start_on_free_port(self, lambda: self._try_start(timeout), lambda: tail(self.logfile, 30)):
            return self
        raise ServerStartError(
            f"redis-server on port {self.port} did not start within {timeout}s; end of {self.logfile}:\n"
            + tail(self.logfile)
        )

    def _try_start(self, timeout: float) -> bool:
        cmd = [
            find_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--logfile", str(self.logfile), "--daemonize", "no",
        ]
        self.logfile.unlink(missing_ok=True)  # so the bind check reads this attempt only
        self._proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=self.detach,
        )
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.005)
        self.stop()
        return False

    def ping(self) -> bool:
        """True when the server answers PING (raw RESP, so no client library is needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        """True while the process is alive (a zombie is not)."""
        return pid_running(self.pid)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``). Safe to call twice."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        elif self.pid is not None:
            stop_pid(self.pid, timeout, expect=redis_process(self.port, self.workdir))
