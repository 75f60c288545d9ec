"""A worker process that dies in the middle of the switchover leaves a cluster the next worker
can finish: it observes the servers first, then finishes forward or starts again from the fence.
The crash is real (the process exits at a failpoint); the writes go on throughout."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.client.workload import start_workload, verify
from bgqueue.engine import lifecycle, monitor_window, validation
from bgqueue.engine.batches import open_batch
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from tests.fixtures.bgq import REPO


def _drive_to_ready(runtime, dep_id: str) -> None:
    """The chain up to READY, in this process (no Celery): the switchover is what is under test."""
    for step in (lifecycle.prepare, lifecycle.wait_for_sync):
        for _ in range(100):
            nxt = step(runtime, dep_id)
            if not nxt.wait_s:
                break
            time.sleep(nxt.wait_s)
    for _ in range(100):
        names = validation.begin(runtime, dep_id)
        if not names:
            break
        decision = validation.conclude(runtime, dep_id, [validation.run_named_check(runtime, dep_id, n)
                                                          for n in names])
        if decision.verdict == "WAIT":
            time.sleep(decision.retry_in_s)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.READY, dep.reason


def _crash_in_switch(dep_id: str, env: dict, failpoint: str) -> int:
    code = ("from bgqueue.engine import lifecycle; from bgqueue.adapters.runtime import get_runtime; "
            f"lifecycle.switch(get_runtime(), {dep_id!r})")
    env = dict(env, BGQUEUE_FAILPOINTS=f"{failpoint}=exit")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=str(REPO), timeout=60).returncode


_AFTER_PROMOTE = ["observe", "refence", "new_coordinates", "flip_routing", "reverse_replication"]


@pytest.mark.parametrize("failpoint,first_resume_steps,flavour", [
    # Died with blue fenced, green not promoted: start again from the fence.
    ("switchover.after_fence", ["observe", "fence", "checkpoint", "wait_for_new", "fence_held", "promote",
                                "new_coordinates",
                                "flip_routing", "reverse_replication"], "mariadb"),
    # Died with green promoted, routing not flipped: finish forward, re-checking the fence first.
    ("switchover.after_promote", _AFTER_PROMOTE, "mariadb"),
    ("switchover.after_promote", _AFTER_PROMOTE, "mysql"),
])
def test_next_worker_finishes_a_switchover_after_a_crash(failpoint, first_resume_steps, cluster_pair_factory,
                                                         fleet_file, unique_name, stack, sandbox_passwords):
    """On each store (SQLite, PostgreSQL): the crashed worker and the next one share the stack's store."""
    runtime, bgq_env, redis_url = stack.runtime, stack.env, stack.redis_url
    pair = cluster_pair_factory(unique_name("crash"))
    path = fleet_file([pair])
    spec = load_fleet(path).clusters[0]
    load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                          rate_hz=150)
    try:
        opened = open_batch(runtime, str(path))
        dep_id = opened.deployments[spec.name]
        _drive_to_ready(runtime, dep_id)

        assert _crash_in_switch(dep_id, bgq_env, failpoint) == 137
        crashed = deps.get_deployment(runtime.store, dep_id)
        assert crashed.phase == Phase.SWITCHING
        with pair.blue.root() as c, c.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.read_only")
            assert cur.fetchone()[0] == 1  # the dead worker left blue fenced
        time.sleep(0.3)

        assert lifecycle.switch(runtime, dep_id) == lifecycle.DONE  # the next worker picks it up
        dep = deps.get_deployment(runtime.store, dep_id)
        assert dep.phase == Phase.CDC_MIGRATING, dep.reason
        assert dep.epoch > crashed.epoch
        steps = journal.steps(runtime.store, dep_id, "switchover")
        resumed = [s for s in steps if s.epoch == dep.epoch]
        assert [s.name for s in resumed] == first_resume_steps
        assert all(s.status == "done" for s in resumed)
        assert resumed[0].detail["new_promoted"] is (failpoint == "switchover.after_promote")
        route = runtime.routing.get(spec.name)
        assert (route.host, route.port) == (spec.green.host, spec.green.port)
        time.sleep(0.5)
    finally:
        load.stop()
    v = verify(spec, load.writer.acked_ids(), new=spec.green, old=spec.blue)
    assert v.acked > 100 and v.lost == 0 and v.old_caught_up, v
    lifecycle.migrate_cdc(runtime, dep_id)
    for _ in range(100):  # the monitoring window (0.5 s in tests) ticks until it completes
        nxt = monitor_window.monitor(runtime, dep_id)
        if not nxt.wait_s:
            break
        time.sleep(nxt.wait_s)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.COMPLETED
    assert runtime.locks.holder(spec.name) is None
