"""The ``mysql`` provider's adapter: one admin connection to one server (MariaDB or MySQL 8).

This is the only module that speaks SQL to managed servers. Credentials are resolved here
from the environment variable the fleet file names; statements that carry a password are
never logged or put in an error message. Connections take their TLS and authentication
settings from ``connect`` (verified TLS, no clear-text password plugin).
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pymysql
import pymysql.cursors

from bgqueue.adapters.failpoints import failpoint
from bgqueue.adapters.mysql import connect as tlsconnect
from bgqueue.adapters.mysql.dialects import Dialect, parse_version
from bgqueue.adapters.mysql.statements import redact_statements
from bgqueue.model.errors import BadInput, BgqueueError, ProcedureFailed
from bgqueue.model.fleet import ClusterSpec, Credentials, Endpoint
from bgqueue.model.schema_base import Tls

log = logging.getLogger(__name__)

# Sessions never ended at a fence: server internals and replication streams.
_SYSTEM_USERS = {"system user", "event_scheduler"}
_REPLICATION_COMMANDS = {"Binlog Dump", "Binlog Dump GTID", "Daemon", "Slave_IO", "Slave_SQL", "Slave_worker"}
_UNKNOWN_THREAD = 1094
# A fence (SET GLOBAL read_only) waits behind running write statements while new writers queue
# behind it: a short lock wait fails the fence cleanly instead of blocking every write.
FENCE_LOCK_WAIT_S = 5
# MASTER_GTID_WAIT blocks the session: wait in slices shorter than the read timeout.
_WAIT_SLICE_S = 20.0
# After START SLAVE with TLS, how long to watch the IO thread connect (a certificate refused shows
# within milliseconds on a reachable source; a slower connect is left to the readiness checks).
_TLS_START_WATCH_S = 2.0


@dataclass(frozen=True)
class ReplicaStatus:
    source_host: str
    source_port: int
    io_running: bool
    sql_running: bool
    seconds_behind: int | None
    last_error: str
    using_gtid: bool
    # Which server the replica's IO thread is connected to, as that server said (0/None until
    # it connected): the source by identity, whatever name the replica was pointed at.
    source_server_id: int | None = None
    source_uuid: str | None = None

    @property
    def healthy(self) -> bool:
        return self.io_running and self.sql_running and not self.last_error


@dataclass(frozen=True)
class ServerIdentity:
    """Who a server is, whatever name reached it. MySQL has a server_uuid; MariaDB has none, so
    there the key is hostname, port and server_id together (server_id alone is unique only
    within one replication topology)."""

    server_id: int
    server_uuid: str | None
    hostname: str
    port: int

    @property
    def key(self) -> str:
        return self.server_uuid or f"{self.hostname}:{self.port}#{self.server_id}"

    def describe(self) -> str:
        return f"server_uuid {self.server_uuid}" if self.server_uuid else \
            f"server_id {self.server_id} on {self.hostname}:{self.port}"


# SHOW GRANTS lines: privileges ON an object, or roles granted to the account.
_GRANT_ON = re.compile(r"^GRANT (?P<privs>.+?) ON (?P<obj>\S+) TO ")
_GRANT_ROLES = re.compile(r"^GRANT (?P<roles>.+?) TO ")
_GRANTEE = re.compile(r"'((?:[^']|'')*)'@'((?:[^']|'')*)'")
_ROLE_NAME = re.compile(r"`((?:[^`]|``)+)`(?:@`((?:[^`]|``)*)`)?")
_MAX_ROLE_DEPTH = 8


@dataclass(frozen=True)
class BinlogCoordinates:
    file: str
    pos: int


# A reconnect waits this long for its own previous session to let the procedure lock go.
FENCE_RETAKE_WAIT_S = 3.0


class ServerUnreachable(BadInput):
    """The server did not answer (down, refused, timed out): its state, not the input's fault."""


class FenceLockLost(BgqueueError):
    """Another worker holds this cluster's procedure lock on the server: this one lost the deployment."""


