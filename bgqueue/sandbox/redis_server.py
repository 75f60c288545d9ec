"""A throw-away redis-server on the loopback interface (no persistence).

Optionally with a password for the default user (``requirepass``), ACL users (``acl``: lines as
in an ACL file, ``user NAME on >password ~keys &channels +commands``) and TLS (``tls``: the
server's certificate, key and the CA that signed it; clients then use ``rediss://`` and verify
it). Secrets go to a 0600 config file in the workdir, never on the command line (``ps`` shows it).
"""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bgqueue.model.errors import BgqueueError
from bgqueue.sandbox.binaries import ServerProcess, find_binary, pid_running, stop_pid, tail
from bgqueue.sandbox.ports import start_on_free_port


class ServerStartError(BgqueueError):
    """A sandbox server did not become ready; the message carries the end of its log."""


@dataclass(frozen=True)
class RedisTls:
    """The server's certificate and key, and the CA file clients verify it with."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def redis_process(port: int, workdir: Path) -> ServerProcess:
    """How a redis-server started by ``RedisServer`` shows in /proc: it retitles itself
    "redis-server 127.0.0.1:PORT" and runs in its workdir (its --dir)."""
    return ServerProcess(find_binary("redis-server"), (f"127.0.0.1:{port}",), cwd=str(workdir), retitled=True)


class RedisServer:
    """One redis-server process. Non-detached: a child we wait() on; detached: its own session.

    ``bind``: the addresses it listens on (loopback; the hosts harness adds an address its network
    namespaces reach); ``host``, the one clients are given, is the last of them."""

    bind: tuple[str, ...] = ("127.0.0.1",)

    @property
    def host(self) -> str:
        return self.bind[-1]

    def __init__(self, workdir: Path, port: int | None = None, detach: bool = False, *,
                 requirepass: str | None = None, acl: list[str] | None = None, tls: RedisTls | None = None):
        self.workdir = Path(workdir)
        self.port = port
        self.detach = detach
        self.requirepass, self.acl, self.tls = requirepass, list(acl or []), tls
        self._fixed_port = port is not None
        self._proc: subprocess.Popen | None = None
        self.pid: int | None = None

    @property
    def url(self) -> str:
        """The Redis URL of database 0 (as the default user, with its password if it has one)."""
        return self.url_for(None, self.requirepass)

    def url_for(self, user: str | None, password: str | None, db: int = 0) -> str:
        """The URL of database ``db`` as ``user`` (None: the default user): rediss:// with the CA
        to verify the server by when the server speaks TLS."""
        auth = ""
        if password is not None:
            auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
        if self.tls is None:
            return f"redis://{auth}{self.host}:{self.port}/{db}"
        return (f"rediss://{auth}127.0.0.1:{self.port}/{db}?ssl_cert_reqs=required"
                f"&ssl_ca_certs={quote(str(self.tls.ca_file), safe='/')}")

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

    def _config_file(self) -> list[str]:
        """The secrets' config file (0600) as the first argument, when there are secrets."""
        if self.requirepass is None and not self.acl:
            return []
        path = self.workdir / "redis-auth.conf"
        lines = ([f"requirepass {self.requirepass}"] if self.requirepass is not None else []) + self.acl
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return [str(path)]

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert_file),
                "--tls-key-file", str(self.tls.key_file), "--tls-ca-cert-file", str(self.tls.ca_file),
                "--tls-auth-clients", "no"]

    def _try_start(self, timeout: float) -> bool:
        cmd = [
            find_binary("redis-server"), *self._config_file(), *self._listen_args(), "--bind", *self.bind,
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
        """True when the server answers PING (raw RESP, so no client library is needed); as the
        default user when it has a password, over verified TLS when the server speaks TLS."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                s = raw
                if self.tls is not None:
                    ctx = ssl.create_default_context(cafile=str(self.tls.ca_file))
                    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                request = b"PING\r\n"
                if self.requirepass is not None:
                    request = _command("AUTH", self.requirepass) + request
                s.sendall(request)
                reply = b""
                while reply.count(b"\r\n") < (2 if self.requirepass is not None else 1):
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    reply += chunk
                return reply.rstrip(b"\r\n").endswith(b"+PONG")
        except (OSError, ssl.SSLError):
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


def _command(*parts: str) -> bytes:
    """One command as a RESP array (a password may hold any byte)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)
