"""Per-phase summaries of the samples of one deployment, written to the store (``metric_summaries``),
with the phase's downsampled points (``metric_points``).

The samples stay in Redis with bounded retention; the summary is what the audit trail keeps:
for each metric of each phase, count, min, max, mean, p50, p95, p99 and the phase's bounds.
Alongside, the metrics the batch report plots (``POINT_METRICS``) are kept as about one point
per second (the mean of each second's samples), so the report can be drawn after Redis has
dropped the samples and after the servers are gone.
The sampler writes both when it notices that a deployment left a phase (``PhaseTracker``).
"""
from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select

from bgqueue.adapters.metrics.samples import MetricsStore, Sample
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.deployments import as_aware
from bgqueue.adapters.store.models import Deployment, MetricPoint, MetricSummary, PhaseChange

log = logging.getLogger(__name__)

# What the batch report plots: replication lag, write latency percentiles, errors, throughput.
POINT_METRICS: tuple[str, ...] = ("lag_ms", "probe_p50_ms", "probe_p95_ms", "probe_p99_ms", "errors_per_s",
                                  "qps", "writes_per_s", "threads_connected")
POINT_BUCKET_S = 1.0


def _pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def downsample(samples: list[Sample], metrics: tuple[str, ...] = POINT_METRICS,
               bucket_s: float = POINT_BUCKET_S) -> list[tuple[str, float, float]]:
    """``(metric, ts, value)``: per metric, one point per ``bucket_s``-second bucket (aligned on the
    unix epoch) that holds a sample of it; ``value`` is the mean of the bucket's values and ``ts``
    the mean of their timestamps (so a point stays inside the window its samples came from).
    Sorted by metric, then time."""
    buckets: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for s in samples:
        slot = math.floor(s.ts / bucket_s)
        for name in metrics:
            value = s.values.get(name)
            if value is not None and math.isfinite(value):
                buckets.setdefault((name, slot), []).append((s.ts, value))
    return [(name, sum(t for t, _ in items) / len(items), sum(v for _, v in items) / len(items))
            for (name, _), items in sorted(buckets.items())]


def summarize_phase(store: Store, metrics_store: MetricsStore, deployment_id: str, cluster: str,
                    phase: str, t0: float, t1: float) -> int:
    """Write one MetricSummary row per metric sampled on ``cluster`` in [t0, t1] (unix seconds), and
    the phase's points of ``POINT_METRICS`` (``downsample``, from the samples with t0 <= ts < t1:
    half-open, so that consecutive phases never share a point).

    Replaces the summary rows already stored for (deployment_id, phase) and the points already
    stored for the deployment in [t0, t1), in one transaction, so running it again — another
    sampler process, a restart — never duplicates them. Only samples still retained in Redis
    are summarised (``count`` says how many); with none, nothing is written. started_at and
    ended_at are the phase's bounds t0 and t1. Returns the number of summary rows written.
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
    points = [{"deployment_id": deployment_id, "metric": name, "ts": ts, "value": value}
              for name, ts, value in downsample([x for x in samples if x.ts < t1])]
    with store.session() as s:
        s.execute(delete(MetricSummary).where(MetricSummary.deployment_id == deployment_id,
                                              MetricSummary.phase == str(phase)))
        s.add_all(rows)
        s.execute(delete(MetricPoint).where(MetricPoint.deployment_id == deployment_id,
                                            MetricPoint.metric.in_(POINT_METRICS),
                                            MetricPoint.ts >= t0, MetricPoint.ts < t1))
        if points:
            s.execute(insert(MetricPoint), points)
    return len(rows)


def metric_points(store: Store, deployment_id: str, metric: str) -> list[tuple[float, float]]:
    """``(ts, value)`` of one metric of a deployment as the store keeps it, oldest first."""
    with store.session() as s:
        return [(ts, v) for ts, v in s.execute(
            select(MetricPoint.ts, MetricPoint.value)
            .where(MetricPoint.deployment_id == deployment_id, MetricPoint.metric == metric)
            .order_by(MetricPoint.ts))]


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
    return datetime.fromtimestamp(ts, tz=UTC)
