"""A switchover whose worker vanished (blue left fenced) is found by the watchdog and finished by
a real worker through the resume path, with the rest of the cluster's chain."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import update

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.engine.batches import open_batch
from bgqueue.engine.watchdog import stalled
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from tests.fixtures.bgq import REPO


def test_a_stalled_switchover_is_resumed_and_completed(cluster_pair_factory, fleet_file, unique_name, runtime,
                                                       bgq_env, celery_workers, sampler_process):
    from tasks.maintenance import watchdog

    pair = cluster_pair_factory(unique_name("wd"))
    path = fleet_file([pair])
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(phase=Phase.READY))
    code = ("from bgqueue.engine import lifecycle; from bgqueue.adapters.runtime import get_runtime; "
            f"lifecycle.switch(get_runtime(), {dep_id!r})")
    crashed = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), timeout=60,
                             env=dict(bgq_env, BGQUEUE_FAILPOINTS="switchover.after_fence=exit"))
    assert crashed.returncode == 137
    assert stalled(runtime) == [] or dep_id not in {s.deployment_id for s in stalled(runtime)}  # not quiet yet
    with runtime.store.session() as s:  # quiet for longer than its bounded wait
        s.execute(update(Deployment).where(Deployment.id == dep_id)
                  .values(updated_at=utcnow() - timedelta(minutes=5)))
    assert dep_id in {s.deployment_id for s in stalled(runtime)}

    watchdog.apply_async(ignore_result=True)
    deadline = time.monotonic() + 60
    while deps.get_deployment(runtime.store, dep_id).phase != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.2)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == "COMPLETED", (dep.phase, dep.reason)
    assert runtime.routing.get(spec.name).port == spec.green.port
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        assert cur.fetchone() is not None  # blue replicates from green: rollback stays possible


def test_a_stored_spec_that_does_not_parse_never_stops_the_watchdog(runtime, unique_name):
    """One unreadable row (an older version's spec, a hand edit) must not blind the watchdog to
    every other deployment: it is judged by the plain bounds."""
    name = unique_name("badspec")
    _, ids = deps.create_batch(runtime.store, fleet_name="w", fleet_path="/w", fleet_text="",
                               clusters=[{"name": name, "provider": "mysql"}])
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == ids[name])
                  .values(phase=Phase.SYNCING, updated_at=utcnow() - timedelta(minutes=30)))
    try:
        found = {s.deployment_id: s for s in stalled(runtime)}
        assert ids[name] in found and found[ids[name]].bound_s == runtime.settings.stall_s
    finally:
        with runtime.store.session() as s:
            s.execute(update(Deployment).where(Deployment.id == ids[name]).values(phase=Phase.NO_GO))
