"""The per-cluster chain, whatever the provider: each step asks the deployment's provider.

    prepare → wait_for_sync → (validate: ``validation``) → switch → migrate_cdc → (monitor:
    ``monitor_window``); ``end`` is the provider-aware way to finish a deployment.

Steps claim the deployment in the phase they expect (``claims``), never sleep, and say whether
they must run again later (``Next(wait_s=…)``); the Celery layer re-enqueues them.
"""
from __future__ import annotations

from datetime import timedelta

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.deployments import Claim
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine import claims
from bgqueue.engine.pipelines import move_pipelines
from bgqueue.engine.providers import provider_of
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase


def prepare(rt: Runtime, deployment_id: str) -> Next:
    """PENDING → PREPARING → SYNCING (or NO_GO): the provider reaches and checks what it manages."""
    return provider_of(rt, deployment_id).prepare(rt, deployment_id)


def wait_for_sync(rt: Runtime, deployment_id: str) -> Next:
    """SYNCING → VALIDATING once green is in sync; NO_GO at the deadline."""
    return provider_of(rt, deployment_id).wait_for_sync(rt, deployment_id)


def switch(rt: Runtime, deployment_id: str) -> Next:
    """READY → SWITCHING → CDC_MIGRATING, or SWITCHOVER_FAILED / FAILED with the reason."""
    return provider_of(rt, deployment_id).switch(rt, deployment_id)


def end(rt: Runtime, claim: Claim, target: Phase, reason: str | None, **fields) -> None:
    """Finish (or side-exit) a deployment. A NO_GO first lets the provider remove what it built
    (an RDS green environment) BEFORE the phase says "over", so that whoever waits for NO_GO
    finds nothing left behind (``on_no_go`` never raises)."""
    if target == Phase.NO_GO:
        provider_of(rt, claim.deployment_id).on_no_go(rt, deps.get_deployment(rt.store, claim.deployment_id))
    claims.end(rt, claim, target, reason, **fields)


def migrate_cdc(rt: Runtime, deployment_id: str) -> Next:
    """CDC_MIGRATING → MONITORING: move the cluster's CDC pipelines to the new primary."""
    claim = claims.claim_in(rt, deployment_id, [Phase.CDC_MIGRATING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    spec = cluster_spec(dep.spec)
    nxt = move_pipelines(rt, claim, spec, "switchover")
    if nxt.wait_s:
        return nxt
    deps.transition(rt.store, claim, Phase.MONITORING,
                    phase_deadline=utcnow() + timedelta(seconds=spec.thresholds.monitor_window_s))
    return DONE
