"""A throw-away PostgreSQL server: a copy of a cached template cluster, run as a child process.

``initdb`` and ``postgres`` refuse to run as root. Run as root, the sandbox runs them as the
unprivileged ``postgres`` user (else ``nobody``; ``BGQUEUE_PG_USER`` overrides) on folders that
user owns; run as anyone else, they run as that user. The cluster is made once per server
version into the cache (like the MariaDB template datadir) and copied per instance.
"""
from __future__ import annotations

import functools
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from urllib.parse import quote

from bgqueue.sandbox.binaries import MissingBinary, pid_running, tail
from bgqueue.sandbox.mariadb import MAX_SOCKET_PATH, default_cache_dir
from bgqueue.sandbox.ports import BIND_RETRIES, free_port
from bgqueue.sandbox.redis_server import ServerStartError

INSTALL_HINT = "sudo apt-get install -y postgresql"
# Debian installs the server binaries outside PATH, one folder per major version.
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"  # the bootstrap superuser (initdb -U), reached over the unix socket (trust)
# Bump when _initdb changes what it makes, so caches made by older code are not reused.
TEMPLATE_LAYOUT = 2
# A sandbox needs no durability; these make commits and CREATE DATABASE cheap on slow disks.
SERVER_SETTINGS = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
    "shared_buffers": "16MB", "max_connections": "200", "logging_collector": "off",
    "log_min_messages": "warning", "timezone": "UTC",
}

initdb_runs = 0  # how many times this process ran initdb (tests check the cache)


def pg_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``: $BGQUEUE_PG_BINDIR, PATH, else the newest
    /usr/lib/postgresql/<version>/bin. Raises MissingBinary with the install command."""
    candidates = []
    if os.environ.get("BGQUEUE_PG_BINDIR"):
        candidates.append(Path(os.environ["BGQUEUE_PG_BINDIR"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versioned = glob.glob(DEBIAN_BINDIRS)
    versioned.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.name)] or [0], reverse=True)
    candidates += [Path(p) for p in versioned]
    for d in candidates:
        if all(os.access(d / b, os.X_OK) for b in ("initdb", "postgres")):
            return d
    raise MissingBinary(f"postgres and initdb not found (PATH, {DEBIAN_BINDIRS}); "
                        f"install them with: {INSTALL_HINT}")


def postgres_version() -> str:
    """The server version, e.g. '15.20' (the template cache key)."""
    return _version_of(str(pg_bindir() / "postgres"))


@functools.cache
def _version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
    return m.group(1) if m else "unknown"


def run_user() -> pwd.struct_passwd:
    """The OS user initdb and postgres run as: ourselves unless we are root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    names = [os.environ["BGQUEUE_PG_USER"]] if os.environ.get("BGQUEUE_PG_USER") else ["postgres", "nobody"]
    for name in names:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if user.pw_uid != 0:
            return user
    raise ServerStartError(f"PostgreSQL refuses to run as root and none of the users {names} exists "
                           f"(the {INSTALL_HINT.split()[-1]} package creates 'postgres')")


