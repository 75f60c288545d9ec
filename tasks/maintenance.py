"""Periodic jobs run by Celery beat (one beat process: two would run every job twice)."""
from __future__ import annotations

import logging

from bgqueue.adapters.runtime import get_runtime
from bgqueue.engine import retention
from bgqueue.engine.watchdog import Stalled, mark_redriven, stalled
from bgqueue.model.phases import Phase
from tasks.base import bgqueue_task

log = logging.getLogger("bgqueue.maintenance")


@bgqueue_task("bgqueue.maintenance.decommission_due", time_limit=300, ignore_result=True)
def decommission_due() -> list[str]:
    return retention.decommission_due(get_runtime())


@bgqueue_task("bgqueue.maintenance.watchdog", time_limit=60, ignore_result=True)
def watchdog() -> list[str]:
    """Re-drive every live deployment whose owner is gone (see bgqueue.engine.watchdog)."""
    rt = get_runtime()
    redriven = []
    for s in stalled(rt):
        log.warning("deployment=%s quiet in %s for %.0fs (bound %.0fs): re-driving", s.deployment_id, s.phase,
                    s.quiet_s, s.bound_s)
        redrive(s)
        mark_redriven(rt, s)
        redriven.append(s.deployment_id)
    return redriven


def redrive(s: Stalled) -> None:
    """Enqueue the stalled phase's step with the rest of the cluster's chain (the batch's own chain
    for this cluster died with its worker or its messages)."""
    from celery import chain

    from tasks.batch import summarize_batch
    from tasks.deployment import CHAIN, rollback

    if s.phase == Phase.ROLLING_BACK:
        rollback.apply_async((s.reason or "rollback", s.deployment_id))
        return
    first = FROM_PHASE[s.phase]
    links = [t.si(s.deployment_id).set(ignore_result=True) for t in CHAIN[first:]]
    chain(*links, summarize_batch.si(None, s.batch_id)).apply_async()


# Where the per-cluster chain (tasks.deployment.CHAIN: prepare, wait_for_sync, validate, switch,
# migrate_cdc, monitor) picks up for each live phase.
FROM_PHASE = {Phase.PENDING: 0, Phase.PREPARING: 0, Phase.SYNCING: 1, Phase.VALIDATING: 2, Phase.PILOTING: 2,
              Phase.READY: 3, Phase.SWITCHING: 3, Phase.CDC_MIGRATING: 4, Phase.MONITORING: 5}


@bgqueue_task("bgqueue.maintenance.republish_routes", time_limit=30, ignore_result=True)
def republish_routes() -> list[str]:
    """Write back every route copy that Redis lost or that differs from the store (a Redis that
    restarted empty leaves applications with no route until this runs: at most one beat period)."""
    rewritten = get_runtime().routing.republish()
    if rewritten:
        log.warning("routes republished from the store: %s", ", ".join(rewritten))
    return rewritten
