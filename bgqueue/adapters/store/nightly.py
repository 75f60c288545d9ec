"""The nightly validations' records: registered fleet files, runs and their findings."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select, update

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import FleetRegistration, NightlyFinding, NightlyRun, utcnow
from bgqueue.model.errors import BadInput


def register(store: Store, path: str, name: str) -> None:
    with store.session() as s:
        s.merge(FleetRegistration(path=path, name=name, registered_at=utcnow()))


def unregister(store: Store, path: str) -> bool:
    with store.session() as s:
        row = s.get(FleetRegistration, path)
        if row is None:
            return False
        s.delete(row)
    return True


def registered(store: Store) -> list[str]:
    with store.session() as s:
        return [r.path for r in s.execute(select(FleetRegistration).order_by(FleetRegistration.path)).scalars()]


def start_run(store: Store, trigger: str) -> str:
    run_id = str(uuid.uuid4())
    with store.session() as s:
        s.add(NightlyRun(id=run_id, trigger=trigger))
    return run_id


def record(store: Store, run_id: str, cluster: str, check: str, status: str, reason: str = "",
           evidence: dict | None = None) -> None:
    with store.session() as s:
        s.add(NightlyFinding(run_id=run_id, cluster=cluster, check=check, status=status, reason=reason,
                             evidence=evidence))


def finish_run(store: Store, run_id: str, clusters: int) -> None:
    with store.session() as s:
        n = s.execute(select(func.count()).select_from(NightlyFinding)
                      .where(NightlyFinding.run_id == run_id, NightlyFinding.status != "pass")).scalar()
        s.execute(update(NightlyRun).where(NightlyRun.id == run_id)
                  .values(finished_at=utcnow(), findings=n, clusters=clusters))


def run_summary(store: Store, run_id: str) -> dict:
    with store.session() as s:
        run = s.get(NightlyRun, run_id)
        if run is None:
            raise BadInput(f"no nightly run {run_id}")
        rows = list(s.execute(select(NightlyFinding).where(NightlyFinding.run_id == run_id)
                              .order_by(NightlyFinding.id)).scalars())
        return {"run": run.id, "trigger": run.trigger, "started_at": run.started_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "clusters": run.clusters, "findings": run.findings,
                "results": [{"cluster": f.cluster, "check": f.check, "status": f.status, "reason": f.reason}
                            for f in rows]}


def latest_finished_run(store: Store) -> str | None:
    with store.session() as s:
        return s.execute(select(NightlyRun.id).where(NightlyRun.finished_at.is_not(None))
                         .order_by(NightlyRun.started_at.desc()).limit(1)).scalar_one_or_none()
