"""What a batch report shows, read from the store only (never from Redis or the servers), so that a
report can be written after the sandbox, the samples' retention or the servers are gone."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from bgqueue.adapters.metrics.summary import POINT_METRICS, phase_windows
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store import validation as records
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import (
    Batch,
    Checkpoint,
    CheckResultRow,
    DecisionRow,
    Deployment,
    MetricPoint,
    MetricSummary,
    Step,
)
from bgqueue.app.report.svg import Event
from bgqueue.model.errors import BadInput


@dataclass
class ClusterData:
    """Everything the store keeps about one deployment of the batch. Times are unix seconds."""

    deployment: Deployment
    windows: list[tuple[str, float, float | None]]  # (phase, entered, left or None)
    steps: list[Step]
    checkpoints: list[Checkpoint]
    checks: list[CheckResultRow]  # every round, oldest first
    decisions: list[DecisionRow]
    summaries: list[MetricSummary]
    points: dict[str, list[tuple[float, float]]]  # metric → (ts, value)
    events: list[Event] = field(default_factory=list)  # x relative to ``reference``
    reference: float = 0.0  # the switchover's route flip; without one, the deployment's start
    reference_label: str = ""


@dataclass
class BatchData:
    batch: Batch
    clusters: list[ClusterData]
    generated_at: datetime


def ts(dt: datetime | None) -> float | None:
    """Unix seconds of a store datetime (SQLite gives naive UTC)."""
    dt = deps.as_aware(dt)
    return None if dt is None else dt.timestamp()


def load_batch(store: Store, batch_ref: str) -> BatchData:
    """The batch ``batch_ref`` (an id or a unique id prefix) and every deployment's records.
    BadInput when no batch matches."""
    batch = deps.find_batch(store, batch_ref)
    if batch is None:
        raise BadInput(f"no batch {batch_ref!r} in the store (or the prefix names more than one)")
    clusters = [load_cluster(store, d) for d in deps.batch_deployments(store, batch.id)]
    return BatchData(batch, clusters, datetime.now(UTC))


def load_cluster(store: Store, dep: Deployment) -> ClusterData:
    with store.session() as s:
        checks = list(s.execute(select(CheckResultRow).where(CheckResultRow.deployment_id == dep.id)
                                .order_by(CheckResultRow.round, CheckResultRow.id)).scalars())
        summaries = list(s.execute(select(MetricSummary).where(MetricSummary.deployment_id == dep.id)
                                   .order_by(MetricSummary.started_at, MetricSummary.metric)).scalars())
        points: dict[str, list[tuple[float, float]]] = {}
        for metric, t, v in s.execute(select(MetricPoint.metric, MetricPoint.ts, MetricPoint.value)
                                      .where(MetricPoint.deployment_id == dep.id,
                                             MetricPoint.metric.in_(POINT_METRICS))
                                      .order_by(MetricPoint.metric, MetricPoint.ts)):
            points.setdefault(metric, []).append((t, v))
        for row in checks + summaries:
            s.expunge(row)
    data = ClusterData(deployment=dep, windows=phase_windows(store, dep.id), steps=journal.steps(store, dep.id),
                       checkpoints=journal.checkpoints(store, dep.id), checks=checks,
                       decisions=records.decisions(store, dep.id), summaries=summaries, points=points)
    _mark_events(data)
    return data


def _procedure_events(steps: list[Step], procedure: str) -> list[tuple[str, float, float | None]]:
    """(kind, moment, writes blocked since) of each run of a switchover-shaped procedure: the route
    flip (done) or the lifted fence (a failed switchover), with the fence that preceded it."""
    out = []
    fence: float | None = None
    for st in (s for s in steps if s.procedure == procedure):
        if st.name == "fence":
            fence = ts(st.started_at)
        elif st.name == "flip_routing" and st.status == "done":
            out.append(("flip", ts(st.ended_at) or ts(st.started_at), fence))
        elif st.name == "lift_fence" and st.status == "done":
            out.append(("lifted", ts(st.ended_at) or ts(st.started_at), fence))
    return out


def _mark_events(data: ClusterData) -> None:
    """The moments every drawing marks, and the reference (x = 0) they are all relative to."""
    raw: list[tuple[str, str, float, float | None]] = []
    for kind, at, fence in _procedure_events(data.steps, "switchover"):
        raw.append(("switchover", "switchover", at, fence) if kind == "flip"
                   else ("failed", "switchover failed (fence lifted)", at, fence))
    for kind, at, fence in _procedure_events(data.steps, "rollback"):
        if kind == "flip":
            raw.append(("rollback", "rollback", at, fence))
    flips = [at for k, _, at, _ in raw if k in ("switchover", "failed")]
    if flips:
        data.reference = flips[0]
        data.reference_label = ("the switchover's route flip" if raw[0][0] == "switchover"
                                else "the failed switchover's lifted fence")
    else:
        data.reference = ts(data.deployment.created_at) or 0.0
        data.reference_label = "the deployment's start (no switchover)"
    data.events = [Event(kind, label, at - data.reference, None if fence is None else fence - data.reference)
                   for kind, label, at, fence in sorted(raw, key=lambda r: r[2])]


def span(data: ClusterData) -> tuple[float, float]:
    """(start, end) of the deployment in unix seconds; an unfinished one ends at its last record."""
    start = ts(data.deployment.created_at) or 0.0
    ends = [ts(data.deployment.finished_at), ts(data.deployment.updated_at)]
    ends += [ts(s.ended_at) or ts(s.started_at) for s in data.steps[-1:]]
    ends += [pts[-1][0] for pts in data.points.values() if pts]
    return start, max([e for e in ends if e is not None] + [start + 1.0])
