"""The per-cluster chain: prepare → wait_for_sync → validate (a chord, or one task for a round of light
checks) → switch → migrate_cdc → monitor,
and the rollback, which an operator or the monitoring window starts."""
from __future__ import annotations

from bgqueue.adapters.runtime import get_runtime
from bgqueue.engine import lifecycle, monitor_window
from bgqueue.engine import rollback as rollbacks
from tasks.base import bgqueue_task, deployment_task, guarded
from tasks.validation import validate

prepare = deployment_task("prepare", time_limit=60)(lifecycle.prepare)
wait_for_sync = deployment_task("wait_for_sync", time_limit=60)(lifecycle.wait_for_sync)
# The switchover is bounded by the catch-up bound (≤ 300 s) plus a few round trips.
switch = deployment_task("switch", time_limit=420)(lifecycle.switch)
migrate_cdc = deployment_task("migrate_cdc", time_limit=120)(lifecycle.migrate_cdc)
# A tick may include an automatic rollback (bounded like the switchover).
monitor = deployment_task("monitor", time_limit=420)(monitor_window.monitor)

CHAIN = (prepare, wait_for_sync, validate, switch, migrate_cdc, monitor)


@bgqueue_task("bgqueue.deployment.rollback", time_limit=420, bind=True)
@guarded("rollback")
def rollback(self, reason: str, deployment_id: str) -> str:
    """A manual rollback (`bgqueue rollback`); re-enqueues itself while CDC pipelines move back."""
    nxt = rollbacks.roll_back(get_runtime(), deployment_id, reason)
    if nxt.wait_s:
        raise self.retry(countdown=nxt.wait_s, kwargs={})
    return deployment_id
