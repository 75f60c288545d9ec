"""Periodic jobs run by Celery beat (one beat process: two would run every job twice)."""
from __future__ import annotations

from bgqueue import retention
from bgqueue.runtime import get_runtime
from tasks.base import bgqueue_task


@bgqueue_task("bgqueue.maintenance.decommission_due", time_limit=300, ignore_result=True)
def decommission_due() -> list[str]:
    return retention.decommission_due(get_runtime())
