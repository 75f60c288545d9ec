"""The built-in binlog consumer of one pipeline: reads the cluster's writer, follows route flips.

It reads the server the routing registry names as the writer (blue before the switchover, green
after), from its stored GTID position, and delivers each transaction's row changes of the chosen
tables to the pipeline's Redis stream together with the new position (consumer_state). Why this
gives 0 lost and 0 duplicated events:
- the position only moves with a delivered transaction (on its commit event, never its GTID
  event), in the same atomic write; a partial transaction is dropped and read again;
- the reader's ``auto_position`` follows every commit, so mysql-replication's own silent reconnect
  (after a killed dump thread) resumes after the last delivered transaction, not from the start;
- after a route flip it connects to the new primary with the same GTID position: green's binlog
  holds blue's transactions under their original GTIDs (log_slave_updates), and green reached
  blue's final position before it was promoted, so reading resumes exactly after the last one.

It reads the route from the registry (with a store: the store's, the authority), wakes on a route
message only to read it again, and follows a route only to one of the cluster's own servers
(the fleet file's blue and green): the binlog reader's credentials go nowhere else.
"""
from __future__ import annotations

import logging
import threading
import time

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from bgqueue.adapters.cdc import position as gtidpos
from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.cdc.events import ENTRY_FIELDS, row_entries
from bgqueue.adapters.mysql import connect as tlsconnect
from bgqueue.adapters.mysql.dialects import parse_version
from bgqueue.adapters.routing.registry import Route, RoutingRegistry
from bgqueue.adapters.routing.route import endpoint_set
from bgqueue.model.cdc import BinlogPipeline
from bgqueue.model.fleet import ClusterSpec

log = logging.getLogger(__name__)

EVENTS = [MariadbGtidEvent, GtidEvent, XidEvent, QueryEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent,
          HeartbeatLogEvent, RotateEvent]
MARIADB_FL_STANDALONE = 0x01  # a GTID event with this flag is followed by one statement, no COMMIT
REPORT_EVERY_S = 0.5
ROUTE_CHECK_EVERY_S = 1.0  # pub/sub wakes us at once; this GET covers messages lost while disconnected
LEASE_EVERY_S = 1.0
FLUSH_EMPTY_EVERY_S = 0.5  # positions of transactions with no selected rows are stored lazily


class SourceChanged(Exception):
    """The routing registry names another writer: reconnect there."""


class LeaseLost(Exception):
    """Another consumer process holds the pipeline now."""


class RouteRefused(Exception):
    """The route names a server that is neither the cluster's blue nor its green."""


