"""A blue primary and a green GTID replica of it, with the users a bgqueue fleet file names."""
from __future__ import annotations

import hashlib
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bgqueue.adapters.mysql.dialects import Dialect
from bgqueue.sandbox.mysql import server_class
from bgqueue.sandbox.redis_server import ServerStartError
from bgqueue.sandbox.tls import CertificateAuthority

ADMIN_USER = "bgq_admin"
REPL_USER = "bgq_repl"
APP_USER = "app"
APP_DATABASE = "appdb"
ADMIN_PASSWORD_ENV = "BGQ_SANDBOX_ADMIN_PASSWORD"
REPL_PASSWORD_ENV = "BGQ_SANDBOX_REPL_PASSWORD"
APP_PASSWORD_ENV = "BGQ_SANDBOX_APP_PASSWORD"
MONITOR_USER = "bgq_monitor"
MONITOR_PASSWORD_ENV = "BGQ_SANDBOX_MONITOR_PASSWORD"
META_DATABASE = "bgq_meta"
# Reads status and writes heartbeats; NOT exempt from read_only, so a fenced server refuses it.
MONITOR_PRIVILEGES = "PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT"
# Both: TCP clients connect as 127.0.0.1 (skip-name-resolve), socket clients as localhost.
USER_HOSTS = ("127.0.0.1", "localhost")
REPL_PRIVILEGES = "REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR, SELECT"
# Oracle MySQL has no SLAVE MONITOR / BINLOG MONITOR: REPLICATION CLIENT covers both.
MYSQL_MONITOR_PRIVILEGES = "PROCESS, REPLICATION CLIENT, SELECT"
MYSQL_REPL_PRIVILEGES = "REPLICATION SLAVE, REPLICATION CLIENT, SELECT"
# The statements ClusterPair's own checks use on each flavour (any 8.4-family MySQL reads the same).
_DIALECTS = {"mariadb": Dialect("mariadb", (10, 11, 0)), "mysql": Dialect("mysql", (8, 4, 0))}
SYNC_TIMEOUT_S = 10


@dataclass(frozen=True)
class SandboxPasswords:
    """The passwords of the sandbox users. Never written to sandbox.json or fleet.yaml."""

    admin: str
    repl: str
    app: str
    monitor: str

    @classmethod
    def generate(cls) -> SandboxPasswords:
        """Fresh random passwords."""
        return cls(*(secrets.token_urlsafe(18) for _ in range(4)))

    def env(self) -> dict[str, str]:
        """The environment variables the fleet file's ``password_env`` entries name."""
        return {ADMIN_PASSWORD_ENV: self.admin, REPL_PASSWORD_ENV: self.repl, APP_PASSWORD_ENV: self.app,
                MONITOR_PASSWORD_ENV: self.monitor}

    def export_env(self) -> None:
        """Set the variables in this process's environment (inherited by children)."""
        os.environ.update(self.env())

    @classmethod
    def from_env(cls) -> SandboxPasswords:
        """Read them back from the environment (e.g. after ``source sandbox.env``)."""
        return cls(os.environ[ADMIN_PASSWORD_ENV], os.environ[REPL_PASSWORD_ENV], os.environ[APP_PASSWORD_ENV],
                   os.environ[MONITOR_PASSWORD_ENV])


