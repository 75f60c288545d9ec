"""The checksum check: critical tables compared between blue and green at one point of replication.

pt-table-checksum's technique. On a dedicated admin session on blue with binlog_format=STATEMENT
(that session only), each chunk of a table (a primary-key range) is checksummed by one
``INSERT INTO bgq_meta.checksums ... SELECT COUNT(*), BIT_XOR(CRC32(row)) FROM t WHERE range``.
The statement takes shared locks on the range, so it sits at one exact place in blue's binlog;
it replicates as a statement and green recomputes it on its own data at exactly that place.
Concurrent writes on blue therefore cannot produce a false mismatch. Once green has applied
blue's position (bounded), blue's rows and green's rows of the run are read back and compared.

Unlike pt, blue's values are not copied to green with a replicated UPDATE: both sides are read
back once at the end and compared here, which saves two round trips per chunk.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pymysql

from bgqueue.adapters.mysql.server import Server
from bgqueue.checks import checksum_sql as q
from bgqueue.checks.checksum_sql import ChecksumError
from bgqueue.model.results import ERROR, CheckResult, errored, failed, passed

CHECK = "checksum"
_LOCK_ERRORS = {1205, 1213}  # lock wait timeout, deadlock: our chunk statement lost a race; retry it
_LOCK_RETRIES = 5
_INITIAL_ROWS = 1000  # first chunk, before the rate is known (pt starts the same way)
_MAX_GROWTH = 8  # a chunk is at most this many times the previous one, so one fast chunk cannot overshoot
# Green starts a chunk only once blue has committed it and takes as long, so it ends the run one
# largest-chunk behind blue. Chunks therefore aim at a tenth of the time spent so far (at least
# _MIN_CHUNK_TIME_S, at most chunk_time_s): the catch-up stays ~10% of the run while long runs
# still reach chunk_time_s and keep per-chunk overhead negligible.
_MIN_CHUNK_TIME_S = 0.05
_TAIL_SHARE = 0.1
_LOCATE_MAX_ROWS = 200_000  # rows of a differing chunk we are willing to hash row by row
_LOCATE_LIMIT = 10  # keys named in a reason
_WAIT_SLICE_S = 20.0  # below the adapter's default 60 s read timeout


@dataclass
class ChunkResult:
    """One primary-key range of one table: ``after < key <= upto`` (a None end is open)."""

    table: str
    chunk: int
    key: tuple[str, ...]
    after: tuple | None  # exclusive lower bound: the previous chunk's last key
    first: tuple | None  # first key on blue when the chunk was cut (what an operator reads)
    upto: tuple | None  # inclusive upper bound; None for a table's last, open-ended chunk
    seconds: float = 0.0  # time of blue's checksum statement
    lock_retries: int = 0  # times the statement lost a lock wait to the application and was re-run
    blue_rows: int = 0
    blue_crc: int = 0
    green_rows: int | None = None
    green_crc: int | None = None
    differing_keys: list[tuple] | None = None  # located after a mismatch; None when not looked for

    @property
    def matches(self) -> bool:
        return self.blue_rows == self.green_rows and self.blue_crc == self.green_crc

    @property
    def key_label(self) -> str:
        return self.key[0] if len(self.key) == 1 else "(" + ", ".join(self.key) + ")"

    @property
    def range_text(self) -> str:
        """e.g. ``id 70001..80000``; a table's first and last chunks are open (``id ≤ 10000``,
        ``id ≥ 990001``): they also hold any row green has below or above every key of blue; a
        table in one chunk is "all rows"."""
        if self.first is None:
            return f"{self.key_label} > {q.render_key(self.after)}" if self.after is not None else "all rows"
        if self.after is None and self.upto is None:
            return "all rows"
        if self.after is None:
            return f"{self.key_label} ≤ {q.render_key(self.upto)}"
        if self.upto is None:
            return f"{self.key_label} ≥ {q.render_key(self.first)}"
        return f"{self.key_label} {q.render_key(self.first)}..{q.render_key(self.upto)}"

    def describe(self) -> str:
        """One line naming the table, the chunk, its key range and what differs."""
        counts = (f"{self.blue_rows} row(s) on blue, {self.green_rows} on green" if self.blue_rows != self.green_rows
                  else f"{self.blue_rows} row(s) on both, checksum differs")
        text = f"{self.table} chunk {self.chunk} ({self.range_text}): "
        if self.differing_keys:
            shown = ", ".join(q.render_key(k) for k in self.differing_keys[:_LOCATE_LIMIT])
            more = ", ..." if len(self.differing_keys) > _LOCATE_LIMIT else ""
            return text + f"{len(self.differing_keys)} row(s) differ: {self.key_label} {shown}{more} ({counts})"
        return text + counts


@dataclass
class ChecksumRun:
    """Every chunk of one run, blue's and green's values side by side."""

    run_id: str
    tables: list[str]
    chunks: list[ChunkResult]
    seconds: float  # wall time, including green's catch-up and the comparison

    @property
    def rows(self) -> int:
        return sum(c.blue_rows for c in self.chunks)

    @property
    def lock_retries(self) -> int:
        return sum(c.lock_retries for c in self.chunks)

    @property
    def mismatches(self) -> list[ChunkResult]:
        return [c for c in self.chunks if not c.matches]


def check_checksums(blue: Server, green: Server, tables: list[str], *, chunk_time_s: float = 0.5,
                    catchup_timeout_s: float = 30.0, max_rows_per_chunk: int | None = None) -> CheckResult:
    """Compare the critical ``tables`` ("db.table") between blue and green; never raises.

    pass: every chunk matches (evidence: tables, chunks, rows, seconds, rows_per_s).
    fail (not retryable): the reason names every differing table, chunk and primary-key range.
    error: the checksum could not be taken (table missing or without a primary key: not
    retryable; green not caught up within ``catchup_timeout_s``, lock waits: retryable).
    ``chunk_time_s`` bounds how long one chunk holds its shared locks on blue (chunks start
    smaller, see _TAIL_SHARE); ``max_rows_per_chunk`` is a hard cap on rows per chunk.
    Writes only to ``bgq_meta.checksums`` on blue (through replication, on green too).
    """
    started = time.monotonic()
    if not tables:
        return passed(CHECK, "no critical tables", value=0, threshold=0)
    try:
        run = checksum_tables(blue, green, tables, chunk_time_s=chunk_time_s, catchup_timeout_s=catchup_timeout_s,
                              max_rows_per_chunk=max_rows_per_chunk, locate_rows=True)
    except ChecksumError as e:
        return CheckResult(CHECK, ERROR, e.reason, retryable=e.retryable,
                           duration_ms=(time.monotonic() - started) * 1000)
    except Exception as e:  # a check reports, it never breaks the chord
        result = errored(CHECK, e)
        result.duration_ms = (time.monotonic() - started) * 1000
        return result
    evidence = {"tables": run.tables, "chunks": len(run.chunks), "rows": run.rows, "seconds": round(run.seconds, 3),
                "rows_per_s": round(run.rows / run.seconds) if run.seconds > 0 else None, "run_id": run.run_id,
                "lock_retries": run.lock_retries}
    duration = (time.monotonic() - started) * 1000
    bad = run.mismatches
    if not bad:
        return passed(CHECK, f"{len(run.chunks)} chunk(s) of {len(run.tables)} table(s) match ({run.rows} rows)",
                      value=0, threshold=0, evidence=evidence, duration_ms=duration)
    evidence["mismatches"] = [
        {"table": c.table, "chunk": c.chunk, "range": c.range_text, "blue_rows": c.blue_rows,
         "green_rows": c.green_rows, "first": _plain(c.first), "upto": _plain(c.upto), "after": _plain(c.after),
         "differing_keys": [_plain(k) for k in (c.differing_keys or [])[:_LOCATE_LIMIT]]}
        for c in bad]
    return failed(CHECK, "; ".join(c.describe() for c in bad), value=len(bad), threshold=0,
                  evidence=evidence, duration_ms=duration)


def checksum_tables(blue: Server, green: Server, tables: list[str], *, chunk_time_s: float = 0.5,
                    catchup_timeout_s: float = 30.0, max_rows_per_chunk: int | None = None,
                    locate_rows: bool = False) -> ChecksumRun:
    """Checksum ``tables`` chunk by chunk; return every chunk with blue's and green's values.

    Raises ChecksumError when the checksum cannot be taken. With ``locate_rows``, the keys of
    the rows that differ are looked for in small differing chunks (best effort).
    """
    started = time.monotonic()
    names = list(dict.fromkeys(tables))
    _require_replicating(green)
    session = _checksum_session(blue)
    try:
        infos = [q.checkable_table(session, green, name) for name in names]
        session.execute(f"CREATE DATABASE IF NOT EXISTS `{q.META_DB}`", ())
        session.execute(q.META_DDL, ())
        session.execute(q.PURGE_SQL, ())
        run_id = secrets.token_hex(8)
        cap = max(1, int(max_rows_per_chunk)) if max_rows_per_chunk else None
        chunks: list[ChunkResult] = []
        for info in infos:
            chunks.extend(_checksum_table(session, info, run_id, chunk_time_s, cap, started))
        _wait_for_green(session, green, catchup_timeout_s)
        _fill_results(session, green, run_id, chunks)
        if locate_rows:
            by_name = {i.qualified: i for i in infos}
            for c in chunks:
                if not c.matches and c.blue_rows <= _LOCATE_MAX_ROWS:
                    c.differing_keys = q.differing_keys(
                        session, green, by_name[c.table], c.after, c.upto,
                        lambda position: _reached(green, position, catchup_timeout_s))
    except pymysql.err.MySQLError as e:
        raise ChecksumError(f"checksum interrupted: {q.mysql_error(e)}", retryable=True) from None
    finally:
        session.close()
    return ChecksumRun(run_id, names, chunks, time.monotonic() - started)


# --- steps --------------------------------------------------------------------------
def _require_replicating(green: Server) -> None:
    status = green.replica_status()
    if status is None:
        raise ChecksumError(f"green {green.endpoint} is not a replica: nothing to compare at one point")
    if not (status.io_running and status.sql_running):
        raise ChecksumError(f"green {green.endpoint} is not replicating (IO {status.io_running}, "
                            f"SQL {status.sql_running}; {status.last_error or 'no error'})", retryable=True)


def _checksum_session(blue: Server) -> Server:
    """A session of our own: its statement binlog format and short lock waits must not leak to the
    caller's session, and nothing else may write through it between our statements."""
    s = Server(blue.endpoint, blue.admin, label=blue.label, connect_timeout=blue.connect_timeout, tls=blue.tls,
               read_timeout=blue.read_timeout)
    if int(s.scalar("SELECT @@GLOBAL.log_bin") or 0) != 1:
        s.close()
        raise ChecksumError(f"blue {blue.endpoint} has no binary log: green cannot recompute the checksums")
    # STATEMENT: green must recompute each chunk, not receive blue's result rows.
    # REPEATABLE READ: InnoDB refuses statement binlogging under READ COMMITTED, and it is what
    # makes INSERT ... SELECT take shared locks on the range (the consistent point).
    for sql in ("SET SESSION binlog_format = 'STATEMENT'", "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "SET SESSION innodb_lock_wait_timeout = 1", "SET SESSION lock_wait_timeout = 5",
                "SET SESSION sql_log_bin = 1"):
        s.execute(sql)
    return s


