"""A throw-away mariadbd instance: a copy of a cached template datadir plus its own my.cnf."""
from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pymysql

from bgqueue.sandbox.binaries import ServerProcess, find_binary, pid_running, stop_pid, tail
from bgqueue.sandbox.ports import start_on_free_port
from bgqueue.sandbox.redis_server import ServerStartError
from bgqueue.sandbox.tls import ServerCertificate

# The server must be started with the same redo log size the template was made with
# (a small one: the template is copied per instance, so every megabyte is copied each time).
INNODB_LOG_FILE_SIZE = "8M"
# Unix socket paths are limited to 108 bytes; longer workdirs get a short socket dir in /tmp.
MAX_SOCKET_PATH = 100

# Bump when _install_db changes what it makes, so caches made by older code are not reused.
TEMPLATE_LAYOUT = 1

install_db_runs = 0  # how many times this process ran mariadb-install-db (tests check the cache)


def socket_user() -> str:
    """The OS user whose unix_socket login is the sandbox's root account."""
    return pwd.getpwuid(os.geteuid()).pw_name


def mariadbd_version() -> str:
    """The mariadbd version string, e.g. '10.11.19-MariaDB-0+deb12u1' (the template cache key)."""
    return _version_of(find_binary("mariadbd"))


@functools.cache  # every instance start asks; running the binary costs ~20 ms
def _version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Ver\s+(\S+)", out)
    return m.group(1) if m else "unknown"


def default_cache_dir() -> Path:
    """$BGQUEUE_HOME/cache, else ~/.bgqueue/cache."""
    home = os.environ.get("BGQUEUE_HOME")
    return (Path(home) if home else Path.home() / ".bgqueue") / "cache"


