"""After the retention period the old primary is decommissioned: reverse replication stops
and the server is reported free. Never earlier, and never while rollback is possible, unless
forced with an explicit confirmation."""
from __future__ import annotations

from sqlalchemy import select, update

from bgqueue.engine import lifecycle
from bgqueue.model.errors import BadInput, BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import Phase
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.journal import record_step
from bgqueue.adapters.store.models import Deployment, utcnow


def due(rt: Runtime) -> list[str]:
    """COMPLETED deployments whose retention ended and whose old primary is not yet decommissioned."""
    now = utcnow()
    with rt.store.session() as s:
        rows = s.execute(select(Deployment.id, Deployment.retention_until)
                         .where(Deployment.phase == Phase.COMPLETED, Deployment.decommissioned_at.is_(None))).all()
    return [r.id for r in rows if r.retention_until is not None and deps.as_aware(r.retention_until) <= now]


def decommission(rt: Runtime, deployment_id: str, *, force: bool = False) -> str:
    """Stop reverse replication on the old primary and record it. Returns what happened.

    Refused (BadInput) before the window and retention ended unless ``force``.
    """
    dep = deps.get_deployment(rt.store, deployment_id)
    if dep.decommissioned_at is not None:
        return f"already decommissioned at {deps.as_aware(dep.decommissioned_at).isoformat()}"
    if dep.phase != Phase.COMPLETED:
        raise BadInput(f"deployment {dep.id} of {dep.cluster} is {dep.phase}: only a COMPLETED deployment's old "
                       "primary can be decommissioned")
    until = deps.as_aware(dep.retention_until)
    if not force and (until is None or utcnow() < until):
        raise BadInput(f"{dep.cluster}: rollback stays possible until {until.isoformat() if until else '?'}; "
                       "decommissioning now needs --force --yes")
    if dep.provider == "rds":
        from bgqueue.engine.rds import steps

        return steps.decommission(rt, dep)
    spec = ClusterSpec.model_validate(dep.spec)
    blue, _green = lifecycle.servers(spec)
    try:
        blue.stop_replication()
    except BgqueueError as e:
        raise BadInput(f"{dep.cluster}: cannot reach blue {spec.blue} to stop reverse replication: {e}") from None
    finally:
        blue.close()
    now = utcnow()
    with rt.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep.id).values(decommissioned_at=now, updated_at=now))
    claim = deps.Claim(dep.id, dep.epoch, Phase.COMPLETED)
    record_step(rt.store, claim, "retention", "decommissioned", "done",
                {"blue": str(spec.blue), "forced": force, "note": "reverse replication stopped; blue is free"})
    return f"blue {spec.blue} decommissioned: reverse replication stopped, the server is free"


def decommission_due(rt: Runtime) -> list[str]:
    """The periodic job (Celery beat): decommission every deployment whose retention ended."""
    done = []
    for dep_id in due(rt):
        try:
            decommission(rt, dep_id)
            done.append(dep_id)
        except BgqueueError:
            continue  # unreachable now: the next run tries again, and the nightly report shows it
    return done
