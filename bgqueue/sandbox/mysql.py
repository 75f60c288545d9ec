"""A throw-away Oracle MySQL instance: the MariaDBServer interface over a mysqld fetched from
Debian's packages by scripts/fetch-mysql.sh (never installed system-wide).

That mysqld needs the newer glibc, libstdc++ and ICU unpacked next to it, so it runs through the
fetched loader: ``ld-linux-x86-64.so.2 --library-path <libs> mysqld --defaults-file=…``.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pymysql

from bgqueue.sandbox.binaries import MissingBinary, ServerProcess
from bgqueue.sandbox.mariadb import MariaDBServer, default_cache_dir, socket_user
from bgqueue.sandbox.redis_server import ServerStartError

# Where scripts/fetch-mysql.sh unpacks (BGQUEUE_MYSQL_CACHE overrides, as in the script).
MYSQL_CACHE_ENV = "BGQUEUE_MYSQL_CACHE"
# An unpacked tree elsewhere (its usr/sbin/mysqld is used).
MYSQL_ROOT_ENV = "BGQUEUE_MYSQL_ROOT"
FETCH_COMMAND = "scripts/fetch-mysql.sh (make test and make demo run it)"
# MySQL counts access-denied errors (what MariaDB's Access_denied_errors status says) only in
# performance_schema's error summary: keep that, with every other instrument and table off or
# tiny (the defaults cost ~250 MB RSS per server; these ~60 MB).
PERFORMANCE_SCHEMA = [
    "performance_schema=ON", "performance-schema-instrument=%=OFF", "performance-schema-instrument=error=ON",
    *(f"performance_schema_{name}=0" for name in (
        "events_statements_history_long_size", "events_statements_history_size", "events_waits_history_long_size",
        "events_waits_history_size", "events_stages_history_long_size", "events_stages_history_size",
        "events_transactions_history_long_size", "events_transactions_history_size", "digests_size",
        "max_digest_length", "max_sql_text_length", "session_connect_attrs_size", "max_mutex_instances",
        "max_rwlock_instances", "max_cond_instances", "max_file_instances", "max_socket_instances",
        "max_table_instances", "max_table_handles", "max_index_stat", "max_table_lock_stat", "max_program_instances",
        "max_prepared_statements_instances", "max_metadata_locks")),
    "performance_schema_max_thread_instances=300", "performance_schema_accounts_size=20",
    "performance_schema_hosts_size=10", "performance_schema_users_size=20", "performance_schema_setup_actors_size=4",
    "performance_schema_setup_objects_size=4",
]
REDO_LOG_CAPACITY = "8M"  # the minimum: the template is copied per instance
TEMPLATE_LAYOUT = 1

initialize_runs = 0  # how many times this process ran mysqld --initialize-insecure


def mysql_root() -> Path:
    """The unpacked Debian tree holding usr/sbin/mysqld; MissingBinary says how to fetch it."""
    env = os.environ.get(MYSQL_ROOT_ENV)
    if env:
        if (Path(env) / "usr/sbin/mysqld").is_file():
            return Path(env)
        raise MissingBinary(f"{MYSQL_ROOT_ENV}={env} holds no usr/sbin/mysqld; unset it or run: {FETCH_COMMAND}")
    cache = Path(os.environ.get(MYSQL_CACHE_ENV) or Path.home() / ".cache" / "bgqueue")
    trees = sorted((d for d in cache.glob("mysql-*") if (d / "VERSION").is_file() and (d / "root/usr/sbin/mysqld").is_file()),
                   key=lambda d: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", d.name[6:])], reverse=True)
    if not trees:
        raise MissingBinary(f"Oracle MySQL not fetched (no {cache}/mysql-<version>); run: {FETCH_COMMAND}")
    return trees[0] / "root"


def _libdir(root: Path) -> Path:
    return root / "usr/lib/x86_64-linux-gnu"


def mysqld_command(root: Path | None = None) -> list[str]:
    """The argv prefix that runs the fetched mysqld through the fetched loader."""
    root = root or mysql_root()
    lib = _libdir(root)
    return [str(lib / "ld-linux-x86-64.so.2"), "--library-path", str(lib), str(root / "usr/sbin/mysqld")]


def base_options(root: Path) -> list[str]:
    """Options every mysqld run from the fetched tree needs (FACTS: Oracle MySQL from Debian)."""
    opts = [f"basedir={root / 'usr'}", f"plugin-dir={root / 'usr/lib/mysql/plugin'}",
            f"lc-messages-dir={root / 'usr/share/mysql'}", "mysqlx=OFF",
            f"innodb_redo_log_capacity={REDO_LOG_CAPACITY}", "innodb_buffer_pool_size=16M",
            "innodb_doublewrite=OFF"]
    if os.geteuid() == 0:
        opts.append("user=root")  # else mysqld refuses to run as root
    return opts


def mysqld_version() -> str:
    """The fetched mysqld's version, e.g. '9.7.4' (the template cache key)."""
    return _version_of(tuple(mysqld_command()))


