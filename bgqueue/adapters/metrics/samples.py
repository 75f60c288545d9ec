"""Where sampled metrics live: one Redis stream per cluster, one entry per sample.

Key ``{prefix}samples:{cluster}``. An entry holds every metric of one sample of one cluster
as decimal strings, plus ``ts`` (the sampler's clock, unix seconds, full precision). The entry
id is derived from ``ts`` (milliseconds), so time-range reads are XRANGE queries on ids and
need no scan.

Retention is bounded twice: XADD trims with an approximate MAXLEN (default 1 hour at 4 Hz),
and the key carries a TTL (refreshed every few appends) so that the stream of a cluster that
is no longer sampled disappears by itself.

Readers — the lag check (lag sustained over a window), post-switchover monitoring and the HTML
report — use ``window``, ``range``, ``series`` and ``latest``; that API is stable.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

# The metrics the sampler writes (see bgqueue.adapters.metrics.probe for how each is measured).
# A sample holds a subset: a metric that could not be measured this time is absent, never 0.
METRICS: tuple[str, ...] = (
    "lag_ms", "lag_source", "seconds_behind", "replica_io_running", "replica_sql_running",
    "threads_connected", "connections_per_s", "qps", "writes_per_s", "errors_per_s", "deadlocks_per_s",
    "bp_hit_ratio", "probe_ms", "probe_p50_ms", "probe_p90_ms", "probe_p95_ms", "probe_p99_ms",
    "probe_errors", "primary_port", "primary_up", "replica_up", "heartbeat_written",
)
# Values of ``lag_source``: how ``lag_ms`` was measured.
LAG_SOURCE_HEARTBEAT = 1.0
LAG_SOURCE_SECONDS_BEHIND = 0.0

DEFAULT_RATE_HZ = 4.0
DEFAULT_RETENTION_S = 3600.0
DEFAULT_MAXLEN = int(DEFAULT_RETENTION_S * DEFAULT_RATE_HZ)
_EXPIRE_EVERY = 40  # appends per cluster between TTL refreshes (~10 s at 4 Hz)
_PAGE = 2000  # entries per XRANGE reply when reading long ranges


@dataclass(frozen=True)
class Sample:
    """One sample of one cluster: ``ts`` in unix seconds, ``values`` by metric name."""

    ts: float
    values: dict[str, float]

    def get(self, metric: str, default: float | None = None) -> float | None:
        return self.values.get(metric, default)


class MetricsStore:
    """Samples per cluster in Redis streams, with bounded retention.

    ``redis_client`` may decode responses or not. Appends from one process are ordered per
    cluster; a sample whose ``ts`` is not after the previous one is stored just after it.
    """

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "bgq:", maxlen: int = DEFAULT_MAXLEN,
                 ttl_s: float = DEFAULT_RETENTION_S):
        if maxlen < 1 or ttl_s <= 0:
            raise ValueError("maxlen and ttl_s must be positive")
        self._redis = redis_client
        self._prefix = prefix
        self.maxlen = int(maxlen)
        self.ttl_s = float(ttl_s)
        self._last_id: dict[str, tuple[int, int]] = {}
        self._appends: dict[str, int] = {}
        self._lock = threading.Lock()
        self.commands_sent = 0  # Redis commands issued by append/append_many (the bench reads it)

    def key(self, cluster: str) -> str:
        return f"{self._prefix}samples:{cluster}"

    # --- writing ---------------------------------------------------------------------------
    def append(self, cluster: str, ts: float, fields: Mapping[str, float]) -> None:
        """Store one sample of ``cluster`` taken at ``ts`` (unix seconds)."""
        self.append_many([(cluster, ts, fields)])

    def append_many(self, entries: Iterable[tuple[str, float, Mapping[str, float]]]) -> int:
        """Store several samples in one pipeline (one round trip). Returns the commands sent.

        A sample rejected by Redis (another writer put a later id on the stream) is dropped,
        and the next append to that cluster resynchronises its id from the stream.
        """
        entries = list(entries)
        if not entries:
            return 0
        with self._lock:
            self._load_last_ids({c for c, _, _ in entries if c not in self._last_id})
            pipe = self._redis.pipeline(transaction=False)
            order: list[str] = []
            for cluster, ts, fields in entries:
                key = self.key(cluster)
                body = {"ts": repr(float(ts))}
                body.update({k: _fmt(v) for k, v in fields.items() if v is not None})
                pipe.xadd(key, body, id=self._next_id(cluster, ts), maxlen=self.maxlen, approximate=True)
                order.append(cluster)
                n = self._appends.get(cluster, 0)
                self._appends[cluster] = n + 1
                if n % _EXPIRE_EVERY == 0:
                    pipe.expire(key, max(1, math.ceil(self.ttl_s)))
                    order.append("")
            results = pipe.execute(raise_on_error=False)
            for cluster, result in zip(order, results, strict=False):
                if cluster and isinstance(result, Exception):
                    self._last_id.pop(cluster, None)
            self.commands_sent += len(results)
            return len(results)

    def _load_last_ids(self, clusters: set[str]) -> None:
        # Once per cluster per process: continue after whatever is already on the stream.
        if not clusters:
            return
        names = sorted(clusters)
        pipe = self._redis.pipeline(transaction=False)
        for c in names:
            pipe.xrevrange(self.key(c), count=1)
        for c, rows in zip(names, pipe.execute(), strict=False):
            self._last_id[c] = _parse_id(rows[0][0]) if rows else (0, 0)
        self.commands_sent += len(names)

    def _next_id(self, cluster: str, ts: float) -> str:
        ms = int(ts * 1000)
        last_ms, last_seq = self._last_id.get(cluster, (0, 0))
        nxt = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        self._last_id[cluster] = nxt
        return f"{nxt[0]}-{nxt[1]}"

    # --- reading ---------------------------------------------------------------------------
    def range(self, cluster: str, t0: float, t1: float) -> list[Sample]:
        """Samples with t0 <= ts <= t1, oldest first."""
        key = self.key(cluster)
        lo, hi = f"{math.floor(t0 * 1000)}-0", str(math.floor(t1 * 1000))
        out: list[Sample] = []
        while True:
            rows = self._redis.xrange(key, min=lo, max=hi, count=_PAGE)
            for _entry_id, fields in rows:
                s = _sample(fields)
                if t0 <= s.ts <= t1:
                    out.append(s)
            if len(rows) < _PAGE:
                return out
            ms, seq = _parse_id(rows[-1][0])
            lo = f"{ms}-{seq + 1}"

    def window(self, cluster: str, seconds: float, now: float | None = None) -> list[Sample]:
        """Samples of the last ``seconds`` before ``now`` (default: this host's clock), oldest first."""
        now = time.time() if now is None else now
        return self.range(cluster, now - seconds, now)

    def series(self, cluster: str, metric: str, t0: float, t1: float) -> list[tuple[float, float]]:
        """``(ts, value)`` of one metric for t0 <= ts <= t1; samples without it are left out."""
        return [(s.ts, s.values[metric]) for s in self.range(cluster, t0, t1) if metric in s.values]

    def latest(self, cluster: str) -> Sample | None:
        """The newest sample of ``cluster``, or None when there is none (retention included)."""
        rows = self._redis.xrevrange(self.key(cluster), count=1)
        return _sample(rows[0][1]) if rows else None

    def length(self, cluster: str) -> int:
        """How many samples the stream holds now (retention bounds it)."""
        return int(self._redis.xlen(self.key(cluster)))


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(round(float(value), 6))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_id(entry_id: str | bytes) -> tuple[int, int]:
    ms, _, seq = _text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _sample(fields: Mapping) -> Sample:
    values = {_text(k): float(_text(v)) for k, v in fields.items()}
    ts = values.pop("ts")
    return Sample(ts, values)