def _as_user(user: pwd.struct_passwd) -> dict:
    """Popen keyword arguments that run the child as ``user`` (nothing when that is us)."""
    if user.pw_uid == os.geteuid():
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    if user.pw_uid == os.geteuid():
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """True when ``user`` can traverse every folder down to ``path`` (a pytest tmp_path of root's
    is under /tmp/pytest-of-root, mode 0700: the postgres user cannot reach it)."""
    if user.pw_uid == os.geteuid():
        return True
    groups = {user.pw_gid} | {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    p = Path(path).resolve()
    for folder in [*reversed(p.parents), p]:
        st = folder.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _private_dir(user: pwd.struct_passwd, prefix: str) -> Path:
    """A new 0700 folder in the system temp dir, owned by ``user``."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    _chown_tree(d, user)
    return d


def template_datadir(cache_dir: Path | None = None) -> Path:
    """A freshly initialised cluster for this server version, made once per cache.

    Built in a temporary directory then renamed into place, so parallel processes never see a
    half-made template; the loser of a race discards its copy.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    final = cache / f"postgres-{postgres_version()}-v{TEMPLATE_LAYOUT}"
    if (final / "data" / "PG_VERSION").is_file():
        return final / "data"
    cache.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        _initdb(build / "data")
        try:
            os.rename(build, final)
        except OSError:
            if not (final / "data" / "PG_VERSION").is_file():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final / "data"


def _initdb(target: Path) -> None:
    global initdb_runs
    user = run_user()
    # initdb runs as the unprivileged user, so it writes where that user can; copied into the cache after.
    scratch = None if _reachable(target.parent, user) else _private_dir(user, "bgq-initdb-")
    datadir = (scratch or target.parent) / "data"
    if scratch is None:
        _chown_tree(target.parent, user)
    cmd = [str(pg_bindir() / "initdb"), "-D", str(datadir), "-U", SUPERUSER, "-E", "UTF8", "--locale=C",
           "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions",
           # 1 MB WAL segments, not 16: every instance copies the template, its first segment included.
           "--wal-segsize=1"]
    initdb_runs += 1
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/",
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
                           **_as_user(user))
        if r.returncode != 0:
            raise ServerStartError(f"initdb failed ({r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
        if scratch is not None:
            shutil.copytree(datadir, target, symlinks=True)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _remove_dirs(dirs: list[Path]) -> None:
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


class PostgresServer:
    """One ``postgres`` child process on 127.0.0.1 with a database and a password role for bgqueue.

    ``start()`` copies the template on first use; ``stop()`` / ``restart()`` keep the data.
    ``remove()`` stops and deletes the data (also any folder made outside ``workdir``).
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None, database: str = "bgqueue",
                 user: str = "bgqueue", password: str | None = None, cache_dir: Path | None = None):
        self.workdir = Path(workdir)
        self.port = port
        self.database = database
        self.user = user
        self.password = password or secrets.token_urlsafe(18)
        self.cache_dir = cache_dir
        self._fixed_port = port is not None
        self._proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.logfile = self.workdir / "postgres.log"
        self.rundir: Path | None = None  # holds data/ and the socket; owned by the run user
        self.socket_dir: Path | None = None
        self._bootstrapped = False
        self._outside: list[Path] = []  # folders made outside workdir, removed by remove() or at exit
        self._finalizer = weakref.finalize(self, _remove_dirs, self._outside)

    # --- addresses -------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.rundir is not None, "start() first"
        return self.rundir / "data"

    @property
    def url(self) -> str:
        """``postgresql+psycopg://user:pass@127.0.0.1:PORT/db`` of the bgqueue database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The same role's URL for another database (see create_database)."""
        return (f"postgresql+psycopg://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{database}")

    def admin(self, database: str = "postgres", connect_timeout: int = 5):
        """A new autocommit psycopg connection as the superuser, over the unix socket."""
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=database,
                               autocommit=True, connect_timeout=connect_timeout)

    # --- life cycle ------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = run_user()
        if self.rundir is None:
            if _reachable(self.workdir, user):
                self.rundir = self.workdir / "pg"
                self.rundir.mkdir(exist_ok=True)
                os.chmod(self.rundir, 0o700)
                _chown_tree(self.rundir, user)
            else:
                self.rundir = _private_dir(user, "bgq-pg-")
                self._outside.append(self.rundir)
                (self.workdir / "rundir").write_text(f"{self.rundir}\n")  # where to look when debugging
            # "/.s.PGSQL.<port>" must fit the 108-byte unix socket path limit.
            if len(str(self.rundir)) + 18 > MAX_SOCKET_PATH:
                self.socket_dir = _private_dir(user, "bgq-pgs-")
                self._outside.append(self.socket_dir)
            else:
                self.socket_dir = self.rundir
        if not (self.datadir / "PG_VERSION").is_file():
            shutil.rmtree(self.datadir, ignore_errors=True)
            shutil.copytree(template_datadir(self.cache_dir), self.datadir, symlinks=True)
            os.chmod(self.datadir, 0o700)
            _chown_tree(self.datadir, user)

    def start(self, timeout: float = 30) -> PostgresServer:
        """Start postgres and return once it accepts connections; retry on a new port if the port
        was taken. The first start also creates the role and the database."""
        self._prepare()
        for attempt in range(BIND_RETRIES + 1):
            if not self._fixed_port:
                self.port = free_port()
            ok, log = self._try_start(timeout)
            if ok:
                self._fixed_port = True  # a restart keeps the port: clients' URLs point at it
                if not self._bootstrapped:
                    self._bootstrap()
                return self
            taken = "Address already in use" in log
            if not taken or self._fixed_port or attempt == BIND_RETRIES:
                break
        raise ServerStartError(f"postgres (port {self.port}) did not start within {timeout}s; "
                               f"end of {self.logfile}:\n{tail(self.logfile)}")

    def _command(self) -> list[str]:
        cmd = [str(pg_bindir() / "postgres"), "-D", str(self.datadir), "-c", "listen_addresses=127.0.0.1",
               "-p", str(self.port), "-k", str(self.socket_dir)]
        for k, v in SERVER_SETTINGS.items():
            cmd += ["-c", f"{k}={v}"]
        return cmd

    def _try_start(self, timeout: float) -> tuple[bool, str]:
        import psycopg

        offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        with open(self.logfile, "ab") as log:
            # Its own session: a terminal's Ctrl-C does not reach it, and stop() can signal the
            # whole process group (postmaster and backends) if it has to kill.
            self._proc = subprocess.Popen(
                self._command(), cwd=self.rundir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                **_as_user(run_user()),
            )
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if (self.socket_dir / f".s.PGSQL.{self.port}").exists():
                try:
                    self.admin(connect_timeout=1).close()
                    return True, ""
                except psycopg.OperationalError:  # "the database system is starting up"
                    pass
            time.sleep(0.005)
        else:
            self.stop()
        with open(self.logfile, errors="replace") as f:
            f.seek(offset)
            return False, f.read()

    def _bootstrap(self) -> None:
        from psycopg import sql

        with self.admin() as c:
            if c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)).fetchone() is None:
                c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)))
        self.create_database(self.database)
        self._bootstrapped = True

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by the role (no-op when it exists); return its URL."""
        from psycopg import sql

        with self.admin() as c:
            if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                       sql.Identifier(self.user)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending its sessions (no-op when it does not exist)."""
        from psycopg import sql

        with self.admin() as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @property
    def running(self) -> bool:
        """True while the postmaster is alive (a zombie is not)."""
        return pid_running(self.pid)

    def stop(self, timeout: float = 10) -> None:
        """Fast shutdown (SIGINT: sessions are ended, then a checkpoint); SIGKILL to the process
        group after ``timeout``. Safe to call twice."""
        self._end(signal.SIGINT, timeout)

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT): no checkpoint, crash recovery on the next start. With
        synchronous_commit=off the commits of the last moments (wal_writer_delay, 200 ms) may be
        lost, as after a crash; a session that must not lose them sets synchronous_commit=on."""
        self._end(signal.SIGQUIT, 10)

    def restart(self, timeout: float = 30) -> PostgresServer:
        """stop() then start() on the same port and data: clients' connections break."""
        self.stop()
        return self.start(timeout)

    def remove(self) -> None:
        """stop() and delete the data, including any folder made outside workdir."""
        self.stop()
        if self.rundir is not None and self.rundir not in self._outside:
            shutil.rmtree(self.rundir, ignore_errors=True)
        _remove_dirs(self._outside)
        self.rundir = self.socket_dir = None
        self._bootstrapped = False

    def _end(self, sig: int, timeout: float) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, pid={self.pid}, db={self.database!r})"
