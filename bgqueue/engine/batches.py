"""Opening a batch (validate, preflight, lock, record) and summarising it when it ends.

The Celery canvas is built in ``tasks.batch``; everything that decides whether a batch may
start lives here, so that ``fleet run``, the demo and the benchmark share one code path.
"""
from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.engine.preflight import check_clusters
from bgqueue.engine.providers import provider_for
from bgqueue.model.errors import BadInput, ClusterBusy
from bgqueue.model.fleet import FleetFileError, check_credentials, load_fleet
from bgqueue.model.phases import SWITCHED, TERMINAL, Phase


@dataclass(frozen=True)
class OpenedBatch:
    batch_id: str
    deployments: dict[str, str]  # cluster → deployment id (every cluster of the batch)
    # cluster → reason: recorded NO_GO at preflight (the servers' state), not enqueued
    no_go: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # e.g. a budget not created for want of a permission (the batch goes on)


def located(fleet_path: str, problems: list[tuple[str, str, str]]) -> FleetFileError:
    """Every (cluster, field, message) as one FleetFileError: the first, then the others."""
    errors = [FleetFileError(fleet_path, message, cluster=cluster, field=f) for cluster, f, message in problems]
    first = errors[0]
    first.others = errors[1:]
    if first.others:
        first.args = (str(first) + "".join(f"\n  also: {o}" for o in first.others),)
    return first


def _by_provider(specs: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in specs:
        out.setdefault(s.provider, []).append(s)
    return out


def check_budgets(fleet, specs: list, fleet_path: str) -> list[dict]:
    """Each provider's cost estimate of the batch (FleetFileError, exit 2, when over the fleet's
    budget_per_hour): ``fleet check`` shows it, ``fleet run`` refuses over it."""
    estimates = []
    for group in _by_provider(specs).values():
        found = provider_for(group[0]).check_budget(fleet, group, fleet_path)
        if found is not None:
            estimates.append(found)
    return estimates


def open_batch(rt: Runtime, fleet_path: str, only: list[str] | None = None, *, preflight: bool = True,
               requested_by: str | None = None, strict: bool = False) -> OpenedBatch:
    """Everything before enqueueing. Raises BadInput (exit 2, every problem found, located) or
    ClusterBusy (exit 1); on any error nothing is recorded, no lock is left behind, and no server
    was changed. A cluster whose servers' state is wrong (replication stopped, a server down) is
    recorded NO_GO with the reason at once and the others go on (``strict``: refused like bad
    input, all or nothing)."""
    text = Path(fleet_path).read_text() if Path(fleet_path).is_file() else None
    fleet = load_fleet(fleet_path)
    specs = fleet.select(only)
    check_credentials(fleet, fleet_path, specs)
    _staging_twins_exist(rt, fleet, specs, fleet_path)
    check_budgets(fleet, specs, fleet_path)
    not_ready: dict[str, str] = {}
    if preflight:
        results = check_clusters(specs)
        bad = [(r.cluster, f, m) for r in results for f, m in r.problems]
        if strict:
            bad += [(r.cluster, f, m) for r in results for f, m in r.state_problems]
        if bad:
            raise located(fleet_path, bad)
        not_ready = {r.cluster: "preflight: " + "; ".join(f"{f}: {m}" for f, m in r.state_problems)
                     for r in results if r.state_problems}
    holder = str(uuid.uuid4())
    taken: list[str] = []
    try:
        for spec in specs:
            active = deps.active_deployment(rt.store, spec.name)
            if active is not None:
                raise ClusterBusy(f"cluster {spec.name!r} is in flight: deployment {active.id} of batch "
                                  f"{active.batch_id} is {active.phase}; nothing was enqueued")
            if not rt.locks.acquire(spec.name, holder, rt.settings.lock_ttl_s):
                raise ClusterBusy(f"cluster {spec.name!r} is locked by batch {rt.locks.holder(spec.name)}; "
                                  f"nothing was enqueued")
            taken.append(spec.name)
        batch_id, ids = deps.create_batch(
            rt.store, fleet_name=fleet.name, fleet_path=str(Path(fleet_path).resolve()), fleet_text=text or "",
            clusters=[s.model_dump(mode="json") for s in specs],
            requested_by=requested_by or getpass.getuser(), batch_id=holder)
    except BaseException:
        for name in taken:
            rt.locks.release(name, holder)
        raise
    for cluster, reason in not_ready.items():
        claim = deps.claim(rt.store, ids[cluster], "preflight", [Phase.PENDING])
        if claim is not None:
            deps.transition(rt.store, claim, Phase.NO_GO, reason=reason)
        rt.locks.release(cluster, holder)
    warnings: list[str] = []
    for group in _by_provider([s for s in specs if s.name not in not_ready]).values():
        warnings += provider_for(group[0]).batch_started(rt, fleet, batch_id, [ids[s.name] for s in group])
    return OpenedBatch(batch_id, ids, not_ready, tuple(warnings))


def _staging_twins_exist(rt: Runtime, fleet, specs: list, fleet_path: str) -> None:
    """A staging twin is a cluster of this fleet or one the store has deployed: a misspelt twin
    would otherwise only show as a NO_GO at the gate, after preparing and syncing."""
    names = {c.name for c in fleet.clusters}
    for spec in specs:
        twin = spec.staging
        if twin and twin not in names and deps.latest_deployment(rt.store, twin) is None:
            raise FleetFileError(fleet_path, f"staging twin {twin!r} is unknown: no cluster of this fleet and no "
                                             "deployment in the store has that name", cluster=spec.name,
                                 field="staging")


def summarize(rt: Runtime, batch_id: str) -> dict:
    """The batch's outcome per cluster, written to the store once every deployment is terminal."""
    rows = deps.batch_deployments(rt.store, batch_id)
    clusters = []
    for d in rows:
        clusters.append({
            "cluster": d.cluster, "deployment": d.id, "phase": d.phase, "reason": d.reason,
            "switch_duration_ms": d.switch_duration_ms, "writes_blocked_ms": d.writes_blocked_ms,
            "green_cost_per_hour": ((d.facts or {}).get("cost") or {}).get("green_per_hour"),
        })
    phases = [Phase(d.phase) for d in rows]
    summary = {
        "batch": batch_id,
        "clusters": clusters,
        "total": len(rows),
        "switched": sum(p in SWITCHED for p in phases),
        "terminal": sum(p in TERMINAL for p in phases),
        "by_phase": {p.value: phases.count(p) for p in sorted(set(phases))},
    }
    if summary["terminal"] == summary["total"]:
        by_provider: dict[str, list] = {}
        for d in rows:
            by_provider.setdefault(d.provider, []).append(d)
        cost = {name: part for name, group in by_provider.items()
                if (part := provider_for(group[0]).batch_ended(rt, batch_id, group))}
        if cost:
            summary["cost"] = cost
            for c in clusters:
                part = cost.get(next(d.provider for d in rows if d.id == c["deployment"]), {})
                c["estimated_cost"] = part.get("estimate", {}).get("by_deployment", {}).get(c["deployment"])
                if "explorer" in part:
                    c["explorer_cost"] = part["explorer"]["by_deployment"].get(c["deployment"], 0.0)
        # A chain re-driven by the watchdog ends with this too: the batch is done only when every
        # deployment is (the chord's own call can come before a re-driven cluster ends).
        deps.finish_batch(rt.store, batch_id, summary)
    return summary


def resolve_batch_id(rt: Runtime, ref: str) -> str:
    b = deps.find_batch(rt.store, ref)
    if b is None:
        raise BadInput(f"no batch matches {ref!r}")
    return b.id
