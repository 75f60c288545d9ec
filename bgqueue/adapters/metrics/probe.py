"""One cluster's measurements, taken once per sampler tick over persistent connections.

Roles: the server the routing registry names is the PRIMARY, the cluster's other endpoint is
the REPLICA (after a switchover green is primary and blue its reverse replica, so lag then
measures reverse replication); with no route, blue is primary.

Per tick, in this order:
  1. replica: read the heartbeat row and SHOW SLAVE STATUS (Seconds_Behind_Master, threads);
  2. primary: SHOW GLOBAL STATUS (counters → per-second rates), the probe query (timed), and
     the heartbeat write.
Reading the replica before writing keeps one tick between a heartbeat and its read, so a healthy
replica holds the newest heartbeat written and ``lag_ms`` is 0; otherwise ``lag_ms`` is the
sampler's clock minus the heartbeat the replica holds (one process writes and reads: no skew).
SHOW SLAVE STATUS is read every ``replica_status_s`` (default 1 s) and its values are carried in
every sample until the next read: Seconds_Behind_Master only has 1-second resolution, and that
statement (54 columns of metadata to parse) costs half of all the sampler's query CPU.
Rates are the server's: ``qps`` includes the sampler's own 3 statements and ``writes_per_s`` its
1 heartbeat per tick on the primary (12 and 4 per second at 4 Hz).

Heartbeats are written ONLY with the cluster's ``monitor`` user, which read_only stops: a write
landing on a fenced primary would be an errant GTID that breaks reverse replication. A write
refused with 1290 (read-only) is normal during a switchover and is skipped. Without ``monitor``
credentials nothing is written: reads use the admin user and ``lag_ms`` comes from
Seconds_Behind_Master (``lag_source`` says which).
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections import deque

import pymysql

from bgqueue.adapters.metrics.samples import LAG_SOURCE_HEARTBEAT, LAG_SOURCE_SECONDS_BEHIND
from bgqueue.adapters.mysql.server import Server
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.schema_base import Endpoint

log = logging.getLogger(__name__)

HEARTBEAT_TABLE = "bgq_meta.heartbeat"
_CREATE_HEARTBEAT = (f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} "
                     "(id VARCHAR(64) NOT NULL PRIMARY KEY, ts DOUBLE NOT NULL)")
_HEARTBEAT_EXISTS = ("SELECT COUNT(*) FROM information_schema.TABLES "
                     "WHERE TABLE_SCHEMA = 'bgq_meta' AND TABLE_NAME = 'heartbeat'")
_WRITE_HEARTBEAT = f"INSERT INTO {HEARTBEAT_TABLE} (id, ts) VALUES (%s, %s) ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
_READ_HEARTBEAT = f"SELECT ts FROM {HEARTBEAT_TABLE} WHERE id = %s"
COUNTERS = ("Questions", "Com_insert", "Com_update", "Com_delete", "Connections", "Aborted_connects",
            "Aborted_clients", "Access_denied_errors", "Innodb_deadlocks", "Innodb_buffer_pool_reads",
            "Innodb_buffer_pool_read_requests")
_STATUS = ("SHOW GLOBAL STATUS WHERE Variable_name IN ("
           + ", ".join(f"'{n}'" for n in ("Threads_connected",) + COUNTERS) + ")")
READ_ONLY = 1290
_RECONNECT_AFTER_S = 1.0  # a server that refused a connect is retried at most this often
_TABLE_RETRY_S = 30.0  # after a heartbeat table creation failed for another reason than read_only


def rates(prev: dict[str, int], cur: dict[str, int], dt: float) -> dict[str, float]:
    """Per-second rates from two status snapshots ``dt`` seconds apart.

    Empty when ``dt`` is not positive or a counter went backwards (the server restarted).
    Counters a flavour lacks (Innodb_deadlocks) count as 0; MySQL's access-denied errors are read
    from performance_schema (``Dialect.access_denied_sql``).
    """
    if dt <= 0:
        return {}
    d = {n: cur.get(n, 0) - prev.get(n, 0) for n in COUNTERS}
    if any(v < 0 for v in d.values()):
        return {}
    reqs = d["Innodb_buffer_pool_read_requests"]
    return {
        "qps": d["Questions"] / dt,
        "writes_per_s": (d["Com_insert"] + d["Com_update"] + d["Com_delete"]) / dt,
        "connections_per_s": d["Connections"] / dt,
        "errors_per_s": (d["Aborted_connects"] + d["Aborted_clients"] + d["Access_denied_errors"]) / dt,
        "deadlocks_per_s": d["Innodb_deadlocks"] / dt,
        # No logical read in the interval means no miss either.
        "bp_hit_ratio": 1.0 - d["Innodb_buffer_pool_reads"] / reqs if reqs > 0 else 1.0,
    }


class LatencyWindow:
    """Probe latencies of the last ``seconds``; failures count as errors, not as latencies."""

    def __init__(self, seconds: float = 30.0):
        self.seconds = seconds
        self._items: deque[tuple[float, float | None]] = deque()

    def add(self, t: float, ms: float | None) -> None:
        self._items.append((t, ms))
        while self._items and self._items[0][0] < t - self.seconds:
            self._items.popleft()

    def summary(self) -> dict[str, float]:
        """probe_p50/p90/p95/p99_ms (nearest rank; absent with no success) and probe_errors."""
        ok = sorted(ms for _, ms in self._items if ms is not None)
        out = {"probe_errors": float(len(self._items) - len(ok))}
        if ok:
            for q in (50, 90, 95, 99):
                out[f"probe_p{q}_ms"] = ok[max(0, math.ceil(q / 100 * len(ok)) - 1)]
        return out


class _Link:
    """A persistent session on one server; dropped on a connection error and reopened later."""

    def __init__(self, endpoint: Endpoint, spec: ClusterSpec, label: str, timeout_s: float):
        creds = spec.monitor or spec.admin  # admin only reads: see the module docstring
        self.endpoint = endpoint
        self._server = Server(endpoint, creds, label=f"{spec.name} {label}", connect_timeout=timeout_s,
                              tls=spec.tls, read_timeout=timeout_s)
        self._connected = False
        self._last_error: str | None = None
        self._retry_at = 0.0
        self.table_ready = False
        self.table_retry_at = 0.0
        self.prev: tuple[float, dict[str, int]] | None = None  # last status snapshot as primary

    def get(self) -> Server | None:
        if self._connected:
            return self._server
        if time.monotonic() < self._retry_at:
            return None
        try:
            self._server.connect()
        except (BgqueueError, pymysql.err.MySQLError, OSError) as e:
            self._retry_at = time.monotonic() + _RECONNECT_AFTER_S
            # Once per distinct error, not 4 times a second (messages name users and env vars, never passwords).
            message = str(e)
            (log.debug if message == self._last_error else log.warning)("sampler: %s", message)
            self._last_error = message
            return None
        if self._last_error is not None:
            log.info("sampler: %s %s: connected again", self._server.label, self.endpoint)
        self._connected, self.table_ready, self._last_error = True, False, None
        return self._server

    def failed(self, exc: BaseException) -> None:
        """Keep the session if the server answered with an SQL error; otherwise reconnect later."""
        code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
        if isinstance(code, int) and 1000 <= code < 2000:
            return
        self.close()

    def close(self) -> None:
        self._server.close()
        self._connected = False


class ClusterProbe:
    """Samples one cluster. Not thread-safe: the sampler runs one ``sample()`` at a time per cluster."""

    def __init__(self, spec: ClusterSpec, *, window_s: float = 30.0, timeout_s: float = 2.0,
                 replica_status_s: float = 1.0):
        self.spec = spec
        self.replica_status_s = replica_status_s
        self._replica_status: dict[str, float] = {}  # the last SHOW SLAVE STATUS, carried forward
        self._replica_status_at = -1e18
        self.heartbeat_id = spec.name
        self.writes_heartbeat = spec.monitor is not None
        self._links = {"blue": _Link(spec.blue, spec, "blue", timeout_s),
                       "green": _Link(spec.green, spec, "green", timeout_s)}
        self._primary = "blue"
        self._route_known = True
        self._latency = LatencyWindow(window_s)
        self._first_written: float | None = None  # on the current primary, by this probe
        self._last_written: float | None = None

    def set_route(self, endpoint: tuple[str, int] | None) -> None:
        """Follow the routing registry: the endpoint it names is primary (None: blue).

        Call it between samples, never during one."""
        blue, green = self.spec.blue, self.spec.green
        primary = "green" if endpoint == (green.host, green.port) else "blue"
        # A route naming neither endpoint: we cannot tell the primary, so write nowhere.
        self._route_known = endpoint is None or endpoint in ((blue.host, blue.port), (green.host, green.port))
        if primary != self._primary:
            self._primary = primary
            self._first_written = self._last_written = None
            self._replica_status, self._replica_status_at = {}, -1e18
            for link in self._links.values():
                link.prev = None

    def sample(self) -> tuple[float, dict[str, float]]:
        """Take one sample: ``(ts, metrics)``. Server and network errors do not raise: what could
        not be measured is absent, and ``primary_up``/``replica_up`` say which side failed."""
        ts = time.time()
        primary = self._links[self._primary]
        replica = self._links["green" if self._primary == "blue" else "blue"]
        out: dict[str, float] = {"primary_port": float(primary.endpoint.port)}
        held = self._observe_replica(replica, out)
        self._lag(held, out)  # before this tick's heartbeat: the replica has had one tick for the last one
        self._observe_primary(primary, out)
        return ts, out

    def close(self) -> None:
        for link in self._links.values():
            link.close()

    # --- replica ----------------------------------------------------------------------------
    def _observe_replica(self, link: _Link, out: dict) -> tuple[float | None, float] | None:
        """(heartbeat ts held or None, when read), or None when the replica could not be read."""
        srv = link.get()
        if srv is None:
            out["replica_up"] = 0.0
            return None
        held = None
        try:
            if self.writes_heartbeat:
                try:
                    value = srv.scalar(_READ_HEARTBEAT, (self.heartbeat_id,))
                    held = (None if value is None else float(value), time.time())
                except pymysql.err.ProgrammingError:  # 1146: the table has not reached it yet
                    held = (None, time.time())
            if time.monotonic() - self._replica_status_at >= self.replica_status_s:
                first = not self._replica_status
                self._replica_status = self._read_replica_status(srv)
                # Spread the clusters' reads over the period instead of all in the same tick.
                self._replica_status_at = time.monotonic() - (random.uniform(0, self.replica_status_s) if first else 0)
        except (pymysql.err.MySQLError, OSError) as e:
            link.failed(e)
            out["replica_up"] = 0.0
            self._replica_status, self._replica_status_at = {}, -1e18
            return None
        out["replica_up"] = 1.0
        out.update(self._replica_status)
        return held

    @staticmethod
    def _read_replica_status(srv: Server) -> dict[str, float]:
        status = srv.replica_status()
        out = {"replica_io_running": 1.0 if status and status.io_running else 0.0,
               "replica_sql_running": 1.0 if status and status.sql_running else 0.0}
        if status and status.seconds_behind is not None:
            out["seconds_behind"] = float(status.seconds_behind)
        return out

    # --- primary ----------------------------------------------------------------------------
    def _observe_primary(self, link: _Link, out: dict) -> None:
        srv = link.get()
        if srv is None:
            out["primary_up"] = 0.0
            self._latency.add(time.time(), None)  # unreachable is what a client would observe too
            out.update(self._latency.summary())
            return
        try:
            self._status(link, srv, out)
            self._probe(link, srv, out)
            if self.writes_heartbeat:
                out["heartbeat_written"] = 1.0 if self._write_heartbeat(link, srv) else 0.0
            out["primary_up"] = 1.0
        except (pymysql.err.MySQLError, OSError) as e:
            link.failed(e)
            out["primary_up"] = 0.0
        out.update(self._latency.summary())

    def _status(self, link: _Link, srv: Server, out: dict) -> None:
        now = time.monotonic()
        values = {str(k): int(v) for k, v in srv.rows(_STATUS)}
        if srv.dialect.access_denied_sql:  # MySQL: not a status variable
            values["Access_denied_errors"] = int(srv.scalar(srv.dialect.access_denied_sql) or 0)
        out["threads_connected"] = float(values.pop("Threads_connected", 0))
        if link.prev is not None:
            out.update(rates(link.prev[1], values, now - link.prev[0]))
        link.prev = (now, values)

    def _probe(self, link: _Link, srv: Server, out: dict) -> None:
        # Reading our heartbeat row is a real indexed read; before the table exists, SELECT 1.
        sql, args = (_READ_HEARTBEAT, (self.heartbeat_id,)) if link.table_ready else ("SELECT 1", None)
        start = time.perf_counter()
        try:
            srv.scalar(sql, args)
        except (pymysql.err.MySQLError, OSError):
            self._latency.add(time.time(), None)
            raise
        ms = (time.perf_counter() - start) * 1000.0
        self._latency.add(time.time(), ms)
        out["probe_ms"] = ms

    def _write_heartbeat(self, link: _Link, srv: Server) -> bool:
        if not self._route_known or not self._ensure_table(link, srv):
            return False
        ts = time.time()
        try:
            srv.execute(_WRITE_HEARTBEAT, (self.heartbeat_id, ts))
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] == READ_ONLY:  # fenced during a switchover: normal, skip
                return False
            raise
        if self._first_written is None:
            self._first_written = ts
        self._last_written = ts
        return True

    def _ensure_table(self, link: _Link, srv: Server) -> bool:
        if link.table_ready:
            return True
        if time.monotonic() < link.table_retry_at:
            return False
        # Check first: CREATE ... IF NOT EXISTS on an existing table would still be binlogged.
        if int(srv.scalar(_HEARTBEAT_EXISTS)) == 0:
            try:
                srv.execute(_CREATE_HEARTBEAT)
            except pymysql.err.MySQLError as e:
                code = e.args[0] if e.args else None
                if code != READ_ONLY:
                    log.warning("cluster %s: cannot create %s on %s: %s", self.spec.name, HEARTBEAT_TABLE,
                                link.endpoint, e.args[-1] if e.args else e)
                    link.table_retry_at = time.monotonic() + _TABLE_RETRY_S
                    if not (isinstance(code, int) and 1000 <= code < 2000):
                        raise
                return False
        link.table_ready = True
        return True

    # --- lag --------------------------------------------------------------------------------
    def _lag(self, held: tuple[float | None, float] | None, out: dict) -> None:
        if not self.writes_heartbeat:
            if "seconds_behind" in out:
                out["lag_ms"] = out["seconds_behind"] * 1000.0
                out["lag_source"] = LAG_SOURCE_SECONDS_BEHIND
            return
        # Nothing written on this primary yet: an older heartbeat says nothing about now.
        if held is None or self._first_written is None or self._last_written is None:
            return
        held_ts, read_at = held
        if held_ts is not None and held_ts >= self._last_written:
            lag = 0.0
        else:
            # A replica holding only heartbeats older than ours is behind by at least this much.
            since = self._first_written if held_ts is None else max(held_ts, self._first_written)
            lag = max(0.0, (read_at - since) * 1000.0)
        out["lag_ms"] = lag
        out["lag_source"] = LAG_SOURCE_HEARTBEAT
