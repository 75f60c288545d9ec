"""Read-only aggregates of the store for the Prometheus exporter and the watchdog."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import CheckResultRow, DecisionRow, Deployment, NightlyRun, Step


@dataclass(frozen=True)
class StoreFigures:
    by_phase: list[tuple[str, int]]
    switch_durations_s: list[float]
    switch_writes_blocked_s: list[float]
    rollback_details: list[dict | None]
    checks: list[tuple[str, str, int]]
    verdicts: list[tuple[str, str, int]]
    rolled_back_reasons: list[str | None]
    cdc_resume_details: list[dict | None]
    latest_nightly_findings: int | None


def exporter_figures(store: Store) -> StoreFigures:
    with store.session() as s:
        return StoreFigures(
            by_phase=[(p, n) for p, n in s.execute(select(Deployment.phase, func.count()).group_by(Deployment.phase))],
            switch_durations_s=[r[0] / 1000 for r in s.execute(select(Deployment.switch_duration_ms)
                                                               .where(Deployment.switch_duration_ms.is_not(None)))],
            switch_writes_blocked_s=[r[0] / 1000 for r in s.execute(select(Deployment.writes_blocked_ms)
                                                                    .where(Deployment.writes_blocked_ms.is_not(None)))],
            rollback_details=[r[0] for r in s.execute(select(Step.detail).where(Step.procedure == "rollback",
                                                                                 Step.name == "rolled_back"))],
            checks=[tuple(r) for r in s.execute(select(CheckResultRow.name, CheckResultRow.status, func.count())
                                                .group_by(CheckResultRow.name, CheckResultRow.status))],
            verdicts=[tuple(r) for r in s.execute(select(DecisionRow.kind, DecisionRow.verdict, func.count())
                                                  .group_by(DecisionRow.kind, DecisionRow.verdict))],
            rolled_back_reasons=[r[0] for r in s.execute(select(Deployment.reason)
                                                         .where(Deployment.phase == "ROLLED_BACK"))],
            cdc_resume_details=[r[0] for r in s.execute(select(Step.detail).where(Step.procedure == "cdc",
                                                                                   Step.name == "resume"))],
            latest_nightly_findings=s.execute(select(NightlyRun.findings).where(NightlyRun.finished_at.is_not(None))
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
