"""Owner liveness: a deployment whose chain lost its messages is re-driven from the store, a
switchover whose worker died is taken over within seconds by its lease, and a worker paused past
its lease cannot change a server after another worker took the deployment over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pymysql
from sqlalchemy import update

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.client.workload import start_workload, verify
from bgqueue.engine import lifecycle
from bgqueue.engine.batches import open_batch
from bgqueue.engine.watchdog import stalled
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from tests.engine.mysql.test_switchover_resume import _drive_to_ready
from tests.fixtures.bgq import REPO

# Statements that change a server: none may come from a worker after it lost its deployment.
CHANGING = ("SET GLOBAL", "KILL", "STOP SLAVE", "STOP REPLICA", "RESET", "CHANGE MASTER", "CHANGE REPLICATION",
            "START SLAVE", "START REPLICA")


def _switch_in_subprocess(dep_id: str, env: dict, failpoint: str) -> subprocess.Popen:
    code = ("from bgqueue.engine import lifecycle; from bgqueue.adapters.runtime import get_runtime; "
            f"lifecycle.switch(get_runtime(), {dep_id!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(env, BGQUEUE_FAILPOINTS=failpoint))


def _wait_stopped(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].split()[0] == "T":
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not stop at its failpoint")


def _read_only(server) -> int:
    with server.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        return int(cur.fetchone()[0])


def test_a_monitoring_deployment_whose_messages_were_lost_is_redriven_and_completes(
        cluster_pair_factory, fleet_file, unique_name, runtime, celery_workers, sampler_process):
    from tasks.maintenance import watchdog

    pair = cluster_pair_factory(unique_name("lost"))
    path = fleet_file([pair], monitor_window_s=1)
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    _drive_to_ready(runtime, dep_id)
    lifecycle.switch(runtime, dep_id)
    lifecycle.migrate_cdc(runtime, dep_id)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.MONITORING
    # Its monitor task is gone (a worker parent killed with the message unacknowledged, a Redis that
    # came back empty): nothing works on it. Quiet for longer than the bound:
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id)
                  .values(updated_at=utcnow() - timedelta(minutes=5), heartbeat_at=utcnow() - timedelta(minutes=5)))
    assert dep_id in {s.deployment_id for s in stalled(runtime)}
    watchdog.apply_async(ignore_result=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and deps.get_deployment(runtime.store, dep_id).phase == Phase.MONITORING:
        time.sleep(0.2)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.COMPLETED, dep.reason
    notes = [s for s in journal.steps(runtime.store, dep_id, "watchdog") if s.name == "redrive"]
    assert notes and notes[0].detail["phase"] == "MONITORING"
    assert dep_id not in {s.deployment_id for s in stalled(runtime)}


def test_a_worker_killed_while_blue_is_fenced_is_taken_over_within_seconds(
        cluster_pair_factory, fleet_file, unique_name, runtime, bgq_env, celery_workers, sampler_process,
        redis_url, sandbox_passwords):
    """No backdating: the lease expires by itself; the watchdog runs as beat would (every 2 s)."""
    from tasks.maintenance import watchdog

    pair = cluster_pair_factory(unique_name("lease"))
    path = fleet_file([pair])
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                          rate_hz=100)
    try:
        _drive_to_ready(runtime, dep_id)
        worker = _switch_in_subprocess(dep_id, bgq_env, "switchover.after_fence=exit")
        assert worker.wait(60) == 137
        died = time.monotonic()
        assert _read_only(pair.blue) == 1  # the dead worker left blue fenced
        while time.monotonic() - died < 30:
            if deps.get_deployment(runtime.store, dep_id).phase != Phase.SWITCHING:
                break
            watchdog.apply_async(ignore_result=True)
            time.sleep(runtime.settings.watchdog_interval_s)
        route = runtime.routing.get(spec.name)
        taken_over_s = time.monotonic() - died
        assert (route.host, route.port) == (spec.green.host, spec.green.port), deps.get_deployment(
            runtime.store, dep_id).reason
        assert taken_over_s <= 15, taken_over_s
        time.sleep(0.5)
    finally:
        load.stop()
    v = verify(spec, load.writer.acked_ids(), new=spec.green, old=spec.blue)
    assert v.acked > 100 and v.lost == 0, v
    assert load.writer.max_gap_ms() <= 15_000, load.writer.max_gap_ms()


def test_a_paused_worker_changes_no_server_after_another_took_its_switchover_over(
        cluster_pair_factory, fleet_file, unique_name, runtime, bgq_env, redis_url, sandbox_passwords,
        sampler_process):
    pair = cluster_pair_factory(unique_name("zombie"))
    path = fleet_file([pair])
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    _drive_to_ready(runtime, dep_id)
    for server in (pair.blue, pair.green):
        with server.root() as c, c.cursor() as cur:
            cur.execute("SET GLOBAL log_output = 'TABLE'")
            cur.execute("SET GLOBAL general_log = ON")
    # Paused in the middle of promoting green (replication stopped, not yet reset): the step that, on
    # the landed code, a resumed worker finished on a green another worker had promoted meanwhile.
    zombie = _switch_in_subprocess(dep_id, bgq_env, "promote.after_stop_replica=stop")
    try:
        _wait_stopped(zombie.pid)
        assert _read_only(pair.blue) == 1
        lifecycle.switch(runtime, dep_id)  # another worker takes the deployment over (resume)
        dep = deps.get_deployment(runtime.store, dep_id)
        assert dep.phase == Phase.CDC_MIGRATING, dep.reason
        taken_over = utcnow()
        time.sleep(0.2)
        os.kill(zombie.pid, signal.SIGCONT)  # the paused worker wakes up and goes on with its step
        out = zombie.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if zombie.poll() is None:
            os.kill(zombie.pid, signal.SIGCONT)
            zombie.kill()
    changed = []
    for server in (pair.blue, pair.green):
        with server.root() as c, c.cursor() as cur:
            cur.execute("SET GLOBAL general_log = OFF")
            cur.execute("SELECT event_time, thread_id, CONVERT(argument USING utf8mb4) FROM mysql.general_log "
                        "WHERE command_type = 'Query' AND user_host LIKE %s", (f"{spec.admin.user}%",))
            for at, thread, statement in cur.fetchall():
                if at.replace(tzinfo=None) >= taken_over.replace(tzinfo=None) - timedelta(seconds=0) and \
                        statement.upper().lstrip().startswith(CHANGING):
                    changed.append((server.name, thread, statement))
            cur.execute("SET SESSION sql_log_bin = 0")  # a test's own clean-up must not be an errant GTID
            cur.execute("TRUNCATE mysql.general_log")
    # Nothing after the takeover: the new owner had finished, and the zombie's sessions were ended
    # and its reconnects refused (the procedure lock).
    assert changed == [], (changed, out)
    assert "lost the deployment" in out or "FencedOut" in out or "no longer current" in out, out
    assert _read_only(pair.blue) == 1 and _read_only(pair.green) == 0
    with pair.blue.root() as c, c.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW SLAVE STATUS")
        status = cur.fetchone()
        assert status and status["Master_Port"] == pair.green.port and status["Slave_SQL_Running"] == "Yes", \
            status.get("Last_SQL_Error")
    route = runtime.routing.get(spec.name)
    assert (route.host, route.port) == (spec.green.host, spec.green.port)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.CDC_MIGRATING
