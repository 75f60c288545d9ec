"""Replay: the captured classes run on blue and green pinned at one point, compared, summed up.

``replay_cluster`` is what the ``query_replay`` check and ``bgqueue replay`` call. The work is
spread over ``replay.concurrency`` pinned pairs (one thread each); every statement runs on a
pair's blue session, then on its green session, so both answer from the same data.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bgqueue.adapters.mysql.replay import PinnedPair, pin_pairs
from bgqueue.adapters.mysql.replay_guard import Guard
from bgqueue.adapters.mysql.server import Server
from bgqueue.checks.replay.capture import Capture, QueryClass, Statement, capture
from bgqueue.checks.replay.compare import Difference, Latency, compare, latency, side
from bgqueue.checks.replay.fingerprint import fingerprint
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.replay import ReplaySpec

MAX_EXAMPLES = 3  # differing examples kept per class
RETIME_ROUNDS = 2  # extra timed runs of each statement of a class that looks slower
RETIME_SHARE = 1 / 3  # … "looks slower": p50 ratio at least this share of the threshold
RETIME_MAX = 10  # statements of such a class timed again (its verdict is then theirs); bounds the extra load


@dataclass
class ClassResult:
    qc: QueryClass
    ordered: bool  # compared in row order (ORDER BY covers a unique key)
    pair: int = 0  # the pinned pair that runs this class
    run: int = 0
    not_run: int = 0
    kinds: Counter = field(default_factory=Counter)
    examples: list[Difference] = field(default_factory=list)
    timed: list[Statement] = field(default_factory=list)  # statements run, in the order of blue_s/green_s
    blue_s: list[float] = field(default_factory=list)
    green_s: list[float] = field(default_factory=list)
    retimed: int = 0  # extra timed rounds run
    timeouts: Counter = field(default_factory=Counter)  # side → statements that hit the time limit
    latency: Latency | None = None
    declared: str | None = None  # the change's reason, when this class differs on purpose

    def differs(self, spec: ReplaySpec) -> bool:
        return bool(self.kinds) or (spec.latency_fails and self.slower)

    @property
    def slower(self) -> bool:
        """A latency regression, judged on SELECTs of data only: SHOW, EXPLAIN and reads of the
        server's own state cost what the server's state makes them cost (a replica applying writes
        answers SHOW TABLES tens of times slower here), not what the change does."""
        info = self.qc.info
        return info.kind == "select" and not info.server_state and self.latency is not None and self.latency.regressed

    def as_dict(self, spec: ReplaySpec) -> dict:
        return {"class_id": self.qc.class_id, "fingerprint": self.qc.fingerprint[:2000], "kind": self.qc.info.kind,
                "seen": self.qc.seen, "replayed": self.run, "not_run": self.not_run, "ordered": self.ordered,
                "differences": dict(self.kinds), "latency": self.latency.as_dict() if self.latency else None,
                "timeouts": dict(self.timeouts), "retimed": self.retimed, "declared": self.declared, "differs": self.differs(spec),
                "examples": [d.as_dict() for d in self.examples[:1]]}


@dataclass
class ReplayReport:
    capture: Capture
    classes: list[ClassResult]
    positions: list[str]
    seconds: float
    replay_seconds: float
    statements: int
    spec: ReplaySpec

    @property
    def differing(self) -> list[ClassResult]:
        return [c for c in self.classes if c.differs(self.spec) and c.declared is None]

    @property
    def declared(self) -> list[ClassResult]:
        return [c for c in self.classes if c.differs(self.spec) and c.declared is not None]

    def as_dict(self, limit: int = 20) -> dict:
        return {"capture": self.capture.as_dict(), "positions": self.positions[:3], "pins": len(self.positions),
                "seconds": round(self.seconds, 3),
                "statements_replayed": self.statements,
                "statements_per_s": round(self.statements / self.replay_seconds, 1) if self.replay_seconds else None,
                "classes_replayed": len(self.classes), "classes_differing": len(self.differing),
                "differing": [c.as_dict(self.spec) for c in self.differing[:limit]],
                "declared": [c.as_dict(self.spec) for c in self.declared[:limit]],
                "latency_ratio": self.spec.latency_ratio}


def unique_keys(blue: Server, tables: set[str], default_db: str | None) -> dict[str, list[set[str]]]:
    """table → the column sets of its unique indexes (primary key included), read on blue."""
    out: dict[str, list[set[str]]] = {}
    for t in tables:
        db, _, name = t.rpartition(".")
        db = db or default_db or ""
        rows = blue.rows("SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s "
                         "AND TABLE_NAME=%s AND NON_UNIQUE=0", (db, name))
        keys: dict[str, set[str]] = {}
        for index, column in rows:
            keys.setdefault(str(index), set()).add(str(column).lower())
        out[t if "." in t else f"{db}.{t}"] = list(keys.values())
    return out


def _ordered(qc: QueryClass, keys: dict[str, list[set[str]]]) -> bool:
    info = qc.info
    if not info.ordered or not info.order_columns or len(set(info.tables)) != 1:
        return False
    db = qc.samples[0].database if qc.samples else None
    table = info.tables[0] if "." in info.tables[0] else f"{db}.{info.tables[0]}"
    return any(k and k <= set(info.order_columns) for k in keys.get(table, []))


def replay_cluster(spec: ClusterSpec, blue: Server, green: Server, *, captured: Capture | None = None) -> ReplayReport:
    """Capture (unless given), pin, replay, compare. BadInput for a source that cannot be read;
    PinFailed when blue and green cannot be pinned. Green's replication is running on return."""
    rs = spec.replay
    assert rs is not None
    t0 = time.perf_counter()
    cap = captured if captured is not None else capture(rs, blue)
    tables = {(t if "." in t else f"{(qc.samples[0].database if qc.samples else '') or ''}.{t}")
              for qc in cap.classes if qc.info.ordered for t in qc.info.tables[:1]}
    keys = unique_keys(blue, tables, rs.database)
    declared = {fingerprint(d.fingerprint): d.reason for d in spec.change.replay_differences}
    results = [ClassResult(qc, _ordered(qc, keys), declared=declared.get(qc.fingerprint)) for qc in cap.classes]
    # A class stays on one pair (its counters are then touched by one thread only).
    n = max(1, min(rs.concurrency, len(results)))
    work: list[list[tuple[ClassResult, Statement]]] = [[] for _ in range(n)]
    for i, r in enumerate(results):
        r.pair = i % n
        work[i % n] += [(r, st) for st in r.qc.samples]
    guard = Guard(green.endpoint, green.admin, green.tls.model_dump(mode="json"), deadline_s=rs.pin_timeout_s + 30)
    try:
        pairs = pin_pairs(blue, green, n, max_query_time_s=rs.max_query_time_s, timeout_s=rs.pin_timeout_s,
                          guard=guard)
        pins = _Pins(blue, green, rs, guard, pairs)
        t1 = time.perf_counter()
        try:
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda i: _run_slice(pins, i, work[i]), range(n)))
                _judge(results, rs)
                suspects = [r for r in results if r.latency is not None and r.qc.info.kind == "select"
                            and r.latency.p50_ratio >= rs.latency_ratio * RETIME_SHARE]
                list(pool.map(lambda i: _retime(pins, i, [r for r in suspects if r.pair == i]), range(n)))
                _judge(suspects, rs, first=RETIME_MAX)
        finally:
            for p in pins.pairs:
                p.close()
    finally:
        guard.done()
    replay_s = time.perf_counter() - t1
    return ReplayReport(cap, results, pins.positions, time.perf_counter() - t0, replay_s,
                        sum(r.run for r in results), rs)


