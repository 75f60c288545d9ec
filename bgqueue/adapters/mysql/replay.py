"""Replay sessions on blue and green pinned at one GTID position, and the SQL that differs by server.

One pinned pair = a session on blue and a session on green, each in a READ ONLY transaction whose
snapshot is the same point of blue's binlog:
1. green's replication is stopped (so green cannot run past the point about to be chosen);
2. blue: START TRANSACTION WITH CONSISTENT SNAPSHOT; the snapshot's binlog file:position
   (MariaDB's binlog_snapshot_file/_position status, consistent with the snapshot by design) is
   mapped to a GTID position with BINLOG_GTID_POS();
3. green: START SLAVE UNTIL master_gtid_pos=<that GTID>; once its SQL thread has stopped there,
   green's own consistent snapshot is opened (checked: still at that position);
4. repeated for each pair (each pair has its own point, later than the one before); then green
   resumes replication. Snapshots keep their view while replication runs on, so green is paused
   only while the pairs are pinned (milliseconds each), not while the queries run. A pair is
   pinned anew once its snapshot is ``snapshot_max_age_s`` old: an old read view costs every read
   an undo-chain walk under writes (measured: a 14-minute replay ran 7× slower than pt-upgrade on
   live servers), and on blue it holds back purge, which production pays for.
Replication resumes whatever happens: ``resume`` runs in a ``finally``, and a guard process
(``replay_guard``) started before the pause resumes it if this process dies (kill -9, an OOM, a
Celery hard time limit) or stalls past a deadline.

MySQL 8 has no binlog_snapshot status: its dialect takes the snapshot under a brief FLUSH TABLES
WITH READ LOCK (as mysqldump --single-transaction --source-data does) and reads gtid_executed,
then runs green's SQL thread UNTIL SQL_AFTER_GTIDS. Only MariaDB is exercised by the tests so far.
"""
from __future__ import annotations

import decimal
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pymysql.cursors

from bgqueue.adapters.failpoints import failpoint
from bgqueue.adapters.mysql import connect as tlsconnect
from bgqueue.adapters.mysql.dialects import Dialect
from bgqueue.adapters.mysql.server import Server
from bgqueue.model import gtid
from bgqueue.model.errors import BgqueueError

MAX_ROWS = 100_000  # rows of one result kept for the comparison; beyond that only counted


class PinFailed(BgqueueError):
    """Blue and green could not be pinned at one point (green too slow, replication broken)."""


@dataclass(frozen=True)
class ReplayDialect:
    """What replay says differently to MariaDB and to MySQL 8 (the rest is in ``Dialect``)."""

    base: Dialect

    @property
    def mariadb(self) -> bool:
        return self.base.flavour == "mariadb"

    def time_limit_sql(self, seconds: float) -> str:
        if self.mariadb:
            return f"SET SESSION max_statement_time = {float(seconds):.3f}"
        return f"SET SESSION MAX_EXECUTION_TIME = {int(seconds * 1000)}"  # SELECT only, in ms

    @property
    def timeout_errors(self) -> frozenset[int]:
        return frozenset({1969}) if self.mariadb else frozenset({3024, 1317})

    snapshot_sql = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"

    def snapshot_position(self, cur) -> str:
        """Open the snapshot on ``cur``'s session and return its GTID position (blue)."""
        if self.mariadb:
            cur.execute(self.snapshot_sql)
            cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            status = {str(k).lower(): v for k, v in cur.fetchall()}
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (status["binlog_snapshot_file"],
                                                           int(status["binlog_snapshot_position"])))
            return str(cur.fetchone()[0] or "")
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute(self.snapshot_sql)
            cur.execute("SELECT @@GLOBAL.gtid_executed")
            return str(cur.fetchone()[0] or "").replace("\n", "")
        finally:
            cur.execute("UNLOCK TABLES")

    def run_until_sql(self, position: str) -> tuple[str, tuple]:
        if self.mariadb:
            return "START SLAVE UNTIL master_gtid_pos = %s", (position,)
        return f"{self.base.start_replica_sql} SQL_THREAD UNTIL SQL_AFTER_GTIDS = %s", (position,)

    @property
    def stop_sql(self) -> str:
        return self.base.stop_replica_sql if self.mariadb else f"{self.base.stop_replica_sql} SQL_THREAD"



@dataclass
class Outcome:
    """One statement on one server."""

    seconds: float
    error: tuple[int, str] | None = None
    columns: list[tuple[str, int]] = field(default_factory=list)  # (name, type code)
    rows: list[tuple] = field(default_factory=list)  # normalised, at most MAX_ROWS
    row_count: int = 0
    warnings: list[tuple[str, int]] = field(default_factory=list)  # (level, code)
    timed_out: bool = False


