"""Rollback on real pairs: manual (one command), automatic on a breach in the monitoring window,
refused when it would not be safe, and recoverable after a worker dies in the middle of it."""
from __future__ import annotations

import subprocess
import sys
import time

import pymysql
import pytest
import yaml
from sqlalchemy import update

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store import validation as records
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.app.progress import wait_for_batch
from bgqueue.client.workload import LEDGER_PIPELINE, cdc_audit, start_workload, verify, wait_cdc_streaming
from bgqueue.engine import rollback
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from tests.fixtures.bgq import REPO, bgqueue_cli
from tests.fixtures.stacks import flavours_and_stores

_CONSUMERS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_consumers():
    yield
    while _CONSUMERS:
        p = _CONSUMERS.pop()
        p.terminate()
        p.wait(20)


ROLLBACK_STEPS = ["begin", "fence", "checkpoint", "wait_for_new", "fence_held", "promote", "new_coordinates", "flip_routing",
                  "reverse_replication", "rolled_back"]


def _wait_phase(runtime, dep_id: str, phases: set[str], timeout: float = 60) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = deps.get_deployment(runtime.store, dep_id)
        if d.phase in phases:
            return d
        time.sleep(0.1)
    d = deps.get_deployment(runtime.store, dep_id)
    raise AssertionError(f"deployment still {d.phase} ({d.reason}); wanted {phases}")


def _switched(pair, fleet_file, runtime, redis_url, sandbox_passwords, cdc_env=None, **thresholds):
    """A cluster switched to green, in its monitoring window, under continuous writes (and, with
    ``cdc_env``, a built-in CDC consumer process streaming the writes)."""
    from tasks.batch import enqueue_fleet

    path = fleet_file([pair], **thresholds)
    if cdc_env is not None:
        doc = yaml.safe_load(path.read_text())
        doc["clusters"][0]["pipelines"] = [dict(LEDGER_PIPELINE)]
        path.write_text(yaml.safe_dump(doc))
    spec = load_fleet(path).clusters[0]
    if cdc_env is not None:
        consumer = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", "cdc", "run", "--fleet", str(path)],
                                    env=cdc_env, cwd=str(REPO))
        _CONSUMERS.append(consumer)
        assert wait_cdc_streaming(runtime.redis, spec), "the CDC consumer did not start"
    load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                          rate_hz=150)
    opened = enqueue_fleet(str(path))
    dep_id = opened.deployments[spec.name]
    _wait_phase(runtime, dep_id, {"MONITORING", "COMPLETED", "NO_GO", "FAILED", "SWITCHOVER_FAILED"})
    return spec, load, opened, dep_id


def _assert_no_lost_writes_and_forward_replication(spec, load):
    v = verify(spec, load.writer.acked_ids(), new=spec.blue, old=spec.green)  # blue is the primary again
    assert v.acked > 100 and v.lost == 0 and v.old_caught_up, v