class Server:
    """An admin session on one server. Connects lazily; ``close()`` when done.

    A procedure that changes the server (switchover, rollback) first takes the cluster's
    procedure lock on it (``hold_fence_lock``): a server-side named lock held by this session.
    A worker that takes the deployment over ends the sessions holding it and takes it; every later
    (re)connect of the old worker finds it taken and fails with FenceLockLost before it can send
    a statement, so a worker that lost the deployment (paused, partitioned) cannot change a server.
    """

    def __init__(self, endpoint: Endpoint, admin: Credentials, *, label: str, connect_timeout: float = 5.0,
                 tls: Tls | str = "preferred", read_timeout: float | None = 60.0):
        self.endpoint, self.admin, self.label = endpoint, admin, label
        self.connect_timeout, self.tls, self.read_timeout = connect_timeout, tlsconnect.as_tls(tls), read_timeout
        self._conn: pymysql.Connection | None = None
        self._dialect: Dialect | None = None
        self._fence_lock: str | None = None
        self._session_id: int | None = None  # this session's CONNECTION_ID() on the server

    # --- connection ----------------------------------------------------------------
    def connect(self) -> Server:
        """Open the admin session. BadInput names the server and what went wrong."""
        if self._conn is not None:
            return self
        kwargs = tlsconnect.connect_args(self.tls)
        try:
            self._conn = pymysql.connect(host=self.endpoint.host, port=self.endpoint.port, user=self.admin.user,
                                         password=self.admin.password(), autocommit=True,
                                         connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                                         write_timeout=self.read_timeout, **kwargs)
        except pymysql.err.OperationalError as e:
            code = e.args[0] if e.args else None
            if code == 1045:
                raise BadInput(f"{self.label} {self.endpoint}: access denied for user {self.admin.user!r} "
                               f"(password from {self.admin.password_env})") from None
            why = tlsconnect.describe_connect_error(e)
            # refused, lost, gone, full, shutting down: the server's state (a TLS refusal is input)
            if code in (2003, 2013, 2006, 1040, 1053) and not why.startswith("TLS"):
                raise ServerUnreachable(f"{self.label} {self.endpoint}: cannot connect: {why}") from None
            raise BadInput(f"{self.label} {self.endpoint}: cannot connect: {why}") from None
        try:
            tlsconnect.check_encrypted(self._conn, self.tls, f"{self.label} {self.endpoint}")
        except BadInput:
            self._conn = None
            raise
        with self._conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            flavour, version = parse_version(cur.fetchone()[0])
            cur.execute(f"SET SESSION lock_wait_timeout = {FENCE_LOCK_WAIT_S}")
            previous, self._session_id = self._session_id, None
            if self._fence_lock is not None and not self._retake_fence_lock(cur, previous):
                self._conn.close()
                self._conn = None
                raise FenceLockLost(f"{self.label} {self.endpoint}: another worker holds {self._fence_lock!r}: "
                                    "this worker lost the deployment and changes nothing")
            cur.execute("SELECT CONNECTION_ID()")
            self._session_id = int(cur.fetchone()[0])
        self._dialect = Dialect(flavour, version)
        return self

    def _retake_fence_lock(self, cur, previous: int | None) -> bool:
        """A reconnect of a procedure's session takes the lock back, never by force from anyone else:
        only this worker's own previous session may still hold it (its close is asynchronous on
        the server, or it was busy past a timeout); that one is ended and awaited, briefly."""
        name = self._fence_lock
        cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
        if cur.fetchone()[0] == 1:
            return True
        cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
        holder = cur.fetchone()[0]
        if holder is not None and (previous is None or int(holder) != previous):
            return False  # another worker's session: this worker lost the deployment
        if holder is not None:
            try:
                cur.execute(f"KILL {int(previous)}")
            except pymysql.err.OperationalError:
                pass  # it ended meanwhile
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, FENCE_RETAKE_WAIT_S))
        if cur.fetchone()[0] == 1:
            return True
        return False

    def hold_fence_lock(self, name: str, timeout_s: float = 5.0) -> int:
        """Take the procedure lock ``name`` for this session, first ending any other session that
        holds it (the worker that owned the deployment before this one). Returns how many sessions
        were ended. FenceLockLost when it cannot be had within ``timeout_s``."""
        self.connect()
        ended = 0
        holder = self.scalar("SELECT IS_USED_LOCK(%s)", (name,))
        own = int(self.scalar("SELECT CONNECTION_ID()"))
        if holder is not None and int(holder) != own:
            ended = self.end_sessions([(int(holder), "lock holder")])
        if self.scalar("SELECT GET_LOCK(%s, %s)", (name, float(timeout_s))) != 1:
            raise FenceLockLost(f"{self.label} {self.endpoint}: could not take {name!r} within {timeout_s:g}s")
        self._fence_lock = name
        return ended

    def reconnect(self) -> Server:
        """A fresh session (after a timeout the old one may be dead or still busy server-side)."""
        self.close()
        return self.connect()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already gone
                pass
            self._conn = None

    def __enter__(self) -> Server:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def dialect(self) -> Dialect:
        self.connect()
        assert self._dialect is not None
        return self._dialect

    @property
    def flavour(self) -> str:
        return self.dialect.flavour

    def execute(self, sql: str, args: tuple | None = None, *, secret: bool = False) -> None:
        self.connect()
        assert self._conn is not None
        with self._conn.cursor() as cur:
            try:
                cur.execute(sql, args)
            except pymysql.err.MySQLError as e:
                if secret:  # the statement carries a password: say what failed, not the statement
                    raise type(e)(e.args[0] if e.args else 0, "statement with credentials failed") from None
                raise

    def scalar(self, sql: str, args: tuple | None = None):
        self.connect()
        assert self._conn is not None
        with self._conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return row[0] if row else None

    def row_dict(self, sql: str) -> dict | None:
        self.connect()
        assert self._conn is not None
        with self._conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql)
            return cur.fetchone()

    def rows(self, sql: str, args: tuple | None = None) -> list[tuple]:
        self.connect()
        assert self._conn is not None
        with self._conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    # --- observation ----------------------------------------------------------------
    def server_id(self) -> int:
        return int(self.scalar("SELECT @@GLOBAL.server_id"))

    def version(self) -> str:
        return str(self.scalar("SELECT VERSION()"))

    def is_read_only(self) -> bool:
        ro, sro = self.rows(self.dialect.read_only_sql)[0]
        return bool(int(ro)) or bool(int(sro))

    def gtid_position(self) -> str:
        """Everything in this server's binlog (the position a replica of it must reach)."""
        return str(self.scalar(self.dialect.gtid_position_sql) or "")

    def applied_position(self) -> str:
        return str(self.scalar(self.dialect.applied_position_sql) or "")

    def binlog_coordinates(self) -> BinlogCoordinates | None:
        row = self.row_dict(self.dialect.binlog_status_sql)
        if not row:
            return None
        return BinlogCoordinates(str(row["File"]), int(row["Position"]))

    def replica_status(self) -> ReplicaStatus | None:
        """None when the server is not configured as a replica."""
        row = self.row_dict(self.dialect.replica_status_sql)
        if not row:
            return None

        def g(*names: str, default=None):
            for n in names:
                if n in row:
                    return row[n]
            return default

        behind = g("Seconds_Behind_Master", "Seconds_Behind_Source")
        # A SQL thread error quotes the failing statement (it may carry a password): kind and digest only.
        errors = [redact_statements(str(g(k, default="") or "")) for k in
                  ("Last_IO_Error", "Last_SQL_Error", "Last_Replica_IO_Error", "Last_Replica_SQL_Error")]
        using_gtid = str(g("Using_Gtid", default="")).lower() in ("slave_pos", "current_pos") or \
            str(g("Auto_Position", default="0")) == "1"
        source_id = g("Master_Server_Id", "Source_Server_Id", "Master_Server_id")
        source_uuid = g("Master_UUID", "Source_UUID")
        return ReplicaStatus(
            source_server_id=int(source_id) if source_id not in (None, "") else None,
            source_uuid=str(source_uuid) if source_uuid else None,
            source_host=str(g("Master_Host", "Source_Host", default="")),
            source_port=int(g("Master_Port", "Source_Port", default=0) or 0),
            io_running=str(g("Slave_IO_Running", "Replica_IO_Running", default="No")) == "Yes",
            sql_running=str(g("Slave_SQL_Running", "Replica_SQL_Running", default="No")) == "Yes",
            seconds_behind=None if behind is None else int(behind),
            last_error="; ".join(e for e in errors if e),
            using_gtid=using_gtid,
        )

    def identity(self) -> ServerIdentity:
        """Who this server is (see ServerIdentity)."""
        server_id, uuid, hostname, port = self.rows(self.dialect.identity_sql)[0]
        return ServerIdentity(int(server_id), str(uuid) if uuid else None, str(hostname), int(port))

    def global_privileges(self, user: str) -> dict[str, dict[str, str]]:
        """For every account named ``user`` (any host): its global privileges (ON *.*), each mapped
        to where it comes from ("direct" or the role that carries it), roles followed. Read with
        SHOW GRANTS as this (admin) session; the lines' password hashes are never kept."""
        # The accounts from the server's privilege cache, not from the mysql.user table: a
        # replica applying a CREATE USER or GRANT holds that table, and preflight must not wait.
        accounts = []
        for (grantee,) in self.rows("SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES"):
            m = _GRANTEE.fullmatch(str(grantee))
            if m and m.group(1).replace("''", "'") == user:
                accounts.append((user, m.group(2).replace("''", "'")))
        return {f"'{u}'@'{h}'": self._privileges_of("SHOW GRANTS FOR %s@%s", (u, h), "direct", 0)
                for u, h in sorted(accounts)}

    def _privileges_of(self, sql: str, args: tuple, via: str, depth: int) -> dict[str, str]:
        found: dict[str, str] = {}
        for (line,) in self.rows(sql, args):
            line = str(line)
            on = _GRANT_ON.match(line)
            if on:
                if on.group("obj") == "*.*":
                    privs = [p.strip().upper() for p in on.group("privs").split(",")]
                    if " WITH GRANT OPTION" in line:
                        privs.append("GRANT OPTION")
                    for p in privs:
                        found.setdefault(p, via)
                continue
            roles = _GRANT_ROLES.match(line)
            if roles is None or depth >= _MAX_ROLE_DEPTH:
                continue
            for name, host in _ROLE_NAME.findall(roles.group("roles")):
                name = name.replace("``", "`")
                if host:  # MySQL roles are accounts: `role`@`%`
                    inner = self._privileges_of("SHOW GRANTS FOR %s@%s", (name, host.replace("``", "`")),
                                                f"role {name}@{host}", depth + 1)
                else:  # MariaDB roles have no host
                    inner = self._privileges_of("SHOW GRANTS FOR %s", (name,), f"role {name}", depth + 1)
                for p, where in inner.items():
                    found.setdefault(p, where if via == "direct" else via)
        return found

    def client_sessions(self) -> list[tuple[int, str]]:
        """Every client session a fence must end: (id, user). All but this session, server
        internals and replication streams — privileged sessions too (root, an admin user, another
        bgqueue process), because read_only does not stop a user with SUPER / READ_ONLY ADMIN."""
        own = self.scalar("SELECT CONNECTION_ID()")
        rows = self.rows("SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST")
        return [(int(pid), str(user)) for pid, user, command in rows
                if int(pid) != int(own) and user not in _SYSTEM_USERS and str(command) not in _REPLICATION_COMMANDS]

    # --- changes ----------------------------------------------------------------
    def set_read_only(self, on: bool) -> None:
        for sql in self.dialect.set_read_only_sql(on):
            self.execute(sql)

    def end_sessions(self, sessions: list[tuple[int, str]]) -> int:
        """KILL each session; ones that already ended are fine. Returns how many were killed."""
        killed = 0
        for pid, _user in sessions:
            try:
                self.execute(f"KILL CONNECTION {int(pid)}")
                killed += 1
            except pymysql.err.InternalError as e:
                if e.args[0] != _UNKNOWN_THREAD:
                    raise
            except pymysql.err.OperationalError as e:
                if e.args[0] != _UNKNOWN_THREAD:
                    raise
        return killed

    def wait_for_position(self, position: str, timeout_s: float, *, slice_s: float = _WAIT_SLICE_S,
                          between_slices: Callable[[], None] | None = None) -> bool:
        """Block (server-side, bounded) until this replica has applied ``position``, in slices of
        ``slice_s``; ``between_slices`` runs after each slice that did not reach it (a procedure
        renews its lease there, and learns there if it lost the deployment)."""
        deadline = time.monotonic() + timeout_s
        slice_s = min(slice_s, _WAIT_SLICE_S)
        while True:
            left = deadline - time.monotonic()
            result = self.scalar(self.dialect.wait_for_position_sql(), (position, float(max(0.0, min(left, slice_s)))))
            if self.dialect.wait_reached(result) or left <= slice_s:
                return self.dialect.wait_reached(result)
            if between_slices is not None:
                between_slices()

    def promote(self) -> None:
        """Stop and forget replication, then accept writes."""
        self.execute(self.dialect.stop_replica_sql)
        failpoint("promote.after_stop_replica")
        self.execute(self.dialect.reset_replica_sql)
        self.set_read_only(False)

    def replicate_from(self, source: Endpoint, repl: Credentials, tls: Tls | str = "disabled") -> None:
        """Become a GTID replica of ``source`` starting from this server's own position.

        With ``tls`` required or verify the replica must connect encrypted (verify: the source's
        certificate checked against ``tls.source_ca``, a path on this server's host): otherwise
        ProcedureFailed after START, replication left configured for an operator to look at.
        """
        tls = tlsconnect.as_tls(tls)
        status = self.replica_status()
        if status is not None:
            self.execute(self.dialect.stop_replica_sql)
            self.execute(self.dialect.reset_replica_sql)
        for sql in self.dialect.prepare_reverse_sql():
            self.execute(sql)
        sql, args = self.dialect.change_source(source.host, source.port, repl.user, repl.password(), tls=tls)
        self.execute(sql, args, secret=True)
        self.execute(self.dialect.start_replica_sql)
        if tls.encrypted:
            self._check_replication_tls(source, tls)

    def _check_replication_tls(self, source: Endpoint, tls: Tls) -> None:
        """The replica's own view: SSL on (and the certificate checked, for verify), and no error
        while its IO thread connects. MariaDB's MASTER_SSL=1 without certificate verification falls
        back to plaintext against a source without TLS (checked on 10.11); with ``required`` the
        caller has an encrypted admin session on that very source, so the source does offer TLS
        (only someone in the path could still strip it: that is what ``verify`` is for)."""
        where = f"{self.label} {self.endpoint}: reverse replication from {source}"
        deadline = time.monotonic() + _TLS_START_WATCH_S
        while True:
            row = self.row_dict(self.dialect.replica_status_sql) or {}
            ssl_on = str(row.get("Master_SSL_Allowed", row.get("Source_SSL_Allowed", ""))) == "Yes"
            verify_on = str(row.get("Master_SSL_Verify_Server_Cert",
                                    row.get("Source_SSL_Verify_Server_Cert", ""))) == "Yes"
            if not ssl_on or (tls.mode == "verify" and not verify_on):
                raise ProcedureFailed(f"{where}: the replica's TLS is not on (SSL allowed {ssl_on}, server certificate "
                               f"verified {verify_on}; tls {tls.mode})")
            io_error = str(row.get("Last_IO_Error", row.get("Last_Replica_IO_Error", "")) or "")
            if io_error:
                raise ProcedureFailed(f"{where}: the replica cannot connect: {io_error}")
            io = str(row.get("Slave_IO_Running", row.get("Replica_IO_Running", "")))
            if io == "Yes" or time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def stop_replication(self) -> None:
        if self.replica_status() is not None:
            self.execute(self.dialect.stop_replica_sql)
            self.execute(self.dialect.reset_replica_sql)


def servers(spec: ClusterSpec) -> tuple[Server, Server]:
    """Admin sessions (not yet connected) on the cluster's blue and green, with its timeouts and TLS."""
    t = spec.thresholds
    return (Server(spec.blue, spec.admin, label="blue", connect_timeout=t.connect_timeout_s, tls=spec.tls),
            Server(spec.green, spec.admin, label="green", connect_timeout=t.connect_timeout_s, tls=spec.tls))