class BinlogConsumer:
    """One pipeline's reader loop; ``run()`` returns when ``stop`` is set."""

    def __init__(self, cluster: ClusterSpec, pipeline: BinlogPipeline, client, *, stop: threading.Event,
                 owner: str, route_changed: threading.Event | None = None, connect_timeout: float = 5.0,
                 routing: RoutingRegistry | None = None):
        self.cluster, self.pipeline, self.stop, self.owner = cluster, pipeline, stop, owner
        self.state = ConsumerState(client, cluster.name, pipeline)
        self.routing = routing or RoutingRegistry(client)
        self.allowed = endpoint_set([cluster.blue, cluster.green])
        self._refused: tuple | None = None
        self.route_changed = route_changed or threading.Event()
        self.connect_timeout = connect_timeout
        self.tables = pipeline.schema_tables()
        self.creds = pipeline.user or cluster.replication
        self.reconnects = 0
        self.stream_starts = 0  # binlog dump sessions begun, including mysql-replication's own reconnects
        self.last_error: str | None = None
        self._reader: BinLogStreamReader | None = None

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Stream until ``stop`` is set; errors are reported to Redis and retried with backoff."""
        backoff = 0.1
        attempts = 0
        try:
            while not self.stop.is_set():
                try:
                    if not self.state.acquire(self.owner):
                        # Another process reads this pipeline: wait, without touching its status.
                        self.stop.wait(1.0)
                        continue
                    self.reconnects, attempts = attempts, attempts + 1
                    self._stream()
                    backoff = 0.1
                except (SourceChanged, LeaseLost):
                    backoff = 0.1

                except Exception as e:  # report, wait, start again from the stored position
                    self.last_error = _describe(e)
                    log.warning("cdc %s/%s: %s", self.cluster.name, self.pipeline.name, self.last_error)
                    try:
                        self._report("error", last_error=self.last_error, last_error_at=f"{time.time():.3f}")
                    except Exception:
                        pass  # Redis itself may be what failed
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                finally:
                    self._close_reader()
        finally:
            try:
                if self.state.lease_holder() == self.owner:
                    self._report("stopped")
                    self.state.release(self.owner)
            except Exception:
                pass  # Redis is gone: the lease expires by itself

    def _stream(self) -> None:
        self.route_changed.clear()  # before reading the route: a flip from now on sets it again
        route = self.routing.get(self.cluster.name)
        if route is not None and not self._accepted(route):
            raise RouteRefused(self._refused[2])  # reported and retried; nothing is connected to
        endpoint = (route.host, route.port) if route else (self.cluster.blue.host, self.cluster.blue.port)
        self.route_version = route.version if route else 0
        self.source = f"{endpoint[0]}:{endpoint[1]}"
        self.flavour, current = self._probe(endpoint)
        stored = self.state.position()
        if "gtid" not in stored:
            initial = current if self.pipeline.start == "current" else ""
            self.state.commit("", initial, reader=self.source, committed_gtid="", flavour=self.flavour,
                              route_version=self.route_version, fields=ENTRY_FIELDS, entries=[])
            stored = self.state.position()
        if stored.get("flavour") and stored["flavour"] != self.flavour:
            raise RuntimeError(f"stored position is a {stored['flavour']} GTID position but {self.source} "
                               f"is {self.flavour}")
        self.stored = self.pos = stored["gtid"]
        self._reader = self._open(endpoint, self.pos)
        self._report("streaming", connected_at=f"{time.time():.3f}", caught_up=0)
        self._read_loop()

    def _read_loop(self) -> None:
        trx: list | None = None  # entries of the open transaction (None: none open)
        trx_gtid, began = "", False
        last_event_ts = 0.0
        caught_up = False
        now = time.monotonic()
        next_report, next_route, next_lease, next_flush = now, now + ROUTE_CHECK_EVERY_S, now + LEASE_EVERY_S, now
        dirty = False  # in-memory position ahead of the stored one (transactions without selected rows)
        while not self.stop.is_set():
            event = self._reader.fetchone()
            if event is None:  # the server ended the stream (EOF); reconnect from the stored position
                raise ConnectionError(f"{self.source} ended the binlog stream")
            if isinstance(event, (MariadbGtidEvent, GtidEvent)):
                # A GTID while a transaction is open means the library reconnected mid-transaction:
                # the server sends that transaction again from its start, so drop what we have.
                trx, trx_gtid = [], event.gtid
                began = isinstance(event, MariadbGtidEvent) and not event.flags & MARIADB_FL_STANDALONE
                caught_up = False
                continue
            if isinstance(event, HeartbeatLogEvent):
                caught_up = trx is None
            elif isinstance(event, RotateEvent) and not event.timestamp:
                self.stream_starts += 1  # every dump session starts with an artificial rotate
            elif trx is not None and isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                if (event.schema, event.table) in self.tables:
                    trx.extend(row_entries(event, trx_gtid, self.source))
            elif trx is not None and isinstance(event, QueryEvent):
                query = event.query.strip().upper()
                if query == "BEGIN":
                    began = True
                elif not began or query == "COMMIT":  # a single statement (DDL) or a non-XA commit
                    dirty = self._commit(trx_gtid, trx) or dirty
                    trx, last_event_ts = None, float(event.timestamp)
            elif trx is not None and isinstance(event, XidEvent):
                dirty = self._commit(trx_gtid, trx) or dirty
                trx, last_event_ts = None, float(event.timestamp)
            now = time.monotonic()
            if dirty and (caught_up or now >= next_flush):
                self._flush()
                dirty, next_flush = False, now + FLUSH_EMPTY_EVERY_S
            if now >= next_report:
                lag = 0.0 if caught_up else max(0.0, time.time() - last_event_ts) if last_event_ts else None
                self._report("streaming", lag_s=None if lag is None else round(lag, 3), caught_up=int(caught_up),
                             position=self.stored)
                next_report = now + REPORT_EVERY_S
            if trx is None and (self.route_changed.is_set() or now >= next_route):
                next_route = now + ROUTE_CHECK_EVERY_S
                self._check_route(dirty)
            if now >= next_lease:
                next_lease = now + LEASE_EVERY_S
                if not self.state.acquire(self.owner):
                    raise LeaseLost()
        if dirty:
            self._flush()

    # --- deliveries ----------------------------------------------------------------------
    def _commit(self, gtid: str, entries: list) -> bool:
        """Advance the position past ``gtid``; deliver now if it changed selected rows.

        Returns True when the position moved in memory only (to be flushed lazily).
        """
        new = gtidpos.advance(self.flavour, self.pos, gtid)
        if entries:
            self.state.commit(self.stored, new, reader=self.source, committed_gtid=gtid, flavour=self.flavour,
                              route_version=self.route_version, fields=ENTRY_FIELDS, entries=entries)
            self.stored = new
        self.pos = new
        self._reader.auto_position = new  # the library's own reconnects resume from here
        return self.stored != self.pos

    def _flush(self) -> None:
        if self.stored != self.pos:
            self.state.commit(self.stored, self.pos, reader=self.source, committed_gtid="", flavour=self.flavour,
                              route_version=self.route_version, fields=ENTRY_FIELDS, entries=[])
            self.stored = self.pos

    def _check_route(self, dirty: bool) -> None:
        self.route_changed.clear()
        route = self.routing.get(self.cluster.name)
        if route is None or not self._accepted(route):
            return  # keep reading the server we read (a refused route is logged once)
        if f"{route.host}:{route.port}" != self.source:
            if dirty:
                self._flush()
            log.info("cdc %s/%s: writer moved from %s to %s:%s (route v%s)", self.cluster.name,
                     self.pipeline.name, self.source, route.host, route.port, route.version)
            raise SourceChanged()
        self.route_version = route.version

    def _accepted(self, route: Route) -> bool:
        if route.allowed_by(self.allowed):
            return True
        seen = (route.version, route.endpoint)
        if self._refused is None or self._refused[:2] != seen:
            why = (f"route v{route.version} names {route.host}:{route.port}, which is neither blue "
                   f"{self.cluster.blue} nor green {self.cluster.green}: not followed")
            self._refused = (*seen, why)
            log.warning("cdc %s/%s: %s", self.cluster.name, self.pipeline.name, why)
        return False

    # --- connections ---------------------------------------------------------------------
    def _settings(self, host: str, port: int) -> dict:
        # The cluster's TLS (verified with mode verify) and no clear-text password plugin.
        return dict(host=host, port=port, user=self.creds.user, password=self.creds.password(),
                    connect_timeout=self.connect_timeout, read_timeout=max(10.0, self.pipeline.heartbeat_s * 20),
                    **tlsconnect.connect_args(self.cluster.tls))

    def _connect(self, **settings) -> pymysql.connections.Connection:
        """Every session of this consumer, the binlog reader's own included (its pymysql_wrapper):
        refused unless encrypted when the cluster's TLS says so."""
        conn = pymysql.connect(**settings)
        tlsconnect.check_encrypted(conn, self.cluster.tls, f"cdc {self.cluster.name}/{self.pipeline.name} "
                                                           f"{settings.get('host')}:{settings.get('port')}")
        return conn

    def _probe(self, endpoint: tuple[str, int]) -> tuple[str, str]:
        """(flavour, the server's current GTID position) with a short ordinary connection."""
        conn = self._connect(**self._settings(*endpoint), autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                flavour, _ = parse_version(cur.fetchone()[0])
                cur.execute("SELECT @@GLOBAL.gtid_binlog_pos" if flavour == "mariadb" else
                            "SELECT @@GLOBAL.gtid_executed")
                return flavour, str(cur.fetchone()[0] or "")
        finally:
            conn.close()

    def _open(self, endpoint: tuple[str, int], pos: str) -> BinLogStreamReader:
        if self.flavour == "mysql" and not pos:
            # mysql-replication takes an empty GTID set for "no GTID" and would start at the end.
            raise RuntimeError("start: earliest needs a non-empty GTID position on MySQL; use start: current")
        schemas = sorted({s for s, _ in self.tables})
        return BinLogStreamReader(
            connection_settings=self._settings(*endpoint), pymysql_wrapper=self._connect,
            server_id=self.pipeline.client_server_id(self.cluster.name),
            blocking=True, auto_position=pos, is_mariadb=self.flavour == "mariadb",
            slave_heartbeat=self.pipeline.heartbeat_s, only_events=EVENTS,
            only_schemas=schemas, only_tables=sorted({t for _, t in self.tables}),
            # Its parameter logging would print connection settings (the password) at INFO.
            enable_logging=False,
        )

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:
                pass
            self._reader = None

    def _report(self, state: str, **fields) -> None:
        self.state.report(self.owner, state=state, source=fields.pop("source", getattr(self, "source", None)),
                          route_version=getattr(self, "route_version", None), reconnects=self.reconnects,
                          stream_starts=self.stream_starts,
                          last_error=self.last_error, heartbeat_s=self.pipeline.heartbeat_s, **fields)


def _describe(e: BaseException) -> str:
    """An error for the status and the log: its type and message (pymysql messages carry no password)."""
    if isinstance(e, pymysql.MySQLError) and len(e.args) >= 2:
        return f"{type(e).__name__} {e.args[0]}: {e.args[1]}"
    return f"{type(e).__name__}: {e}"
