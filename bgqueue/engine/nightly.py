"""Nightly validations of every cluster of the registered fleet files.

Per cluster: replication health of the standby, parameter drift between primary and standby,
checksums of the critical tables. Across the store: reverse replication of clusters still in
their retention period (the standby IS the old primary then), overdue decommissions, and the
cost of environments that coexist. Each run and its findings are recorded; Celery beat fans
the clusters out as separate tasks, `bgqueue nightly --now` runs the same code in-process.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update

from bgqueue.engine import lifecycle
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.drift import parameter_drift
from bgqueue.checks.registry import checksum
from bgqueue.checks.replication import replication_health
from bgqueue.model.errors import BadInput, BgqueueError
from bgqueue.model.fleet import ClusterSpec, load_fleet
from bgqueue.model.phases import Phase
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import Deployment, FleetRegistration, NightlyFinding, NightlyRun, utcnow

NIGHTLY_CHECKS = (("replication_health", replication_health), ("parameter_drift", parameter_drift),
                  ("checksum", checksum))


@dataclass(frozen=True)
class Target:
    fleet_path: str
    cluster: str


def register(rt: Runtime, path: str) -> str:
    from pathlib import Path

    fleet = load_fleet(path)  # refuse a file that does not validate
    resolved = str(Path(path).resolve())
    with rt.store.session() as s:
        s.merge(FleetRegistration(path=resolved, name=fleet.name, registered_at=utcnow()))
    return resolved


def unregister(rt: Runtime, path: str) -> bool:
    from pathlib import Path

    with rt.store.session() as s:
        row = s.get(FleetRegistration, str(Path(path).resolve()))
        if row is None:
            return False
        s.delete(row)
    return True


def registered(rt: Runtime) -> list[str]:
    with rt.store.session() as s:
        return [r.path for r in s.execute(select(FleetRegistration).order_by(FleetRegistration.path)).scalars()]


def targets(rt: Runtime) -> list[Target]:
    out = []
    for path in registered(rt):
        try:
            fleet = load_fleet(path)
        except BgqueueError:
            out.append(Target(path, "*"))  # recorded as a finding by check_target
            continue
        out += [Target(path, c.name) for c in fleet.clusters]
    return out


def start_run(rt: Runtime, trigger: str) -> str:
    run_id = str(uuid.uuid4())
    with rt.store.session() as s:
        s.add(NightlyRun(id=run_id, trigger=trigger))
    return run_id


def _record(rt: Runtime, run_id: str, cluster: str, check: str, status: str, reason: str = "",
            evidence: dict | None = None) -> None:
    with rt.store.session() as s:
        s.add(NightlyFinding(run_id=run_id, cluster=cluster, check=check, status=status, reason=reason,
                             evidence=evidence))


def _roles(rt: Runtime, spec: ClusterSpec) -> ClusterSpec:
    """The spec with blue = the current primary (per routing) and green = its standby."""
    route = rt.routing.get(spec.name)
    if route is not None and (route.host, route.port) == (spec.green.host, spec.green.port):
        return spec.model_copy(update={"blue": spec.green, "green": spec.blue})
    return spec


def check_target(rt: Runtime, run_id: str, fleet_path: str, cluster: str) -> int:
    """Run the nightly checks of one cluster; returns the number of findings (non-passing)."""
    try:
        spec = load_fleet(fleet_path).cluster(cluster) if cluster != "*" else None
        if spec is None:
            load_fleet(fleet_path)
    except BgqueueError as e:
        _record(rt, run_id, cluster, "fleet_file", "error", f"{fleet_path}: {e}")
        return 1
    if not isinstance(spec, ClusterSpec):
        return 0  # rds clusters: their health is CloudWatch's (alarms); cost is counted fleet-wide
    # The checksum writes on the primary: never while a deployment may be fencing it, and hold the
    # cluster's lock meanwhile so that no batch starts under it.
    active = deps.active_deployment(rt.store, cluster)
    holder = f"nightly:{run_id}"
    if active is not None or not rt.locks.acquire(cluster, holder, 3600):
        _record(rt, run_id, cluster, "skipped", "pass", "a deployment is in flight: checked next night",
                {"deployment": active.id if active else None, "lock": rt.locks.holder(cluster)})
        return 0
    try:
        return _check_locked(rt, run_id, cluster, _roles(rt, spec))
    finally:
        rt.locks.release(cluster, holder)


def _check_locked(rt: Runtime, run_id: str, cluster: str, spec: ClusterSpec) -> int:
    blue, green = lifecycle.servers(spec)
    ctx = CheckContext(spec=spec, blue=blue, green=green, store=rt.store)
    findings = 0
    try:
        for name, check in NIGHTLY_CHECKS:
            r = run_check(name, check, ctx)
            findings += r.status != "pass"
            _record(rt, run_id, cluster, name, "pass" if r.status == "pass" else ("error" if r.status == "error"
                                                                                   else "fail"),
                    r.reason, {"primary": str(spec.blue), "standby": str(spec.green), **(r.evidence or {})})
    finally:
        ctx.close()
    return findings


def fleet_wide(rt: Runtime, run_id: str) -> int:
    """Overdue decommissions and the cost of coexisting environments."""
    findings = 0
    now = utcnow()
    with rt.store.session() as s:
        rows = list(s.execute(select(Deployment).where(Deployment.phase == Phase.COMPLETED,
                                                       Deployment.decommissioned_at.is_(None))).scalars())
        for r in rows:
            s.expunge(r)
    for d in rows:
        until = deps.as_aware(d.retention_until)
        if until is not None and until < now:
            findings += 1
            _record(rt, run_id, d.cluster, "decommission_overdue", "fail",
                    f"deployment {d.id}: retention ended {until.isoformat()} but the old primary is not "
                    f"decommissioned (bgqueue decommission {d.cluster})", {"deployment": d.id})
    cost, items = coexistence_cost(rt, rows)
    _record(rt, run_id, "*", "coexistence_cost", "pass", f"${cost:.2f}/hour for {len(items)} environment(s)",
            {"per_hour": round(cost, 4), "items": items})
    return findings


def coexistence_cost(rt: Runtime, completed: list[Deployment]) -> tuple[float, list[dict]]:
    """Extra hourly cost of green environments that exist beside their blue (rds provider)."""
    items = []
    with rt.store.session() as s:
        live = list(s.execute(select(Deployment).where(Deployment.provider == "rds",
                                                       Deployment.phase.not_in([Phase.NO_GO, Phase.FAILED,
                                                                                Phase.ROLLED_BACK,
                                                                                Phase.SWITCHOVER_FAILED]),
                                                       Deployment.decommissioned_at.is_(None))).scalars())
        for d in live:
            s.expunge(d)
    total = 0.0
    for d in live:
        # Estimated at prepare from the source's real class and storage: no AWS call at report time.
        cost = (d.facts or {}).get("cost") or {}
        per_hour = cost.get("green_per_hour") or 0.0
        total += per_hour
        items.append({"cluster": d.cluster, "deployment": d.id, "phase": d.phase, "green_per_hour": per_hour,
                      "unpriced": cost.get("unpriced", [])})
    return total, items


def finish_run(rt: Runtime, run_id: str, clusters: int) -> dict:
    with rt.store.session() as s:
        n = s.execute(select(func.count()).select_from(NightlyFinding)
                      .where(NightlyFinding.run_id == run_id, NightlyFinding.status != "pass")).scalar()
        s.execute(update(NightlyRun).where(NightlyRun.id == run_id)
                  .values(finished_at=utcnow(), findings=n, clusters=clusters))
    return run_summary(rt, run_id)


def run_summary(rt: Runtime, run_id: str) -> dict:
    with rt.store.session() as s:
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


def latest_run(rt: Runtime) -> dict | None:
    with rt.store.session() as s:
        run = s.execute(select(NightlyRun).where(NightlyRun.finished_at.is_not(None))
                        .order_by(NightlyRun.started_at.desc()).limit(1)).scalar_one_or_none()
        run_id = run.id if run else None
    return run_summary(rt, run_id) if run_id else None


def run_now(rt: Runtime) -> dict:
    """The whole nightly validation in this process (what `bgqueue nightly --now` runs)."""
    run_id = start_run(rt, "manual")
    ts = targets(rt)
    for t in ts:
        check_target(rt, run_id, t.fleet_path, t.cluster)
    fleet_wide(rt, run_id)
    return finish_run(rt, run_id, len(ts))