def template_datadir(cache_dir: Path | None = None) -> Path:
    """Return a freshly installed datadir for this mariadbd version, making it once per cache.

    Built in a temporary directory then renamed into place, so parallel processes never see a
    half-made template; the loser of a race discards its copy.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    final = cache / f"mariadb-{mariadbd_version()}-{socket_user()}-v{TEMPLATE_LAYOUT}"
    if (final / "data" / "mysql").is_dir():
        return final / "data"
    cache.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        _install_db(build)
        try:
            os.rename(build, final)
        except OSError:
            if not (final / "data" / "mysql").is_dir():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final / "data"


def _install_db(build: Path) -> None:
    global install_db_runs
    cnf = build / "bootstrap.cnf"
    # A private tmpdir: parallel bootstraps sharing /tmp collide on their temporary table names.
    (build / "tmp").mkdir()
    cnf.write_text(
        f"[mariadbd]\ninnodb_log_file_size={INNODB_LOG_FILE_SIZE}\ninnodb_buffer_pool_size=16M\n"
        f"performance_schema=OFF\ntmpdir={build / 'tmp'}\n"
    )
    user = socket_user()
    cmd = [
        find_binary("mariadb-install-db"), f"--defaults-file={cnf}", f"--datadir={build / 'data'}",
        "--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve",
        f"--user={user}", f"--auth-root-socket-user={user}",
    ]
    install_db_runs += 1
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise ServerStartError(f"mariadb-install-db failed ({r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")


def mariadbd_process(cnf: Path, datadir: Path) -> ServerProcess:
    """How a mariadbd started by ``MariaDBServer`` shows in /proc (it runs in its datadir)."""
    return ServerProcess(find_binary("mariadbd"), (f"--defaults-file={cnf}",), cwd=str(datadir))


class MariaDBServer:
    """One mariadbd with binlog + GTID settings suited to blue/green tests.

    ``sandbox.mysql.MySQLServer`` is the Oracle MySQL twin (same interface, ``flavour`` "mysql").

    ``tls``: the server's certificate (from ``sandbox.tls``); without it the server offers no TLS
    at all (MariaDB 10.11 makes no certificate of its own). ``options``: extra my.cnf lines.
    """

    host = "127.0.0.1"
    flavour = "mariadb"
    daemon = "mariadbd"  # for messages

    def __init__(self, workdir: Path, name: str, server_id: int, port: int | None = None,
                 read_only: bool = False, detach: bool = False, cache_dir: Path | None = None,
                 tls: ServerCertificate | None = None, options: Sequence[str] = ()):
        self.workdir = Path(workdir)
        self.name = name
        self.server_id = server_id
        self.port = port
        self.read_only = read_only
        self.detach = detach
        self.cache_dir = cache_dir
        self.tls = tls
        self.options = tuple(options)
        self._fixed_port = port is not None
        self._proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.datadir = self.workdir / "data"
        self.cnf = self.workdir / "my.cnf"
        self.error_log = self.workdir / "error.log"
        sock = self.workdir / "mysqld.sock"
        self._socket_dir: Path | None = None
        if len(str(sock)) > MAX_SOCKET_PATH:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="bgq-"))
            sock = self._socket_dir / "mysqld.sock"
        self.socket = sock

    def root(self, **kw) -> pymysql.connections.Connection:
        """A new autocommit connection as the socket-authenticated superuser (over the unix socket)."""
        return pymysql.connect(unix_socket=str(self.socket), user=socket_user(), autocommit=True,
                               ssl_disabled=True, connect_timeout=kw.pop("connect_timeout", 5), **kw)

    def _write_cnf(self) -> None:
        lines = [
            "[mariadbd]", f"datadir={self.datadir}", "bind-address=127.0.0.1", f"port={self.port}",
            f"socket={self.socket}", f"pid-file={self.workdir / 'mariadbd.pid'}", f"log-error={self.error_log}",
            f"server_id={self.server_id}", "log_bin=binlog", "relay_log=relay-bin", "log_slave_updates=1",
            "binlog_format=ROW", "binlog_row_image=FULL", "binlog_row_metadata=FULL",
            "gtid_strict_mode=1", "gtid_domain_id=0", "innodb_buffer_pool_size=16M",
            f"innodb_log_file_size={INNODB_LOG_FILE_SIZE}", "skip-name-resolve", "performance_schema=OFF",
            # Own tmpdir: instances sharing /tmp can collide on temporary table file names.
            f"tmpdir={self.workdir / 'tmp'}",
            "max_connections=200", "innodb_temp_data_file_path=ibtmp1:1M:autoextend",
            # The default 128M Aria and MyISAM caches cost ~30 MB RSS each idle server; a sandbox
            # uses Aria only for internal temporary tables and MyISAM not at all.
            "aria_pagecache_buffer_size=8M", "key_buffer_size=1M", "innodb_log_buffer_size=2M",
            # A sandbox does not need durability; these make commits cheap on slow disks.
            "innodb_flush_log_at_trx_commit=2", "sync_binlog=0",
        ]
        if self.read_only:
            lines.append("read_only=1")
        if self.tls is not None:
            lines += [f"ssl_cert={self.tls.cert}", f"ssl_key={self.tls.key}", f"ssl_ca={self.tls.ca}"]
        lines += self.options
        if os.geteuid() == 0:
            lines.append("user=root")  # else mariadbd refuses to run as root
        self.cnf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 20) -> MariaDBServer:
        """Start mariadbd and return once root() connects; retry on a new port if the port was taken.

        The first start copies the template datadir; a later start (after stop() or kill())
        keeps the data, so crash recovery can be tested.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        if not (self.datadir / "mysql").is_dir():
            shutil.rmtree(self.datadir, ignore_errors=True)
            shutil.copytree(self._template(), self.datadir, symlinks=True)
            self._after_copy()

        def attempt() -> bool:
            self._write_cnf()
            self.error_log.unlink(missing_ok=True)  # so the bind check reads this attempt only
            return self._try_start(timeout)

        if start_on_free_port(self, attempt, lambda: tail(self.error_log, 30)):
            return self
        raise ServerStartError(
            f"{self.daemon} {self.name!r} (port {self.port}) did not start within {timeout}s; "
            f"end of {self.error_log}:\n{tail(self.error_log)}"
        )

    # --- what differs per flavour (MySQLServer overrides these) ---
    def _template(self) -> Path:
        return template_datadir(self.cache_dir)

    def _after_copy(self) -> None:
        """Make a fresh copy of the template this server's own (nothing to do on MariaDB)."""

    def _argv(self) -> list[str]:
        return [find_binary("mariadbd"), f"--defaults-file={self.cnf}"]

    def process(self) -> ServerProcess:
        """How this server's process shows in /proc (for stopping it by a recorded pid)."""
        return mariadbd_process(self.cnf, self.datadir)

    def _try_start(self, timeout: float) -> bool:
        with open(self.workdir / "stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                self._argv(), cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=self.detach,
            )
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if self.socket.exists():
                try:
                    self.root(connect_timeout=1).close()
                    return True
                except pymysql.err.OperationalError:
                    pass
            time.sleep(0.005)
        self.kill()
        return False

    @property
    def running(self) -> bool:
        """True while the process is alive (a zombie is not)."""
        return pid_running(self.pid)

    def stop(self, timeout: float = 10) -> None:
        """Clean shutdown: SIGTERM and wait (SIGKILL after ``timeout``). Safe to call twice."""
        self._end(timeout, kill=False)

    def kill(self) -> None:
        """SIGKILL and wait: a crash, for recovery tests."""
        self._end(10, kill=True)

    def _end(self, timeout: float, kill: bool) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.kill() if kill else proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        elif self.pid is not None:
            if kill and pid_running(self.pid) and self.process().matches(self.pid):
                os.kill(self.pid, 9)
            stop_pid(self.pid, timeout, expect=self.process())
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"MariaDBServer({self.name!r}, port={self.port}, pid={self.pid})"