@flavours_and_stores
def test_manual_rollback_later_in_the_window(cluster_pair_factory, fleet_file, unique_name, stack, sandbox_passwords):
    """On each store (SQLite, PostgreSQL)."""
    runtime, bgq_env, redis_url = stack.runtime, stack.env, stack.redis_url
    stack.workers()
    pair = cluster_pair_factory(unique_name("mrb"))
    # The manual path only: a loaded machine's p99 must not roll it back automatically first.
    spec, load, opened, dep_id = _switched(pair, fleet_file, runtime, redis_url, sandbox_passwords,
                                           monitor_window_s=1800, rollback_p99_ratio=1000,
                                           rollback_p99_floor_ms=60_000)
    try:
        assert deps.get_deployment(runtime.store, dep_id).phase == Phase.MONITORING
        time.sleep(1.5)  # green takes writes; reverse replication keeps blue current
        r = bgqueue_cli("rollback", spec.name, "--yes", env=bgq_env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{spec.name}: ROLLED_BACK" in r.stdout
        time.sleep(0.5)
    finally:
        load.stop()
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.ROLLED_BACK and dep.reason.startswith("manual rollback by")
    route = runtime.routing.get(spec.name)
    assert (route.host, route.port) == (spec.blue.host, spec.blue.port) and route.version == 3
    steps = journal.steps(runtime.store, dep_id, "rollback")
    assert [s.name for s in steps] == ROLLBACK_STEPS and {s.status for s in steps} == {"done"}
    assert journal.latest_checkpoint(runtime.store, dep_id, "rollback").new_binlog_file
    _assert_no_lost_writes_and_forward_replication(spec, load)
    assert runtime.locks.holder(spec.name) is None
    wait_for_batch(runtime, opened.batch_id, timeout=10)  # the chain ended: the monitor tick stood down


def test_rollback_refused_when_reverse_replication_is_stopped(cluster_pair_factory, fleet_file, unique_name, runtime,
                                                              bgq_env, celery_workers, sampler_process, redis_url,
                                                              sandbox_passwords):
    pair = cluster_pair_factory(unique_name("rbstop"))
    spec, load, _opened, dep_id = _switched(pair, fleet_file, runtime, redis_url, sandbox_passwords,
                                            monitor_window_s=1800)
    try:
        with pair.blue.root() as c, c.cursor() as cur:
            cur.execute("STOP SLAVE")
        r = bgqueue_cli("rollback", spec.name, "--yes", env=bgq_env)
        assert r.returncode == 1
        assert f"rollback of '{spec.name}' refused: reverse replication is broken" in r.stderr
        assert deps.get_deployment(runtime.store, dep_id).phase == Phase.MONITORING
        assert runtime.routing.get(spec.name).port == spec.green.port
        with pair.blue.root() as c, c.cursor() as cur:
            cur.execute("START SLAVE")
        # retention over (time moved, not waited for): refused too
        with runtime.store.session() as s:
            s.execute(update(Deployment).where(Deployment.id == dep_id)
                      .values(phase=Phase.COMPLETED, retention_until=utcnow()))
        r = bgqueue_cli("rollback", spec.name, "--yes", env=bgq_env)
        assert r.returncode == 1 and "the retention period ended" in r.stderr
    finally:
        load.stop()


def test_automatic_rollback_when_green_fails_for_the_application(cluster_pair_factory, fleet_file, unique_name,
                                                                 runtime, bgq_env, celery_workers, sampler_process,
                                                                 redis_url, sandbox_passwords):
    pair = cluster_pair_factory(unique_name("arb"))
    spec, load, opened, dep_id = _switched(pair, fleet_file, runtime, redis_url, sandbox_passwords, cdc_env=bgq_env,
                                           monitor_window_s=60, monitor_tick_s=0.25, monitor_eval_s=2,
                                           rollback_error_rate=5)
    try:
        assert deps.get_deployment(runtime.store, dep_id).phase == Phase.MONITORING
        with pair.green.root() as c, c.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")  # the fault is green's alone
            cur.execute("REVOKE INSERT ON appdb.* FROM 'app'@'127.0.0.1'")
            # Database privileges reach a session at its next connect: end the application's sessions.
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            for (pid,) in cur.fetchall():
                cur.execute(f"KILL CONNECTION {int(pid)}")
        dep = _wait_phase(runtime, dep_id, {"ROLLED_BACK", "FAILED", "COMPLETED"}, timeout=40)
        time.sleep(0.5)
    finally:
        load.stop()
    assert dep.phase == Phase.ROLLED_BACK, dep.reason
    assert dep.reason.startswith("automatic rollback: error rate") and "on the new primary is above 5/s" in dep.reason
    monitor = [d for d in records.decisions(runtime.store, dep_id, "monitor")]
    assert monitor[-1].verdict == "ROLLBACK"
    assert runtime.routing.get(spec.name).port == spec.blue.port
    assert load.writer.failures["error"] > 0  # the application did see the fault
    _assert_no_lost_writes_and_forward_replication(spec, load)
    wait_for_batch(runtime, opened.batch_id, timeout=10)
    # The built-in CDC consumer crossed the switchover AND the rollback: every acknowledged write once.
    audit = cdc_audit(runtime.redis, spec, load.writer.acked_ids(), primary=spec.blue)
    assert audit.lost == 0 and audit.duplicates == 0, audit.as_dict()
    cdc_steps = [s.name for s in journal.steps(runtime.store, dep_id, "cdc")]
    assert cdc_steps.count("resume") == 2, cdc_steps  # moved to green, then back to blue


def test_worker_killed_during_the_rollback_fence_is_recovered(cluster_pair_factory, fleet_file, unique_name, stack,
                                                              sandbox_passwords):
    """On each store (SQLite, PostgreSQL)."""
    runtime, bgq_env, redis_url = stack.runtime, stack.env, stack.redis_url
    stack.workers()
    pair = cluster_pair_factory(unique_name("rbcrash"))
    spec, load, _opened, dep_id = _switched(pair, fleet_file, runtime, redis_url, sandbox_passwords,
                                            monitor_window_s=1800)
    try:
        code = ("from bgqueue.engine import rollback; from bgqueue.adapters.runtime import get_runtime; "
                f"rollback.roll_back(get_runtime(), {dep_id!r}, 'crash test')")
        env = dict(bgq_env, BGQUEUE_FAILPOINTS="rollback.after_fence=exit")
        assert subprocess.run([sys.executable, "-c", code], env=env, cwd=str(REPO), timeout=60).returncode == 137
        assert deps.get_deployment(runtime.store, dep_id).phase == Phase.ROLLING_BACK
        with pair.green.root() as c, c.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.read_only")
            assert cur.fetchone()[0] == 1  # the dead worker left green fenced
        rollback.roll_back(runtime, dep_id, "crash test")  # the next worker observes and finishes
        time.sleep(0.5)
    finally:
        load.stop()
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.ROLLED_BACK, dep.reason
    names = [s.name for s in journal.steps(runtime.store, dep_id, "rollback")]
    assert names[:3] == ["begin", "fence", "observe"] and names[-1] == "rolled_back"
    _assert_no_lost_writes_and_forward_replication(spec, load)


def test_app_user_cannot_write_on_the_fenced_side_after_rollback(cluster_pair_factory, unique_name, sandbox_passwords):
    """Sanity of the harness: the application user is unprivileged (read_only stops it)."""
    pair = cluster_pair_factory(unique_name("ro"))
    app = pymysql.connect(host=pair.green.host, port=pair.green.port, user="app", password=sandbox_passwords.app,
                          database="appdb", ssl_disabled=True, autocommit=True)
    try:
        with app.cursor() as cur:
            try:
                cur.execute("CREATE TABLE x (id INT)")
                raise AssertionError("app could create a table")
            except pymysql.err.MySQLError as e:
                assert e.args[0] in (1142, 1290)
    finally:
        app.close()


def test_a_rollback_that_cannot_catch_up_is_undone_and_the_window_goes_on(
        cluster_pair_factory, fleet_file, unique_name, runtime, bgq_env, celery_workers, sampler_process, redis_url,
        sandbox_passwords):
    """Blue's reverse replication is blocked by a lock: the rollback's bounded wait times out, the
    fence on green is lifted, and the deployment returns to MONITORING (not FAILED)."""
    pair = cluster_pair_factory(unique_name("rbabort"))
    spec, load, _opened, dep_id = _switched(pair, fleet_file, runtime, redis_url, sandbox_passwords,
                                            monitor_window_s=1800, catchup_timeout_s=1, rollback_max_lag_s=3600)
    blocker = pair.blue.root()
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES appdb.bgq_writes WRITE")  # blue's SQL thread waits on it
        time.sleep(0.5)
        r = bgqueue_cli("rollback", spec.name, "--yes", env=bgq_env)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{spec.name}: MONITORING — rollback aborted (green is still the primary)" in r.stdout
    finally:
        with blocker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        blocker.close()
        time.sleep(0.5)
        load.stop()
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.MONITORING and "did not reach" in dep.reason
    assert runtime.routing.get(spec.name).port == spec.green.port
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0  # green writable again
    v = verify(spec, load.writer.acked_ids(), new=spec.green, old=spec.blue)
    assert v.lost == 0 and v.old_caught_up, v