@functools.cache
def _version_of(cmd: tuple[str, ...]) -> str:
    out = subprocess.run([*cmd, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Ver\s+(\S+)", out)
    return m.group(1) if m else "unknown"


def template_datadir(cache_dir: Path | None = None) -> Path:
    """A freshly initialised datadir (root@localhost, no password) for this mysqld version, made
    once per cache (built aside and renamed into place, like the MariaDB template)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    final = cache / f"mysql-{mysqld_version()}-{socket_user()}-v{TEMPLATE_LAYOUT}"
    if (final / "data" / "mysql").is_dir():
        return final / "data"
    cache.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-mysql-", dir=cache))
    try:
        _initialize(build)
        (build / "data" / "auto.cnf").unlink(missing_ok=True)  # each copy makes its own server_uuid
        try:
            os.rename(build, final)
        except OSError:
            if not (final / "data" / "mysql").is_dir():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final / "data"


def _initialize(build: Path) -> None:
    global initialize_runs
    root = mysql_root()
    (build / "tmp").mkdir()
    cnf = build / "bootstrap.cnf"
    cnf.write_text("[mysqld]\n" + "\n".join([*base_options(root), f"tmpdir={build / 'tmp'}",
                                             f"secure-file-priv={build / 'tmp'}", "performance_schema=OFF",
                                             f"log-error={build / 'init.log'}"]) + "\n")
    initialize_runs += 1
    r = subprocess.run([*mysqld_command(root), f"--defaults-file={cnf}", "--initialize-insecure",
                        f"--datadir={build / 'data'}"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        log = (build / "init.log").read_text(errors="replace") if (build / "init.log").exists() else ""
        raise ServerStartError(f"mysqld --initialize-insecure failed ({r.returncode}):\n{(r.stdout + r.stderr + log)[-2000:]}")


def mysqld_process(cnf: Path, datadir: Path) -> ServerProcess:
    """How a mysqld started by ``MySQLServer`` shows in /proc: the fetched loader running mysqld."""
    loader, *args = mysqld_command()
    return ServerProcess(loader, (*args, f"--defaults-file={cnf}"), cwd=str(datadir))


class MySQLServer(MariaDBServer):
    """One Oracle mysqld: gtid_mode=ON, enforce_gtid_consistency, log_replica_updates,
    binlog_row_metadata=FULL; a replica (``read_only``) starts read_only, as on MariaDB.

    Shutdown is fast (innodb_fast_shutdown=2: no purge or buffer flush; the next start recovers
    from the redo log), because a replicating mysqld stopped with SIGTERM took ~13 s here.
    """

    flavour = "mysql"
    daemon = "mysqld"

    def root(self, **kw) -> pymysql.connections.Connection:
        """A new autocommit connection as root@localhost (no password) over the unix socket."""
        return pymysql.connect(unix_socket=str(self.socket), user="root", password="", autocommit=True,
                               ssl_disabled=True, connect_timeout=kw.pop("connect_timeout", 5), **kw)

    def _template(self) -> Path:
        return template_datadir(self.cache_dir)

    def _after_copy(self) -> None:
        (self.datadir / "auto.cnf").unlink(missing_ok=True)  # a server_uuid of its own

    def _argv(self) -> list[str]:
        return [*mysqld_command(), f"--defaults-file={self.cnf}"]

    def process(self) -> ServerProcess:
        return mysqld_process(self.cnf, self.datadir)

    def _write_cnf(self) -> None:
        files = self.workdir / "files"
        files.mkdir(exist_ok=True)
        lines = [
            "[mysqld]", *base_options(mysql_root()), f"datadir={self.datadir}", "bind-address=127.0.0.1",
            f"port={self.port}", f"socket={self.socket}", f"pid-file={self.workdir / 'mysqld.pid'}",
            f"log-error={self.error_log}", f"secure-file-priv={files}", f"tmpdir={self.workdir / 'tmp'}",
            f"server_id={self.server_id}", "log_bin=binlog", "relay_log=relay-bin", "log_replica_updates=ON",
            "gtid_mode=ON", "enforce_gtid_consistency=ON", "binlog_row_image=FULL", "binlog_row_metadata=FULL",
            "skip-name-resolve", "max_connections=200", "innodb_flush_log_at_trx_commit=2", "sync_binlog=0",
            "innodb_fast_shutdown=2", "innodb_log_buffer_size=2M", "key_buffer_size=1M",
            *PERFORMANCE_SCHEMA,
            # a replica notices a source that went away within seconds (the default is 60 s)
            "replica_net_timeout=10",
        ]
        if self.read_only:
            # As on the MariaDB sandbox: read_only stops the application; root and the admin user
            # (SUPER / CONNECTION_ADMIN) pass. A fence sets super_read_only (the dialect's).
            lines.append("read_only=ON")
        if self.tls is not None:
            lines += [f"ssl_cert={self.tls.cert}", f"ssl_key={self.tls.key}", f"ssl_ca={self.tls.ca}"]
        lines += self.options
        self.cnf.write_text("\n".join(lines) + "\n")

    def __repr__(self) -> str:
        return f"MySQLServer({self.name!r}, port={self.port}, pid={self.pid})"


SERVER_CLASSES: dict[str, type[MariaDBServer]] = {"mariadb": MariaDBServer, "mysql": MySQLServer}
FLAVOURS = tuple(SERVER_CLASSES)


def server_class(flavour: str) -> type[MariaDBServer]:
    """The sandbox server class of ``flavour`` ('mariadb' or 'mysql')."""
    try:
        return SERVER_CLASSES[flavour]
    except KeyError:
        raise ValueError(f"unknown flavour {flavour!r}: one of {', '.join(FLAVOURS)}") from None