def native_hash(password: str) -> str:
    """mysql_native_password's stored form. Users created on blue are binlogged, and a plain
    IDENTIFIED BY '<password>' would sit in the binlog for any replication reader to see."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


class ClusterPair:
    """blue (writable) → green (read_only GTID replica); both carry the replication user.

    ``tls``: a CA that issues each server a certificate for 127.0.0.1 and localhost; the fleet
    entry then says ``tls: {mode: verify, ca: <the CA's certificate>}``. Default: no TLS.
    ``flavour``: "mariadb" (mariadbd, the default) or "mysql" (Oracle MySQL, see sandbox.mysql):
    the same users, grants and replication (GTID auto-position) on either.
    """

    def __init__(self, workdir: Path, name: str, blue_server_id: int, green_server_id: int,
                 passwords: SandboxPasswords, detach: bool = False, cache_dir: Path | None = None,
                 tls: CertificateAuthority | None = None, flavour: str = "mariadb"):
        self.workdir = Path(workdir)
        self.name = name
        self.passwords = passwords
        self.ca = tls
        cls = server_class(flavour)
        self.flavour = flavour
        self.dialect = _DIALECTS[flavour]
        self.blue = cls(self.workdir / "blue", f"{name}-blue", blue_server_id, detach=detach, cache_dir=cache_dir)
        self.green = cls(self.workdir / "green", f"{name}-green", green_server_id,
                         read_only=True, detach=detach, cache_dir=cache_dir)

    def start(self) -> ClusterPair:
        """Start both servers, replicate green from blue, create the users and wait for green."""
        try:
            if self.ca is not None:
                for server in (self.blue, self.green):
                    server.tls = self.ca.issue(self.workdir / "certs", server.name)
            # Start green in a thread meanwhile: the two starts are independent (~0.2 s each).
            with ThreadPoolExecutor(1) as pool:
                green = pool.submit(self.green.start)
                self.blue.start()
                green.result()
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        return self

    def _bootstrap(self) -> None:
        if self.flavour == "mysql":
            return self._bootstrap_mysql()
        with self.blue.root() as b, self.green.root() as g:
            bc, gc = b.cursor(), g.cursor()
            # The replication user is per-server and kept out of the binlog: green needs its own
            # for reverse replication later, and a binlogged copy would collide on green.
            for cur in (bc, gc):
                cur.execute("SET SESSION sql_log_bin=0")
                for host in USER_HOSTS:
                    cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (REPL_USER, host, self.passwords.repl))
                    cur.execute(f"GRANT {REPL_PRIVILEGES} ON *.* TO %s@%s", (REPL_USER, host))
                cur.execute("SET SESSION sql_log_bin=1")
            # Replicate before anything else is written on blue, so green replays from the first GTID.
            gc.execute(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER=%s, "
                "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                (self.blue.port, REPL_USER, self.passwords.repl),
            )
            gc.execute("START SLAVE")
            for host in USER_HOSTS:
                bc.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (ADMIN_USER, host, native_hash(self.passwords.admin)))
                bc.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (ADMIN_USER, host))
            bc.execute(f"CREATE DATABASE `{APP_DATABASE}`")
            for host in USER_HOSTS:
                # Unprivileged on purpose: read_only must stop it (root/SUPER would bypass it).
                bc.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (APP_USER, host, native_hash(self.passwords.app)))
                bc.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{APP_DATABASE}`.* TO %s@%s", (APP_USER, host))
            bc.execute(f"CREATE DATABASE `{META_DATABASE}`")
            for host in USER_HOSTS:
                bc.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (MONITOR_USER, host, native_hash(self.passwords.monitor)))
                bc.execute(f"GRANT {MONITOR_PRIVILEGES} ON *.* TO %s@%s", (MONITOR_USER, host))
                bc.execute(f"GRANT INSERT, UPDATE, DELETE, CREATE ON `{META_DATABASE}`.* TO %s@%s", (MONITOR_USER, host))
            self.wait_green_synced(bc, gc)

    def _bootstrap_mysql(self) -> None:
        # As _bootstrap, in MySQL's words: caching_sha2_password users (CREATE USER … IDENTIFIED BY
        # is binlogged with the hash only) and REPLICATION CLIENT for monitoring.
        pw = self.passwords
        with self.blue.root() as b, self.green.root() as g:
            bc, gc = b.cursor(), g.cursor()
            for cur in (bc, gc):
                cur.execute("SET SESSION sql_log_bin=0")
                for host in USER_HOSTS:
                    cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (REPL_USER, host, pw.repl))
                    cur.execute(f"GRANT {MYSQL_REPL_PRIVILEGES} ON *.* TO %s@%s", (REPL_USER, host))
                cur.execute("SET SESSION sql_log_bin=1")
            sql, args = self.dialect.change_source("127.0.0.1", self.blue.port, REPL_USER, pw.repl)
            gc.execute(sql, args)
            gc.execute(self.dialect.start_replica_sql)
            for host in USER_HOSTS:
                bc.execute("CREATE USER %s@%s IDENTIFIED BY %s", (ADMIN_USER, host, pw.admin))
                bc.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (ADMIN_USER, host))
            bc.execute(f"CREATE DATABASE `{APP_DATABASE}`")
            for host in USER_HOSTS:
                bc.execute("CREATE USER %s@%s IDENTIFIED BY %s", (APP_USER, host, pw.app))
                bc.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{APP_DATABASE}`.* TO %s@%s", (APP_USER, host))
            bc.execute(f"CREATE DATABASE `{META_DATABASE}`")
            for host in USER_HOSTS:
                bc.execute("CREATE USER %s@%s IDENTIFIED BY %s", (MONITOR_USER, host, pw.monitor))
                bc.execute(f"GRANT {MYSQL_MONITOR_PRIVILEGES} ON *.* TO %s@%s", (MONITOR_USER, host))
                bc.execute(f"GRANT INSERT, UPDATE, DELETE, CREATE ON `{META_DATABASE}`.* TO %s@%s", (MONITOR_USER, host))
            self.wait_green_synced(bc, gc)

    def wait_green_synced(self, blue_cur=None, green_cur=None, timeout: float = SYNC_TIMEOUT_S) -> str:
        """Wait until green has applied blue's whole binlog; return the GTID position reached."""
        if blue_cur is None or green_cur is None:
            with self.blue.root() as b, self.green.root() as g:
                return self.wait_green_synced(b.cursor(), g.cursor(), timeout)
        d = self.dialect
        blue_cur.execute(d.gtid_position_sql)
        pos = blue_cur.fetchone()[0]
        green_cur.execute(d.wait_for_position_sql(), (pos, timeout))
        if green_cur.fetchone()[0] != 0:
            green_cur.execute(d.replica_status_sql)
            row = dict(zip([c[0] for c in green_cur.description], green_cur.fetchone() or (), strict=False))
            io = row.get("Slave_IO_Running", row.get("Replica_IO_Running"))
            sql = row.get("Slave_SQL_Running", row.get("Replica_SQL_Running"))
            raise ServerStartError(
                f"cluster {self.name!r}: green (port {self.green.port}) did not reach blue's GTID {pos} "
                f"within {timeout}s; IO: {io} {row.get('Last_IO_Error')!r}; "
                f"SQL: {sql} {row.get('Last_SQL_Error')!r}"
            )
        return pos

    def stop(self) -> None:
        """Stop green first (so its IO thread does not log reconnect errors), then blue."""
        self.green.stop()
        self.blue.stop()

    def discard(self) -> None:
        """Kill both servers (SIGKILL) for a pair whose datadirs nobody reads again (a test's):
        a clean MySQL shutdown takes seconds per server. A later start() would crash-recover."""
        self.green.kill()
        self.blue.kill()

    def spec_dict(self) -> dict:
        """This pair as a cluster entry of a fleet file (passwords only by env var name)."""
        return {
            "name": self.name, "provider": "mysql",
            "blue": {"host": self.blue.host, "port": self.blue.port},
            "green": {"host": self.green.host, "port": self.green.port},
            "admin": {"user": ADMIN_USER, "password_env": ADMIN_PASSWORD_ENV},
            "replication": {"user": REPL_USER, "password_env": REPL_PASSWORD_ENV},
            "monitor": {"user": MONITOR_USER, "password_env": MONITOR_PASSWORD_ENV},
            "app_users": [APP_USER], "critical_tables": [],
            # loopback sandbox: TLS setup would cost ~30 ms per connect
            "tls": {"mode": "verify", "ca": str(self.ca.cert)} if self.ca else "disabled",
        }
