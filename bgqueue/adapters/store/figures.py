"""Read-only aggregates of the store for the Prometheus exporter and the watchdog.

The exporter's figures are aggregated in the database: a fixed number of queries, each returning
one row per label at most, so no row of the history comes to Python. The tables that grow with
every validation round and journal entry (check results, decisions, the journal's CDC moves and
rollbacks, all written once and never updated) are aggregated incrementally (``Incremental``):
a computation reads only the rows added since the last one. Deployments, one row per cluster
and batch whose figures change while it runs, are aggregated whole in two scans.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import CheckResultRow, DecisionRow, Deployment, NightlyRun, Step

# See Incremental: longer than any transaction that inserts a check result, a decision or a step.
SETTLE_S = 60.0


@dataclass(frozen=True)
class Histogram:
    """A histogram already aggregated by the database: cumulative counts per upper bound."""

    buckets: list[tuple[float, int]]  # (upper bound in seconds, values <= it)
    count: int
    total_s: float


@dataclass(frozen=True)
class StoreFigures:
    by_phase: list[tuple[str, int]]
    switch_durations: Histogram
    switch_writes_blocked: Histogram
    rollback_writes_blocked: Histogram
    checks: list[tuple[str, str, int]]
    verdicts: list[tuple[str, str, int]]
    rollbacks_automatic: int
    rollbacks_total: int
    cdc_downtime: Histogram
    latest_nightly_findings: int | None


def _histogram_columns(value_ms, bounds_s: tuple[float, ...]) -> list:
    """count, sum and one cumulative bucket count per bound: additive, so they can be summed."""
    return [func.count(value_ms), func.coalesce(func.sum(value_ms), 0.0),
            *(func.coalesce(func.sum(case((value_ms <= b * 1000.0, 1), else_=0)), 0) for b in bounds_s)]


def _histogram(values: list, bounds_s: tuple[float, ...]) -> Histogram:
    return Histogram(buckets=[(b, int(n)) for b, n in zip(bounds_s, values[2:], strict=True)], count=int(values[0]),
                     total_s=float(values[1]) / 1000.0)


class Incremental:
    """Additive aggregates (counts, sums) of an append-only table, grouped, kept incrementally.

    Rows up to a settled id are aggregated once and kept; younger rows are aggregated afresh on
    every call. An id is settled once it was below the table's maximum at a call at least
    ``settle_s`` ago: ids are handed out in order, so by then the transaction that took it has
    committed or gone (a PostgreSQL sequence hands out ids before commit, so a lower id can
    become visible after a higher one). A call costs one primary-key lookup and a pass over the
    unsettled rows only, however long the history.
    """

    def __init__(self, id_col, group_cols: list, agg_cols: list, where: list, *, settle_s: float = SETTLE_S,
                 clock: Callable[[], float] = time.monotonic):
        self.id_col, self.group_cols, self.agg_cols, self.where = id_col, group_cols, agg_cols, where
        self.settle_s, self.clock = settle_s, clock
        self.base: dict[tuple, list] = {}
        self.settled_id = 0
        self.marks: deque[tuple[float, int]] = deque()

    def _add(self, into: dict[tuple, list], s, *bounds) -> None:
        query = select(*self.group_cols, *self.agg_cols).where(*bounds, *self.where)
        if self.group_cols:
            query = query.group_by(*self.group_cols)
        k = len(self.group_cols)
        for row in s.execute(query):
            key, values = tuple(row[:k]), [v or 0 for v in row[k:]]
            into[key] = [a + b for a, b in zip(into.get(key, [0] * len(values)), values, strict=True)]

    def values(self, s) -> dict[tuple, list]:
        now = self.clock()
        self.marks.append((now, int(s.execute(select(func.max(self.id_col))).scalar() or 0)))
        target = self.settled_id
        while self.marks and self.marks[0][0] <= now - self.settle_s:
            target = max(target, self.marks.popleft()[1])
        if target > self.settled_id:
            self._add(self.base, s, self.id_col > self.settled_id, self.id_col <= target)
            self.settled_id = target
        total = {k: list(v) for k, v in self.base.items()}
        self._add(total, s, self.id_col > self.settled_id)
        return total


class ExporterFigures:
    """Every figure the exporter serves. Keep one per process: it holds the incremental parts."""

    def __init__(self, store: Store, bounds_s: tuple[float, ...]):
        self.store, self.bounds_s = store, bounds_s
        self.checks = Incremental(CheckResultRow.id, [CheckResultRow.name, CheckResultRow.status], [func.count()], [])
        self.verdicts = Incremental(DecisionRow.id, [DecisionRow.kind, DecisionRow.verdict], [func.count()], [])
        rollback_ms = Step.detail["writes_blocked_ms"].as_float()
        down_ms = Step.detail["down_ms"].as_float()
        # The plain column filters first: SQLite extracts the JSON of their rows only.
        self.rollback_blocked = Incremental(Step.id, [], _histogram_columns(rollback_ms, bounds_s),
                                            [Step.procedure == "rollback", Step.name == "rolled_back",
                                             rollback_ms != 0])
        self.cdc_down = Incremental(Step.id, [], _histogram_columns(down_ms, bounds_s),
                                    [Step.procedure == "cdc", Step.name == "resume", down_ms.is_not(None)])

    @property
    def incremental(self) -> list[Incremental]:
        return [self.checks, self.verdicts, self.rollback_blocked, self.cdc_down]

    def compute(self) -> StoreFigures:
        b = self.bounds_s
        empty = [0] * (2 + len(b))
        with self.store.session() as s:
            # One scan of the deployments for every figure drawn from them but the phase counts.
            row = s.execute(select(
                *_histogram_columns(Deployment.switch_duration_ms, b), *_histogram_columns(Deployment.writes_blocked_ms, b),
                func.coalesce(func.sum(case((Deployment.phase == "ROLLED_BACK", 1), else_=0)), 0),
                func.coalesce(func.sum(case(((Deployment.phase == "ROLLED_BACK")
                                             & Deployment.reason.like("automatic%"), 1), else_=0)), 0))).one()
            n = 2 + len(b)
            return StoreFigures(
                by_phase=[(p, c) for p, c in s.execute(select(Deployment.phase, func.count())
                                                       .group_by(Deployment.phase))],
                switch_durations=_histogram(list(row[:n]), b),
                switch_writes_blocked=_histogram(list(row[n:2 * n]), b),
                rollback_writes_blocked=_histogram(self.rollback_blocked.values(s).get((), empty), b),
                checks=sorted((name, status, int(v[0])) for (name, status), v in self.checks.values(s).items()),
                verdicts=sorted((kind, verdict, int(v[0])) for (kind, verdict), v in self.verdicts.values(s).items()),
                rollbacks_automatic=int(row[2 * n + 1]),
                rollbacks_total=int(row[2 * n]),
                cdc_downtime=_histogram(self.cdc_down.values(s).get((), empty), b),
                latest_nightly_findings=s.execute(select(NightlyRun.findings)
                                                  .where(NightlyRun.finished_at.is_not(None))
                                                  .order_by(NightlyRun.started_at.desc()).limit(1)).scalar(),
            )


@dataclass(frozen=True)
class PhaseRow:
    id: str
    batch_id: str
    phase: str
    reason: str | None
    updated_at: datetime
    spec: Any
    heartbeat_at: datetime | None = None


def in_phases(store: Store, phases: Sequence[str]) -> list[PhaseRow]:
    """Deployments in these phases, with what the watchdog needs to judge them."""
    with store.session() as s:
        rows = s.execute(select(Deployment.id, Deployment.batch_id, Deployment.phase, Deployment.reason,
                                Deployment.updated_at, Deployment.spec, Deployment.heartbeat_at)
                         .where(Deployment.phase.in_(phases))).all()
    return [PhaseRow(*r) for r in rows]