def _checksum_table(session: Server, info: q.TableInfo, run_id: str, chunk_time_s: float,
                    cap: int | None, run_started: float) -> list[ChunkResult]:
    """Cut the table into consecutive key ranges of at most ~``chunk_time_s`` and checksum each."""
    rows = session.rows(q.first_key_sql(info), ())
    first = tuple(rows[0]) if rows else None
    after: tuple | None = None
    size = min(_INITIAL_ROWS, cap) if cap else _INITIAL_ROWS
    rate: float | None = None
    out: list[ChunkResult] = []
    while True:
        upto = nxt = None
        if first is not None:
            sql, args = q.boundary_sql(info, after)
            cut = session.rows(sql, args + (size - 1,))
            if len(cut) == 2:
                upto, nxt = tuple(cut[0]), tuple(cut[1])
        chunk = ChunkResult(info.qualified, len(out) + 1, info.key, after, first, upto)
        where, wargs = q.range_predicate(info.key, after, upto)
        args = (run_id, info.db, info.name, chunk.chunk, q.render_key(first) or None, q.render_key(upto) or None)
        t0 = time.monotonic()
        chunk.lock_retries = _execute_with_retry(session, q.chunk_checksum_sql(info, where), args + wargs, chunk)
        chunk.seconds = time.monotonic() - t0
        out.append(chunk)
        if upto is None:
            return out
        # As pt's --chunk-time: a weighted rows/s estimate sets the next chunk's size.
        measured = size / max(chunk.seconds, 1e-4)
        rate = measured if rate is None else 0.75 * rate + 0.25 * measured
        target_s = min(chunk_time_s, max(_MIN_CHUNK_TIME_S, _TAIL_SHARE * (time.monotonic() - run_started)))
        size = max(1, min(int(rate * target_s), size * _MAX_GROWTH, cap or 1 << 62))
        after, first = upto, nxt