class _Pins:
    """The pinned pairs of a run, one per thread, each pinned anew once its snapshot is too old
    (one pin at a time: they all pause and resume green's replication)."""

    def __init__(self, blue: Server, green: Server, rs: ReplaySpec, guard: Guard, pairs: list[PinnedPair]):
        self.blue, self.green, self.rs, self.guard, self.pairs = blue, green, rs, guard, pairs
        self.positions = [p.position for p in pairs]
        self._lock = threading.Lock()

    def fresh(self, i: int) -> PinnedPair:
        """Thread ``i``'s pair, pinned anew first when its snapshot is older than snapshot_max_age_s.
        Should a new pin fail, the old pair goes on (its answers stay consistent, only slower)."""
        pair = self.pairs[i]
        if time.monotonic() - pair.pinned_at < self.rs.snapshot_max_age_s or pair.blue.broken or pair.green.broken:
            return pair
        with self._lock:
            try:
                [new] = pin_pairs(self.blue, self.green, 1, max_query_time_s=self.rs.max_query_time_s,
                                  timeout_s=self.rs.pin_timeout_s, guard=self.guard)
            except Exception:  # PinFailed, a lost admin session: keep the old snapshot
                pair.pinned_at = time.monotonic()
                return pair
            self.positions.append(new.position)
        pair.close()
        self.pairs[i] = new
        return new


def _judge(results: list[ClassResult], rs: ReplaySpec, first: int | None = None) -> None:
    """Each class's latency verdict, from all its timings or (re-timed classes) its first ``first``."""
    for r in results:
        r.latency = latency(r.blue_s[:first], r.green_s[:first], ratio=rs.latency_ratio,
                            floor_ms=rs.latency_floor_ms)


def _retime(pins: _Pins, index: int, results: list[ClassResult]) -> None:
    """The first RETIME_MAX statements of these classes run RETIME_ROUNDS more times on each side,
    alternating which side goes first; each one's fastest run per side is kept."""
    for rnd in range(RETIME_ROUNDS):
        for r in results:
            for i, st in enumerate(r.timed[:RETIME_MAX]):
                pair = pins.fresh(index)
                if pair.blue.broken or pair.green.broken:
                    return
                sides = (pair.green, pair.blue) if rnd % 2 == 0 else (pair.blue, pair.green)
                first, second = (s.run(st.database, st.sql).seconds for s in sides)
                g, b = (first, second) if sides[0] is pair.green else (second, first)
                r.blue_s[i] = min(r.blue_s[i], b)
                r.green_s[i] = min(r.green_s[i], g)
            r.retimed += 1


def _run_slice(pins: _Pins, index: int, work: list[tuple[ClassResult, Statement]]) -> None:
    for r, st in work:
        pair = pins.fresh(index)
        if pair.blue.broken or pair.green.broken:
            r.not_run += 1
            continue
        b = pair.blue.run(st.database, st.sql)
        g = pair.green.run(st.database, st.sql)
        if pair.blue.broken or pair.green.broken:
            r.not_run += 1  # the answer of a session that lost its snapshot proves nothing
            continue
        r.run += 1
        for name, o in (("blue", b), ("green", g)):
            if o.timed_out:
                r.timeouts[name] += 1
        r.timed.append(st)
        r.blue_s.append(b.seconds)
        r.green_s.append(g.seconds)
        found = compare(r.qc.info, b, g, ordered=r.ordered)
        if found is not None:
            kind, detail = found
            r.kinds[kind] += 1
            if len(r.examples) < MAX_EXAMPLES:
                r.examples.append(Difference(kind, detail, st.database, st.sql, side(b), side(g)))
