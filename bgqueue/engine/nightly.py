"""Nightly validations of every cluster of the registered fleet files.

Per cluster: replication health of the standby, parameter drift between primary and standby,
checksums of the critical tables. Across the store: reverse replication of clusters still in
their retention period (the standby IS the old primary then), overdue decommissions, and the
cost of environments that coexist. Each run and its findings are recorded; Celery beat fans
the clusters out as separate tasks, `bgqueue nightly --now` runs the same code in-process.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import nightly as records
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.engine.providers import names, provider_for, provider_named
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec, load_fleet


@dataclass(frozen=True)
class Target:
    fleet_path: str
    cluster: str


def register(rt: Runtime, path: str) -> str:
    fleet = load_fleet(path)  # refuse a file that does not validate
    resolved = str(Path(path).resolve())
    records.register(rt.store, resolved, fleet.name)
    return resolved


def unregister(rt: Runtime, path: str) -> bool:
    return records.unregister(rt.store, str(Path(path).resolve()))


def registered(rt: Runtime) -> list[str]:
    return records.registered(rt.store)


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
    return records.start_run(rt.store, trigger)


def _record(rt: Runtime, run_id: str, cluster: str, check: str, status: str, reason: str = "",
            evidence: dict | None = None) -> None:
    records.record(rt.store, run_id, cluster, check, status, reason, evidence)


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
    if spec is None or not provider_for(spec).nightly_checks(spec):
        return 0  # e.g. rds clusters: their health is CloudWatch's (alarms); cost is counted fleet-wide
    # The checksum writes on the primary: never while a deployment may be fencing it, and hold the
    # cluster's lock meanwhile so that no batch starts under it.
    active = deps.active_deployment(rt.store, cluster)
    holder = f"nightly:{run_id}"
    if active is not None or not rt.locks.acquire(cluster, holder, 3600):
        _record(rt, run_id, cluster, "skipped", "pass", "a deployment is in flight: checked next night",
                {"deployment": active.id if active else None, "lock": rt.locks.holder(cluster)})
        return 0
    try:
        assert isinstance(spec, ClusterSpec)  # a provider with nightly checks has SQL servers
        return _check_locked(rt, run_id, cluster, _roles(rt, spec))
    finally:
        rt.locks.release(cluster, holder)


def _check_locked(rt: Runtime, run_id: str, cluster: str, spec: ClusterSpec) -> int:
    blue, green = servers(spec)
    ctx = CheckContext(spec=spec, blue=blue, green=green, store=rt.store)
    findings = 0
    try:
        for name, check in provider_for(spec).nightly_checks(spec):
            r = run_check(name, check, ctx)
            findings += r.status != "pass"
            _record(rt, run_id, cluster, name, "pass" if r.status == "pass" else ("error" if r.status == "error"
                                                                                   else "fail"),
                    r.reason, {"primary": str(spec.blue), "standby": str(spec.green), **(r.evidence or {})})
    finally:
        ctx.close()
    return findings


def fleet_wide(rt: Runtime, run_id: str) -> int:
    """Overdue decommissions, environments coexisting for too long, and the cost of coexistence."""
    findings = 0
    now = utcnow()
    rows = deps.completed_not_decommissioned(rt.store)
    for d in rows:
        until = deps.as_aware(d.retention_until)
        if until is not None and until < now:
            findings += 1
            _record(rt, run_id, d.cluster, "decommission_overdue", "fail",
                    f"deployment {d.id}: retention ended {until.isoformat()} but the old primary is not "
                    f"decommissioned (bgqueue decommission {d.cluster})", {"deployment": d.id})
    cost, items, warnings = coexistence_cost(rt, rows)
    days = rt.settings.coexist_report_days
    for i in items:
        if i["age_days"] >= days:
            findings += 1
            real = f", {i['explorer_cost']:.2f} per Cost Explorer" if i.get("explorer_cost") is not None else ""
            _record(rt, run_id, i["cluster"], "coexisting_too_long", "fail",
                    f"deployment {i['deployment']} ({i['phase']}): a second environment has coexisted for "
                    f"{i['age_days']:.1f} days (over {days:g}): about ${i['estimated_so_far']:.2f} so far at "
                    f"${i['green_per_hour']:.2f}/hour{real}", i)
    _record(rt, run_id, "*", "coexistence_cost", "pass",  # a billing permission missing is a warning
            f"${cost:.2f}/hour for {len(items)} environment(s)" + "".join(f"; warning: {w}" for w in warnings),
            {"per_hour": round(cost, 4), "items": items, "warnings": warnings})
    return findings


def coexistence_cost(rt: Runtime, completed: list[Deployment]) -> tuple[float, list[dict], list[str]]:
    """Extra hourly cost of environments that exist beside their blue (providers that create them),
    each with its age, the estimate so far and (where the provider reads it) the real cost."""
    items = []
    total = 0.0
    warnings: list[str] = []
    now = utcnow()
    for name in names():
        provider = provider_named(name)
        if not provider.creates_environments:
            continue
        live = deps.coexisting(rt.store, name)
        real, problems = provider.real_costs(live) if live else ({}, [])
        warnings += problems
        for d in live:
            # Estimated at prepare from the source's real class and storage: no AWS call for it.
            cost = (d.facts or {}).get("cost") or {}
            per_hour = cost.get("green_per_hour") or 0.0
            total += per_hour
            start = deps.as_aware(d.created_at) or now
            age_h = max(0.0, (now - start).total_seconds()) / 3600
            items.append({"cluster": d.cluster, "deployment": d.id, "phase": d.phase, "green_per_hour": per_hour,
                          "unpriced": cost.get("unpriced", []), "age_days": round(age_h / 24, 3),
                          "estimated_so_far": round(per_hour * age_h, 4),
                          "explorer_cost": None if problems else real.get(d.id, 0.0)})
    return total, items, warnings


def finish_run(rt: Runtime, run_id: str, clusters: int) -> dict:
    records.finish_run(rt.store, run_id, clusters)
    return run_summary(rt, run_id)


def run_summary(rt: Runtime, run_id: str) -> dict:
    return records.run_summary(rt.store, run_id)


def latest_run(rt: Runtime) -> dict | None:
    run_id = records.latest_finished_run(rt.store)
    return run_summary(rt, run_id) if run_id else None


def run_now(rt: Runtime) -> dict:
    """The whole nightly validation in this process (what `bgqueue nightly --now` runs)."""
    run_id = start_run(rt, "manual")
    ts = targets(rt)
    for t in ts:
        check_target(rt, run_id, t.fleet_path, t.cluster)
    fleet_wide(rt, run_id)
    return finish_run(rt, run_id, len(ts))