def _execute_with_retry(session: Server, sql: str, args: tuple, chunk: ChunkResult) -> int:
    """Run the chunk statement; a lost lock wait rolled it back whole, so it is simply re-run.
    Returns how many retries it took."""
    attempt = 0
    while True:
        try:
            session.execute(sql, args)
            return attempt
        except pymysql.err.MySQLError as e:
            code = e.args[0] if e.args else None
            if code not in _LOCK_ERRORS or attempt == _LOCK_RETRIES:
                raise ChecksumError(f"{chunk.table} chunk {chunk.chunk} ({chunk.range_text}): {q.mysql_error(e)}"
                                    + (f" after {attempt} retries" if attempt else ""),
                                    retryable=code in _LOCK_ERRORS) from None
        attempt += 1
        time.sleep(0.05 * attempt)  # the writer holding the lock needs a moment


def _reached(green: Server, position: str, timeout_s: float) -> bool:
    """Bounded server-side wait, in slices so that no single wait outlasts the session's read timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        step = min(deadline - time.monotonic(), _WAIT_SLICE_S)
        if green.wait_for_position(position, max(step, 0.001)):
            return True
        if deadline - time.monotonic() <= 0:
            return False


def _wait_for_green(session: Server, green: Server, timeout_s: float) -> None:
    position = session.gtid_position()
    if _reached(green, position, timeout_s):
        return
    status = green.replica_status()
    state = "not a replica" if status is None else (
        f"IO {status.io_running}, SQL {status.sql_running}, {status.seconds_behind}s behind"
        + (f", {status.last_error}" if status.last_error else ""))
    raise ChecksumError(f"green {green.endpoint} did not reach blue's position {position} within {timeout_s:g}s "
                        f"({state})", retryable=True)


def _fill_results(session: Server, green: Server, run_id: str, chunks: list[ChunkResult]) -> None:
    def read(server: Server) -> dict:
        return {(f"{db}.{tbl}", int(n)): (int(cnt), int(crc)) for db, tbl, n, cnt, crc in
                server.rows(q.RESULTS_SQL, (run_id,))}

    ours, theirs = read(session), read(green)
    for c in chunks:
        key = (c.table, c.chunk)
        if key not in ours or key not in theirs:
            side = "blue" if key not in ours else "green"
            raise ChecksumError(f"{c.table} chunk {c.chunk}: no checksum row on {side} after catch-up "
                                f"(is {q.META_DB} filtered from replication?)")
        c.blue_rows, c.blue_crc = ours[key]
        c.green_rows, c.green_crc = theirs[key]


def _plain(key: tuple | None) -> list | None:
    """A key for JSON evidence."""
    return None if key is None else [v if isinstance(v, (int, float, str)) or v is None else str(v) for v in key]