def normalise(value: Any) -> Any:
    """A value as compared: exact decimals as text (scale counts), floats to 12 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class ReplaySession:
    """A session in a READ ONLY snapshot transaction, with the per-statement time limit."""

    def __init__(self, server: Server, max_query_time_s: float):
        self.server = server
        self.dialect = ReplayDialect(server.dialect)
        kwargs = tlsconnect.connect_args(server.tls)
        self.conn = pymysql.connect(host=server.endpoint.host, port=server.endpoint.port, user=server.admin.user,
                                    password=server.admin.password(), autocommit=True,
                                    connect_timeout=server.connect_timeout,
                                    read_timeout=max(60.0, max_query_time_s * 4), **kwargs)
        with self.conn.cursor() as cur:
            cur.execute(self.dialect.time_limit_sql(max_query_time_s))
        self.position = ""
        self.broken = ""  # why this session may no longer be used (its snapshot was lost)

    def open_snapshot(self, *, blue: bool) -> str:
        with self.conn.cursor() as cur:
            if blue:
                self.position = self.dialect.snapshot_position(cur)
            else:
                cur.execute(self.dialect.snapshot_sql)
        return self.position

    def in_snapshot(self) -> bool:
        if not self.dialect.mariadb:
            return True  # MySQL has no @@in_transaction; a lost snapshot shows as a changed result
        with self.conn.cursor() as cur:
            cur.execute("SELECT @@in_transaction")
            return int(cur.fetchone()[0]) == 1

    def run(self, database: str | None, sql: str) -> Outcome:
        t0 = time.perf_counter()
        cur = self.conn.cursor(pymysql.cursors.SSCursor)
        try:
            if database:
                self.conn.select_db(database)
            cur.execute(sql)
            columns = [(str(d[0]), int(d[1])) for d in (cur.description or ())]
            rows: list[tuple] = []
            count = 0
            for row in cur.fetchall_unbuffered():
                count += 1
                if count <= MAX_ROWS:
                    rows.append(tuple(normalise(v) for v in row))
            seconds = time.perf_counter() - t0
            warnings: list[tuple[str, int]] = []
            if cur.warning_count:
                warnings = sorted((str(level), int(code)) for level, code, _msg in self.conn.show_warnings())
            return Outcome(seconds, None, columns, rows, count, warnings)
        except pymysql.err.MySQLError as e:
            seconds = time.perf_counter() - t0
            code = int(e.args[0]) if e.args and isinstance(e.args[0], int) else 0
            if code in (0, 2006, 2013):
                self.broken = f"session lost: {e}"
            out = Outcome(seconds, (code, str(e.args[-1]) if e.args else str(e)),
                          timed_out=code in self.dialect.timeout_errors)
            if not self.broken and not self.in_snapshot():
                self.broken = "the snapshot transaction ended after an error"
            return out
        finally:
            try:
                cur.close()
            except pymysql.err.MySQLError:
                self.broken = self.broken or "session lost"

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # already gone
            pass


@dataclass
class PinnedPair:
    blue: ReplaySession
    green: ReplaySession
    position: str
    pinned_at: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.blue.close()
        self.green.close()


def pin_pairs(blue: Server, green: Server, count: int, *, max_query_time_s: float, timeout_s: float,
              guard=None) -> list[PinnedPair]:
    """``count`` pinned pairs (see the module doc). Green's replication is resumed before this
    returns or raises; ``guard`` (a ``replay_guard.Guard``, told of the pause and the resume)
    resumes it should this process die meanwhile."""
    rd = ReplayDialect(green.dialect)
    status = green.replica_status()
    if status is None or not status.healthy:  # nothing paused: an operator's stop stays as it is
        raise PinFailed(f"green {green.endpoint} is not replicating cleanly; replay needs a healthy replica")
    pairs: list[PinnedPair] = []
    paused = False
    try:
        if guard is not None:
            guard.pause()
        green.execute(rd.stop_sql)
        paused = True
        for _ in range(count):
            b = ReplaySession(blue, max_query_time_s)
            try:
                position = b.open_snapshot(blue=True)
                _run_green_until(green, rd, position, timeout_s)
                failpoint("replay.green_paused")
                g = ReplaySession(green, max_query_time_s)
            except BaseException:
                b.close()
                raise
            g.open_snapshot(blue=False)
            now = green.applied_position()
            if not gtid.reached(green.flavour, now, position) or gtid.transactions_behind(green.flavour, position, now):
                g.close()
                b.close()
                raise PinFailed(f"green moved off {position} (now {now}) while its snapshot was taken")
            g.position = position
            pairs.append(PinnedPair(b, g, position))
    except BaseException:
        for p in pairs:
            p.close()
        raise
    finally:
        _resume_or_hand_over(green, paused, guard)
    return pairs


def _resume_or_hand_over(green: Server, paused: bool, guard) -> None:
    """Resume replication; should that fail (green unreachable for a moment), leave it to the
    guard, which keeps trying for ~30 s."""
    try:
        if paused:
            resume(green)
    except BaseException:
        if guard is not None:
            guard.abandon()
        raise
    if guard is not None:
        guard.resumed()


def _run_green_until(green: Server, rd: ReplayDialect, position: str, timeout_s: float) -> None:
    sql, args = rd.run_until_sql(position)
    green.execute(sql, args)
    deadline = time.monotonic() + timeout_s
    while True:
        status = green.replica_status()
        if status is not None and status.last_error:
            raise PinFailed(f"green's replication failed while running to {position}: {status.last_error}")
        if status is not None and not status.sql_running and gtid.reached(green.flavour, green.applied_position(),
                                                                           position):
            return
        if time.monotonic() >= deadline:
            raise PinFailed(f"green did not reach blue's snapshot position {position} within {timeout_s:g}s")
        time.sleep(0.002)


def resume(green: Server) -> None:
    """Green replicates again, with no UNTIL condition left: STOP (which clears a pending UNTIL of
    an interrupted pin, and is a no-op on stopped threads), then START. Reconnects once: the
    session may have been the one that failed."""
    for attempt in (1, 2):
        try:
            for sql in resume_sql(green.dialect):
                green.execute(sql)
            return
        except pymysql.err.MySQLError:
            if attempt == 2:
                raise
            green.reconnect()


def resume_sql(dialect: Dialect) -> list[str]:
    return [dialect.stop_replica_sql, dialect.start_replica_sql]
