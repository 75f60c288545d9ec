"""Nightly validations on Celery beat: a thin fan-out task, one expiring task per cluster, a chord
body that closes the run. Only one beat process may run: two would start every run twice."""
from __future__ import annotations

from celery import chord

from bgqueue.adapters.runtime import get_runtime
from bgqueue.engine import nightly
from tasks.base import bgqueue_task

# A child still queued this long after the fan-out is stale: the next night's run replaces it.
CHILD_EXPIRES_S = 6 * 3600


@bgqueue_task("bgqueue.nightly.check_cluster", time_limit=1800)
def check_cluster(run_id: str, fleet_path: str, cluster: str) -> int:
    return nightly.check_target(get_runtime(), run_id, fleet_path, cluster)


@bgqueue_task("bgqueue.nightly.finish", time_limit=300, ignore_result=True)
def finish(_results, run_id: str, clusters: int) -> dict:
    rt = get_runtime()
    nightly.fleet_wide(rt, run_id)
    return nightly.finish_run(rt, run_id, clusters)


@bgqueue_task("bgqueue.nightly.fan_out", time_limit=120, ignore_result=True)
def fan_out() -> str:
    rt = get_runtime()
    run_id = nightly.start_run(rt, "beat")
    targets = nightly.targets(rt)
    children = [check_cluster.si(run_id, t.fleet_path, t.cluster).set(expires=CHILD_EXPIRES_S) for t in targets]
    if children:
        chord(children)(finish.s(run_id, len(targets)))
    else:
        finish.delay(None, run_id, 0)
    return run_id
