"""After the retention period the old primary is decommissioned: reverse replication stops
and the server is reported free. Never earlier, and never while rollback is possible, unless
forced with an explicit confirmation."""
from __future__ import annotations

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine import claims
from bgqueue.engine.providers import provider_for
from bgqueue.model.errors import BadInput, BgqueueError
from bgqueue.model.phases import Phase


def due(rt: Runtime) -> list[str]:
    """COMPLETED deployments whose retention ended and whose old primary is not yet decommissioned."""
    return deps.retention_due(rt.store, utcnow())


def decommission(rt: Runtime, deployment_id: str, *, force: bool = False) -> str:
    """Free the old primary (the provider's way) and record it with a fenced update. Returns
    what happened. Refused (BadInput) before the window and retention ended unless ``force``.
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
    claim = claims.claim_in(rt, deployment_id, [Phase.COMPLETED])
    if claim is None:
        raise BadInput(f"deployment {dep.id} of {dep.cluster} left COMPLETED meanwhile: nothing was decommissioned")
    message, detail = provider_for(dep).decommission(rt, dep, force=force)
    deps.update_fenced(rt.store, claim, decommissioned_at=utcnow())
    Journal(rt.store, claim, "retention").note("decommissioned", **detail)
    return message


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
