"""A throw-away HAProxy in front of sandbox mariadbd servers, driven through its runtime API.

``haproxy -f <cfg> -db`` runs in the foreground as our child (no daemon, no master process).
Each instance writes its own config in its workdir: a runtime API ``stats socket`` on a free
loopback TCP port and/or a unix socket (``mode 600 level admin``), and one loopback TCP
frontend per backend.

Health checks default to ``option mysql-check user <CHECK_USER> post-41``: a complete MySQL
login (4.1+ protocol) then QUIT, so HAProxy only calls a server up when mariadbd really
accepts logins. A frozen mariadbd (SIGSTOP, a stuck server) still completes TCP handshakes
from the kernel's backlog and passes a plain tcp check, while the login times out. A
``mysql-check`` without a user is worse than either: mariadbd counts every check as an
aborted connection and logs a warning for each (five a second per server at inter 200ms).
The login needs a password-less, privilege-less account on every server (``create_check_user``);
``check="tcp"`` needs no account.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bgqueue.adapters.routing.haproxy import HAProxyError, HAProxyRuntime
from bgqueue.sandbox.binaries import find_binary, pid_running, tail
from bgqueue.sandbox.ports import BIND_RETRIES, free_port
from bgqueue.sandbox.redis_server import ServerStartError

CHECK_USER = "bgq_haproxy"
# HAProxy connects to the servers from the loopback address (skip-name-resolve: no 'localhost').
CHECK_USER_HOST = "127.0.0.1"
CHECKS = ("mysql", "tcp", "none")
STATES = ("ready", "drain", "maint")
MAX_SOCKET_PATH = 100  # unix socket paths are limited to 108 bytes


def create_check_user(server, user: str = CHECK_USER, host: str = CHECK_USER_HOST) -> None:
    """Create the mysql-check account (no password, no privilege) on one MariaDBServer.

    Kept out of the binlog: run it on each server of a pair, like the replication user.
    """
    with server.root() as conn:
        cur = conn.cursor()
        cur.execute("SET SESSION sql_log_bin=0")
        cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'{host}'")


@dataclass(frozen=True)
class BackendServer:
    """One ``server`` line: ``state`` is the state HAProxy starts it in."""

    name: str
    host: str
    port: int
    weight: int = 1
    state: str = "ready"  # ready | drain | maint (maint = `disabled` in the config)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"server {self.name!r}: state must be one of {STATES}, not {self.state!r}")
        if not 0 <= self.weight <= 256:
            raise ValueError(f"server {self.name!r}: weight must be 0-256, not {self.weight}")


@dataclass(frozen=True)
class Backend:
    """A TCP backend and the loopback frontend in front of it (named ``fe_<name>``)."""

    name: str
    servers: tuple[BackendServer, ...]
    check: str = "mysql"  # mysql | tcp | none
    balance: str = "roundrobin"

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"backend {self.name!r}: check must be one of {CHECKS}, not {self.check!r}")
        object.__setattr__(self, "servers", tuple(self.servers))


def _endpoint(server) -> tuple[str, int]:
    # A MariaDBServer (host, port attributes) or a (host, port) tuple.
    if isinstance(server, tuple):
        return server[0], int(server[1])
    return server.host, int(server.port)


def writer_backend(blue, green, name: str = "writer", check: str = "mysql") -> Backend:
    """blue ready, green in maintenance: the writer before a switchover."""
    return Backend(name, (BackendServer("blue", *_endpoint(blue)),
                          BackendServer("green", *_endpoint(green), state="maint")), check=check)


def reader_backend(blue, green, blue_weight: int = 90, green_weight: int = 10,
                   name: str = "reader", check: str = "mysql") -> Backend:
    """Both ready, weighted round robin (absolute weights)."""
    return Backend(name, (BackendServer("blue", *_endpoint(blue), weight=blue_weight),
                          BackendServer("green", *_endpoint(green), weight=green_weight)), check=check)


class HAProxyServer:
    """One haproxy process, a child we wait() on.

    ``admin``: "tcp", "unix" or "both" (the runtime API's sockets). ``check_inter_ms`` and
    friends are short so a state change is seen within a few hundred milliseconds.
    ``shutdown_on_down`` adds ``on-marked-down shutdown-sessions``: HAProxy then cuts a server's
    sessions itself when it goes down *or into maintenance*. Off by default, so the sandbox
    behaves like a config without it and the explicit ``shutdown sessions`` of a flip is what
    cuts the old writer's connections.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, backends: Sequence[Backend] | Backend, *, admin: str = "both",
                 check_user: str = CHECK_USER, check_inter_ms: int = 200, rise: int = 2, fall: int = 2,
                 check_timeout_ms: int = 500, connect_timeout_ms: int = 1000, idle_timeout_s: int = 60,
                 shutdown_on_down: bool = False):
        if admin not in ("tcp", "unix", "both"):
            raise ValueError(f"admin must be tcp, unix or both, not {admin!r}")
        self.workdir = Path(workdir)
        self.backends = (backends,) if isinstance(backends, Backend) else tuple(backends)
        names = [b.name for b in self.backends]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"backends need distinct names, got {names}")
        self.admin = admin
        self.check_user = check_user
        self.check_inter_ms = check_inter_ms
        self.rise = rise
        self.fall = fall
        self.check_timeout_ms = check_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.idle_timeout_s = idle_timeout_s
        self.shutdown_on_down = shutdown_on_down
        self.config_file = self.workdir / "haproxy.cfg"
        self.logfile = self.workdir / "haproxy.log"
        self.admin_port: int | None = None
        self.ports: dict[str, int] = {}  # backend name -> its frontend port
        self._fixed_ports = False  # after a first start: a restart keeps them (clients point at them)
        self._proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.ready_after_s: float | None = None  # last start: Popen to runtime API + first checks done
        self._socket_dir: Path | None = None
        sock = self.workdir / "haproxy.sock"
        if len(str(sock)) > MAX_SOCKET_PATH:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="bgq-haproxy-"))
            sock = self._socket_dir / "haproxy.sock"
        self.admin_socket: Path | None = sock if admin in ("unix", "both") else None

    # --- addresses ------------------------------------------------------------------------

    @property
    def admin_tcp_address(self) -> str | None:
        """``127.0.0.1:PORT`` of the TCP runtime API socket (None without one)."""
        return f"{self.host}:{self.admin_port}" if self.admin_port else None

    @property
    def admin_unix_address(self) -> str | None:
        """``unix:/path`` of the unix runtime API socket (None without one)."""
        return f"unix:{self.admin_socket}" if self.admin_socket else None

    @property
    def admin_address(self) -> str:
        """The unix socket when there is one, else the TCP one."""
        return self.admin_unix_address or self.admin_tcp_address

    def frontend_port(self, backend: str = "writer") -> int:
        """The loopback port of the frontend in front of ``backend``."""
        return self.ports[backend]

    def runtime(self, address: str | None = None) -> HAProxyRuntime:
        """A runtime API client (on ``admin_address`` unless told)."""
        return HAProxyRuntime(address or self.admin_address)

    # --- config ---------------------------------------------------------------------------

    def render_config(self) -> str:
        """The config for the current ports."""
        g = [
            "global",
            "    maxconn 1024",
            "    nbthread 1",
            # -db sends this to our stderr (the log file): state changes and alerts only.
            "    log stderr format short local0 notice",
            "    stats timeout 10s",
        ]
        if self.admin_port:
            g.append(f"    stats socket ipv4@{self.host}:{self.admin_port} level admin")
        if self.admin_socket:
            g.append(f"    stats socket {self.admin_socket} mode 600 level admin")
        d = [
            "defaults",
            "    mode tcp",
            "    log global",
            "    option dontlognull",
            f"    timeout connect {self.connect_timeout_ms}ms",
            f"    timeout client {self.idle_timeout_s}s",
            f"    timeout server {self.idle_timeout_s}s",
            f"    timeout check {self.check_timeout_ms}ms",
            # Another server if the chosen one refuses the connect (it went down between checks).
            "    retries 2",
            "    option redispatch",
        ]
        parts = ["\n".join(g), "\n".join(d)]
        for b in self.backends:
            lines = [f"backend {b.name}", f"    balance {b.balance}"]
            if b.check == "mysql":
                lines.append(f"    option mysql-check user {self.check_user} post-41")
            if b.check != "none":
                lines.append(
                    f"    default-server check inter {self.check_inter_ms}ms fastinter {self.check_inter_ms}ms "
                    f"downinter {self.check_inter_ms}ms rise {self.rise} fall {self.fall}"
                    + (" on-marked-down shutdown-sessions" if self.shutdown_on_down else "")
                )
            for s in b.servers:
                line = f"    server {s.name} {s.host}:{s.port} weight {s.weight}"
                if s.state == "maint":
                    line += " disabled"
                lines.append(line)
            parts.append("\n".join(lines))
            parts.append(f"frontend fe_{b.name}\n    bind {self.host}:{self.ports[b.name]}\n"
                         f"    default_backend {b.name}")
        return "\n\n".join(parts) + "\n"

    # --- process --------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> HAProxyServer:
        """Start haproxy; return once the runtime API answers and every checked server that is not
        in maintenance has had its first check. Retries on fresh ports when one was taken (first
        start only: a restart keeps the ports)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.admin_socket is not None:
            self.admin_socket.parent.mkdir(parents=True, exist_ok=True)
        binary = find_binary("haproxy")
        for attempt in range(BIND_RETRIES + 1):
            if not self._fixed_ports:
                self._pick_ports()
            self.config_file.write_text(self.render_config())
            self.logfile.unlink(missing_ok=True)  # so the bind check reads this attempt only
            if self.admin_socket is not None:
                self.admin_socket.unlink(missing_ok=True)  # a stale one could answer for another process
            if self._try_start(binary, timeout):
                self._fixed_ports = True
                return self
            taken = "Address already in use" in tail(self.logfile, 30)
            if not taken or self._fixed_ports or attempt == BIND_RETRIES:
                break
        raise ServerStartError(
            f"haproxy (config {self.config_file}, frontends {self.ports}, admin {self.admin_address}) did not "
            f"become ready within {timeout}s; end of {self.logfile}:\n{tail(self.logfile)}"
        )

    def _pick_ports(self) -> None:
        taken: set[int] = set()

        def fresh() -> int:
            while True:
                p = free_port()
                if p not in taken:
                    taken.add(p)
                    return p

        self.admin_port = fresh() if self.admin in ("tcp", "both") else None
        self.ports = {b.name: fresh() for b in self.backends}

    def _try_start(self, binary: str, timeout: float) -> bool:
        t0 = time.monotonic()
        with open(self.logfile, "ab") as log:
            self._proc = subprocess.Popen(
                [binary, "-f", str(self.config_file), "-db"], cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        self.pid = self._proc.pid
        rt = self.runtime()
        deadline = t0 + timeout
        drained = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                # Our process answering, not a leftover one on the same socket path.
                if not self._answers_as(rt, self._proc.pid):
                    time.sleep(0.005)
                    continue
                if not drained:  # the config has no keyword for starting in drain
                    for b in self.backends:
                        for s in b.servers:
                            if s.state == "drain":
                                rt.set_state(b.name, s.name, "drain")
                    drained = True
                if self._first_checks_done(rt):
                    self.ready_after_s = time.monotonic() - t0
                    return True
            except HAProxyError:
                pass
            time.sleep(0.005)
        self.stop()
        return False

    @staticmethod
    def _answers_as(rt: HAProxyRuntime, pid: int) -> bool:
        for line in rt.command("show info").splitlines():
            if line.startswith("Pid:"):
                return line.split(":", 1)[1].strip() == str(pid)
        return False

    def _first_checks_done(self, rt: HAProxyRuntime) -> bool:
        for s in rt.show_servers_state():
            if s.has_check and not s.check_paused and s.check_status in ("INI", "START", "UNK"):
                return False
        return True

    @property
    def running(self) -> bool:
        """True while the process is alive (a zombie is not)."""
        return pid_running(self.pid)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (HAProxy's hard stop) and wait; SIGKILL after ``timeout``. Safe to call twice."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.admin_socket is not None:
            self.admin_socket.unlink(missing_ok=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"HAProxyServer(frontends={self.ports}, admin={self.admin_address!r}, pid={self.pid})"

