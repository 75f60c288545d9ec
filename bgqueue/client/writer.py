"""A continuous writer with a ledger: the workload that proves "zero lost writes".

Each write is one transaction inserting one row with a unique id. A write enters the ledger
only once ``RoutedClient.transaction`` returned (or a verification proved the row is there),
so ``find_lost(server, writer.acked_ids())`` lists acknowledged writes a server does not hold.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable

import pymysql

from bgqueue.client.routed import CommitOutcomeUnknown, RoutedClient, WriteUnavailable, error_code

log = logging.getLogger(__name__)

TABLE = "appdb.bgq_writes"
ER_DUP_ENTRY = 1062
# Ids are id_base + seq; the default base is random in the high bits, so writers (and runs
# against the same server) never share an id, with 2**24 writes of room per writer.
SEQ_BITS = 24
FIND_LOST_BATCH = 1000


def ensure_schema(admin_conn: pymysql.connections.Connection) -> None:
    """Create ``appdb.bgq_writes`` if it does not exist (run on the primary; replicas follow)."""
    with admin_conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " id BIGINT PRIMARY KEY,"
            " writer VARCHAR(64) NOT NULL,"
            " seq BIGINT NOT NULL,"
            " payload VARCHAR(64),"
            " created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6))"
        )


def find_lost(conn: pymysql.connections.Connection, acked_ids: Iterable[int]) -> list[int]:
    """The acknowledged ids missing from ``conn``'s server, sorted.

    Use an autocommit connection (or one with no open transaction): a REPEATABLE READ
    snapshot taken earlier would report rows committed since then as lost.
    """
    wanted = sorted(set(acked_ids))
    lost: list[int] = []
    with conn.cursor() as cur:
        for i in range(0, len(wanted), FIND_LOST_BATCH):
            batch = wanted[i:i + FIND_LOST_BATCH]
            cur.execute(f"SELECT id FROM {TABLE} WHERE id IN ({','.join(['%s'] * len(batch))})", batch)
            present = {row[0] for row in cur.fetchall()}
            lost.extend(row_id for row_id in batch if row_id not in present)
    return lost


class ContinuousWriter:
    """A thread inserting one row per transaction at ``rate_hz`` through a RoutedClient.

    The ledger holds (id, ack_time_monotonic) per acknowledged write; failures are counted by
    kind ("unavailable", "unknown", "error") and never enter the ledger.
    """

    def __init__(self, client: RoutedClient, writer_id: str, rate_hz: float = 200.0,
                 id_base: int | None = None):
        self.client = client
        self.writer_id = writer_id
        self.rate_hz = rate_hz
        self.id_base = id_base if id_base is not None else secrets.randbits(38) << SEQ_BITS
        # Written into every row: an id that exists with another nonce is not this run's write.
        self._nonce = secrets.token_hex(8)
        self._ledger: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self.failures: Counter[str] = Counter()
        self.last_error: BaseException | None = None
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> ContinuousWriter:
        """Start writing in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"bgq-writer-{self.writer_id}", daemon=True)
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the write in flight has settled, and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.write_one()
            # Absolute schedule keeps the rate; after a stall resume from now instead of
            # bursting to catch up, so gaps are measured against a steady offered load.
            next_at = max(next_at + period, time.monotonic())
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def write_one(self) -> bool:
        """Make one write; True if it was acknowledged (and recorded in the ledger)."""
        seq = self.seq
        self.seq += 1
        row_id = self.id_base + seq
        payload = f"{self._nonce}:{seq}"

        def insert(cur) -> None:
            cur.execute(
                f"INSERT INTO {TABLE} (id, writer, seq, payload) VALUES (%s, %s, %s, %s)",
                (row_id, self.writer_id, seq, payload),
            )

        def committed(cur) -> bool:
            cur.execute(f"SELECT 1 FROM {TABLE} WHERE id=%s AND payload=%s", (row_id, payload))
            return cur.fetchone() is not None

        try:
            self.client.transaction(insert, verify=committed)
        except pymysql.err.IntegrityError as exc:
            # Only an earlier attempt of this very write can hold this id and nonce: a COMMIT
            # that was in flight when verify looked may have landed after it.
            if error_code(exc) != ER_DUP_ENTRY or not self._settle(committed):
                return self._failed("error", exc)
        except WriteUnavailable as exc:
            return self._failed("unavailable", exc)
        except CommitOutcomeUnknown as exc:
            # A duplicate key on the re-run: only an earlier attempt of this very write can hold
            # this id and nonce (its COMMIT landed after verify looked); look once more.
            cause = exc.last_error
            if cause is None or error_code(cause) != ER_DUP_ENTRY or not self._settle(committed):
                return self._failed("unknown", exc)
        except Exception as exc:  # keep writing: the ledger is the result, not the thread
            return self._failed("error", exc)
        with self._lock:
            self._ledger.append((row_id, time.monotonic()))
        return True

    def _settle(self, committed) -> bool:
        try:
            return bool(self.client.transaction(committed))
        except Exception:
            return False

    def _failed(self, kind: str, exc: BaseException) -> bool:
        self.failures[kind] += 1
        self.last_error = exc
        log.debug("%s: write failed (%s): %r", self.writer_id, kind, exc)
        return False

    # --- the ledger ----------------------------------------------------------------------

    def ledger(self) -> list[tuple[int, float]]:
        """A copy of (id, ack_time_monotonic) for every acknowledged write, in ack order."""
        with self._lock:
            return list(self._ledger)

    def acked_ids(self) -> list[int]:
        """Ids of the acknowledged writes."""
        return [row_id for row_id, _ in self.ledger()]

    def gaps_ms(self) -> list[float]:
        """Intervals between consecutive acknowledgements, in ms."""
        times = [t for _, t in self.ledger()]
        return [(b - a) * 1000.0 for a, b in zip(times, times[1:], strict=False)]

    def max_gap_ms(self, between: tuple[float, float] | None = None) -> float:
        """Longest interval between consecutive acknowledgements, in ms (0.0 with < 2 acks).

        With ``between=(t0, t1)`` (monotonic), only intervals that overlap the window count —
        including one that spans it entirely, so an outage with no ack inside it still shows.
        """
        times = [t for _, t in self.ledger()]
        longest = 0.0
        for a, b in zip(times, times[1:], strict=False):
            if between is not None and (b < between[0] or a > between[1]):
                continue
            longest = max(longest, (b - a) * 1000.0)
        return longest

    def stats(self) -> dict:
        """A summary for the demo and the benchmark (plain values, JSON-serializable)."""
        ledger = self.ledger()
        end = self.stopped_at or time.monotonic()
        elapsed = (end - self.started_at) if self.started_at else 0.0
        gaps = sorted(self.gaps_ms())
        return {
            "writer": self.writer_id,
            "attempted": self.seq,
            "acked": len(ledger),
            "failures": dict(self.failures),
            "elapsed_s": round(elapsed, 3),
            "rate_hz": round(len(ledger) / elapsed, 1) if elapsed else 0.0,
            "max_gap_ms": round(gaps[-1], 3) if gaps else 0.0,
            "p50_gap_ms": round(gaps[len(gaps) // 2], 3) if gaps else 0.0,
            "p99_gap_ms": round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], 3) if gaps else 0.0,
            "client": self.client.counters(),
            "last_error": repr(self.last_error) if self.last_error else None,
        }
