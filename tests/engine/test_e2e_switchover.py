"""End to end: real mariadbd pairs, a real redis-server, real Celery worker processes.

A 3-cluster batch switches under continuous writes by unprivileged application users, and
every acknowledged write must be on the new primary and, through reverse replication, on
the old one.
"""
from __future__ import annotations

import time

import pymysql
import pytest

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.app.progress import wait_for_batch
from bgqueue.client.workload import start_workload, verify
from bgqueue.model.fleet import ClusterSpec, load_fleet
from bgqueue.model.phases import Phase
from tests.fixtures.stacks import flavours_and_stores

SWITCH_STEPS = ["fence", "checkpoint", "wait_for_new", "fence_held", "promote", "new_coordinates", "flip_routing",
                "reverse_replication"]


def _workloads(specs: list[ClusterSpec], runtime, redis_url, sandbox_passwords, rate=150.0):
    return [start_workload(s, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                           rate_hz=rate) for s in specs]


@flavours_and_stores
def test_three_cluster_batch_switches_with_zero_lost_writes(cluster_pair_factory, fleet_file, unique_name, stack,
                                                            sandbox_passwords):
    """On each store (SQLite, PostgreSQL): the stack's workers, sampler and store."""
    from tasks.batch import enqueue_fleet

    runtime, redis_url = stack.runtime, stack.redis_url
    stack.workers()

    pairs = [cluster_pair_factory(unique_name("e2e")) for _ in range(3)]
    path = fleet_file(pairs)
    specs = load_fleet(path).clusters
    loads = _workloads(specs, runtime, redis_url, sandbox_passwords)
    try:
        time.sleep(0.3)
        opened = enqueue_fleet(str(path))
        rows = wait_for_batch(runtime, opened.batch_id, timeout=90)
        time.sleep(0.3)  # writes continue on the new primary
    finally:
        for w in loads:
            w.stop()

    assert {d.cluster: d.phase for d in rows} == {s.name: Phase.COMPLETED for s in specs}, \
        [(d.cluster, d.phase, d.reason) for d in rows]
    for spec, load, dep in zip(specs, loads, sorted(rows, key=lambda d: d.cluster), strict=False):
        acked = load.writer.acked_ids()
        assert len(acked) > 50, load.writer.stats()
        v = verify(spec, acked, new=spec.green, old=spec.blue)
        assert v.lost_on_new == [] and v.old_caught_up and v.lost_on_old == [], v
        assert load.client.route.port == spec.green.port  # the client followed the flip
        route = runtime.routing.get(spec.name)
        assert (route.host, route.port) == (spec.green.host, spec.green.port)
        steps = journal.steps(runtime.store, dep.id, "switchover")
        assert [s.name for s in steps] == SWITCH_STEPS and {s.status for s in steps} == {"done"}
        cp = journal.latest_checkpoint(runtime.store, dep.id, "switchover")
        assert cp.old_gtid and cp.old_binlog_file and cp.old_binlog_pos and cp.new_binlog_file and cp.new_gtid
        assert dep.writes_blocked_ms is not None and dep.writes_blocked_ms < 5000
    # The chord body wrote the batch summary.
    deadline = time.monotonic() + 10
    while deps.get_batch(runtime.store, opened.batch_id).status != "DONE" and time.monotonic() < deadline:
        time.sleep(0.1)
    summary = deps.get_batch(runtime.store, opened.batch_id).summary
    assert summary["switched"] == 3 and summary["total"] == 3

    # A write made on green after the switch reaches blue through reverse replication.
    spec = specs[0]
    app = pymysql.connect(host=spec.green.host, port=spec.green.port, user="app", password=sandbox_passwords.app,
                          database="appdb", autocommit=True, ssl_disabled=True)
    with app.cursor() as cur:
        cur.execute("INSERT INTO bgq_writes (id, writer, seq, payload) VALUES (1, 'after', 0, 'after-switch')")
    app.close()
    assert verify(spec, [1], new=spec.green, old=spec.blue).lost_on_old == []
    # And blue refuses the application: it is a read-only replica now.
    app = pymysql.connect(host=spec.blue.host, port=spec.blue.port, user="app", password=sandbox_passwords.app,
                          database="appdb", autocommit=True, ssl_disabled=True)
    with pytest.raises(pymysql.err.MySQLError) as e:
        with app.cursor() as cur:
            cur.execute("INSERT INTO bgq_writes (id, writer, seq) VALUES (2, 'x', 0)")
    assert e.value.args[0] == 1290
    app.close()


def test_green_that_cannot_catch_up_fails_the_switchover_and_blue_stays_writable(
        cluster_pair_factory, fleet_file, unique_name, stack, sandbox_passwords):
    """Green's SQL thread is blocked by a table lock: the gate passes (lag allowed), the bounded wait
    at the switchover times out, the fence is lifted and blue takes writes again."""
    from tasks.batch import enqueue_fleet

    runtime, redis_url = stack.runtime, stack.redis_url
    stack.workers()
    pair = cluster_pair_factory(unique_name("slow"))
    path = fleet_file([pair], max_lag_s=3600, catchup_timeout_s=1)
    spec = load_fleet(path).clusters[0]
    [load] = _workloads([spec], runtime, redis_url, sandbox_passwords)
    blocker = pair.green.root()
    try:
        time.sleep(0.3)
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES appdb.bgq_writes WRITE")
        time.sleep(0.3)
        opened = enqueue_fleet(str(path))
        [dep] = wait_for_batch(runtime, opened.batch_id, timeout=60)
        time.sleep(0.3)
    finally:
        with blocker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        blocker.close()
        load.stop()

    assert dep.phase == Phase.SWITCHOVER_FAILED, (dep.phase, dep.reason)
    assert "did not reach" in dep.reason and "within 1s" in dep.reason
    steps = [(s.name, s.status) for s in journal.steps(runtime.store, dep.id, "switchover")]
    assert steps == [("fence", "done"), ("checkpoint", "done"), ("wait_for_new", "failed"), ("lift_fence", "done")]
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0
    route = runtime.routing.get(spec.name)
    assert route.port == spec.blue.port and route.version == 1
    acked = load.writer.acked_ids()
    assert verify(spec, acked, new=spec.blue, old=spec.green).lost_on_new == []
    # The writer went on writing on blue after the fence was lifted.
    assert load.writer.ledger()[-1][1] > load.writer.started_at + 1.0
    assert runtime.locks.holder(spec.name) is None  # the cluster is released
