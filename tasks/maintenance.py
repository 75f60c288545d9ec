"""Periodic jobs run by Celery beat (one beat process: two would run every job twice)."""
from __future__ import annotations

import logging

from bgqueue.adapters.runtime import get_runtime
from bgqueue.engine import retention
from tasks.base import bgqueue_task

log = logging.getLogger("bgqueue.maintenance")


@bgqueue_task("bgqueue.maintenance.decommission_due", time_limit=300, ignore_result=True)
def decommission_due() -> list[str]:
    return retention.decommission_due(get_runtime())


@bgqueue_task("bgqueue.maintenance.watchdog", time_limit=60, ignore_result=True)
def watchdog() -> list[str]:
    """Resume procedures whose worker vanished (see bgqueue.engine.watchdog)."""
    from celery import chain

    from bgqueue.engine.watchdog import stalled
    from tasks.batch import summarize_batch
    from tasks.deployment import migrate_cdc, monitor, rollback, switch

    resumed = []
    for s in stalled(get_runtime()):
        log.warning("deployment=%s stalled in %s for %.0fs: resuming", s.deployment_id, s.phase, s.quiet_s)
        if s.phase == "SWITCHING":
            # The rest of the chain too: the batch's own chain for this cluster died with its worker.
            chain(switch.si(s.deployment_id), migrate_cdc.si(s.deployment_id), monitor.si(s.deployment_id),
                  summarize_batch.si(None, s.batch_id)).apply_async()
        else:
            rollback.apply_async((s.reason or "rollback", s.deployment_id))
        resumed.append(s.deployment_id)
    return resumed


@bgqueue_task("bgqueue.maintenance.republish_routes", time_limit=30, ignore_result=True)
def republish_routes() -> list[str]:
    """Write back every route copy that Redis lost or that differs from the store (a Redis that
    restarted empty leaves applications with no route until this runs: at most one beat period)."""
    rewritten = get_runtime().routing.republish()
    if rewritten:
        log.warning("routes republished from the store: %s", ", ".join(rewritten))
    return rewritten
