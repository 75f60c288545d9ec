"""Per-phase summaries of the samples of one deployment, written to the store (``metric_summaries``).

The samples stay in Redis with bounded retention; the summary is what the audit trail keeps:
for each metric of each phase, count, min, max, mean, p50, p95, p99 and the phase's bounds.
The sampler writes them when it notices that a deployment left a phase (``PhaseTracker``).
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone

from sqlalchemy import delete, select

from bgqueue.metrics.samples import MetricsStore
from bgqueue.store.db import Store
from bgqueue.store.deployments import as_aware
from bgqueue.store.models import Deployment, MetricSummary, PhaseChange

log = logging.getLogger(__name__)


def _pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize_phase(store: Store, metrics_store: MetricsStore, deployment_id: str, cluster: str,
                    phase: str, t0: float, t1: float) -> int:
    """Write one MetricSummary row per metric sampled on ``cluster`` in [t0, t1] (unix seconds).

    Replaces the rows already stored for (deployment_id, phase), so running it again — another
    sampler process, a restart — never duplicates them. Only samples still retained in Redis
    are summarised (``count`` says how many); with none, nothing is written. started_at and
    ended_at are the phase's bounds t0 and t1. Returns the number of rows written.
    """
    samples = metrics_store.range(cluster, t0, t1)
    by_metric: dict[str, list[float]] = {}
    for s in samples:
        for name, value in s.values.items():
            by_metric.setdefault(name, []).append(value)
    if not by_metric:
        return 0
    started, ended = _dt(t0), _dt(t1)
    rows = []
    for name, values in sorted(by_metric.items()):
        values.sort()
        rows.append(MetricSummary(
            deployment_id=deployment_id, phase=str(phase), metric=name, count=len(values),
            min=values[0], max=values[-1], mean=sum(values) / len(values),
            p50=_pct(values, 50), p95=_pct(values, 95), p99=_pct(values, 99),
            started_at=started, ended_at=ended))
    with store.session() as s:
        s.execute(delete(MetricSummary).where(MetricSummary.deployment_id == deployment_id,
                                              MetricSummary.phase == str(phase)))
        s.add_all(rows)
    return len(rows)


def phase_windows(store: Store, deployment_id: str) -> list[tuple[str, float, float | None]]:
    """(phase, entered, left or None) of a deployment, in order, from its phase history."""
    with store.session() as s:
        created = s.execute(select(Deployment.created_at).where(Deployment.id == deployment_id)).scalar_one_or_none()
        if created is None:
            return []
        changes = list(s.execute(select(PhaseChange.from_phase, PhaseChange.to_phase, PhaseChange.at)
                                 .where(PhaseChange.deployment_id == deployment_id).order_by(PhaseChange.id)))
    out: list[tuple[str, float, float | None]] = []
    phase, entered = "PENDING", as_aware(created).timestamp()
    for from_phase, to_phase, at in changes:
        left = as_aware(at).timestamp()
        out.append((from_phase or phase, entered, left))
        phase, entered = to_phase, left
    out.append((phase, entered, None))
    return out


class PhaseTracker:
    """Notices phase changes of the deployments a sampler follows and summarises the phases that ended.

    One sampler process summarises each (deployment, phase) at most once, and only phases that
    ended after it first saw the deployment (earlier ones it did not sample).
    """

    def __init__(self, store: Store, metrics_store: MetricsStore):
        self.store, self.metrics = store, metrics_store
        self._seen: dict[str, tuple[str, str, float]] = {}  # deployment → (cluster, phase, first seen)
        self._done: set[tuple[str, str]] = set()

    def observe(self, deployments: dict[str, tuple[str, str]], now: float | None = None) -> int:
        """``deployments``: id → (cluster, phase) of those in flight now. Returns summary rows written.

        A deployment that changed phase, or left the list (it ended), has its ended phases summarised.
        """
        now = time.time() if now is None else now
        written = 0
        for dep_id, (cluster, phase) in deployments.items():
            seen = self._seen.get(dep_id)
            if seen is None:
                self._seen[dep_id] = (cluster, phase, now)
            elif seen[1] != phase:
                written += self._summarize_ended(dep_id, seen[0], seen[2])
                self._seen[dep_id] = (cluster, phase, seen[2])
        for dep_id in [d for d in self._seen if d not in deployments]:
            cluster, _, first_seen = self._seen.pop(dep_id)
            written += self._summarize_ended(dep_id, cluster, first_seen)
        return written

    def _summarize_ended(self, dep_id: str, cluster: str, first_seen: float) -> int:
        written = 0
        for phase, entered, left in phase_windows(self.store, dep_id):
            if left is None or left < first_seen or (dep_id, phase) in self._done:
                continue
            try:
                written += summarize_phase(self.store, self.metrics, dep_id, cluster, phase, entered, left)
            except Exception:  # one bad summary must not stop sampling; it is retried on no later change
                log.exception("deployment %s: summary of phase %s failed", dep_id, phase)
                continue
            self._done.add((dep_id, phase))
        return written


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
