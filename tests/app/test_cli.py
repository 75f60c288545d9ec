"""The operator commands, run as real processes: exit codes, error messages, and "nothing changed"."""
from __future__ import annotations

import json
import time

from bgqueue.adapters.store import deployments as deps
from bgqueue.model.fleet import load_fleet
from bgqueue.sandbox import free_port
from tests.fixtures.bgq import bgqueue_cli


def _server_state(pair) -> dict:
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos")
        blue = cur.fetchone()
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        green_ro = cur.fetchone()[0]
        cur.execute("SHOW SLAVE STATUS")
        cols = [d[0] for d in cur.description]
        st = dict(zip(cols, cur.fetchone(), strict=False))
    return {"blue_ro": blue[0], "blue_gtid": blue[1], "green_ro": green_ro, "green_io": st["Slave_IO_Running"],
            "green_sql": st["Slave_SQL_Running"], "green_source_port": st["Master_Port"]}


def test_fleet_check_reports_ok(cluster_pair_factory, fleet_file, unique_name, bgq_env):
    pair = cluster_pair_factory(unique_name("chk"))
    r = bgqueue_cli("fleet", "check", str(fleet_file([pair])), env=bgq_env)
    assert r.returncode == 0, r.stderr
    assert f"{pair.name}: ok" in r.stdout


def test_unknown_key_exit_2_names_file_line_cluster_field(tmp_path, bgq_env, runtime):
    p = tmp_path / "bad.yaml"
    p.write_text("clusters:\n  - name: x1\n    provider: mysql\n    blu: {host: h}\n")
    before = len(deps.recent_batches(runtime.store, 1000))
    r = bgqueue_cli("fleet", "run", str(p), env=bgq_env)
    assert r.returncode == 2
    assert f"{p}:4: cluster 'x1': field blu: unknown key" in r.stderr
    assert len(deps.recent_batches(runtime.store, 1000)) == before


def test_missing_credential_variable(cluster_pair_factory, fleet_file, unique_name, bgq_env):
    pair = cluster_pair_factory(unique_name("cred"))
    env = {k: v for k, v in bgq_env.items() if k != "BGQ_SANDBOX_REPL_PASSWORD"}
    r = bgqueue_cli("fleet", "run", str(fleet_file([pair])), env=env)
    assert r.returncode == 2
    assert f"cluster '{pair.name}': field replication.password_env: environment variable " \
           "BGQ_SANDBOX_REPL_PASSWORD is not set" in r.stderr


def test_unreachable_server_and_wrong_password_change_nothing(cluster_pair_factory, fleet_file, unique_name,
                                                              bgq_env, runtime, tmp_path):
    pair = cluster_pair_factory(unique_name("unr"))
    before = _server_state(pair)
    path = fleet_file([pair])
    text = path.read_text()
    dead = free_port()
    path.write_text(text.replace(f"port: {pair.green.port}", f"port: {dead}"))
    r = bgqueue_cli("fleet", "run", str(path), env=bgq_env)
    assert r.returncode == 2
    assert f"cluster '{pair.name}': field green: green 127.0.0.1:{dead}: cannot connect" in r.stderr

    path.write_text(text)
    env = dict(bgq_env, BGQ_SANDBOX_ADMIN_PASSWORD="wrong")
    r = bgqueue_cli("fleet", "run", str(path), env=env)
    assert r.returncode == 2
    assert f"field blue: blue 127.0.0.1:{pair.blue.port}: access denied for user 'bgq_admin' " \
           "(password from BGQ_SANDBOX_ADMIN_PASSWORD)" in r.stderr
    assert "wrong" not in r.stderr
    assert _server_state(pair) == before
    assert runtime.routing.get(pair.name) is None and runtime.locks.holder(pair.name) is None
    assert deps.latest_deployment(runtime.store, pair.name) is None


def test_green_not_replicating_is_refused_before_anything_is_enqueued(cluster_pair_factory, fleet_file, unique_name,
                                                                      bgq_env, runtime):
    pair = cluster_pair_factory(unique_name("nosync"))
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("STOP SLAVE")
    before = _server_state(pair)
    r = bgqueue_cli("fleet", "run", str(fleet_file([pair])), "--wait", env=bgq_env)
    assert r.returncode == 2
    assert f"cluster '{pair.name}': field green: green: replication IO thread is not running" in r.stderr
    assert _server_state(pair) == before
    assert deps.latest_deployment(runtime.store, pair.name) is None
    assert runtime.locks.holder(pair.name) is None


def test_run_wait_json_status_and_the_cluster_lock(cluster_pair_factory, fleet_file, unique_name, bgq_env, runtime,
                                                   celery_workers, sampler_process):
    """A first batch waits for green to get in sync (its SQL thread is blocked by a lock); a second
    batch naming the same cluster is refused; the first is not disturbed and completes."""
    pair = cluster_pair_factory(unique_name("lock"))
    path = fleet_file([pair], max_lag_s=1, sync_timeout_s=60)
    spec = load_fleet(path).clusters[0]
    blocker = pair.green.root()
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES mysql.user READ")  # keeps green from applying the next DDL
    admin = pair.blue.root()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE appdb.lock_probe (id INT PRIMARY KEY)")
        cur.execute("CREATE USER 'probe'@'127.0.0.1' IDENTIFIED BY 'x'")  # blocked on green by the lock
    time.sleep(1.5)  # lag builds up on green
    r1 = bgqueue_cli("fleet", "run", str(path), "--json", env=bgq_env)
    assert r1.returncode == 0, r1.stderr
    first = json.loads(r1.stdout)["batch"]
    deadline = time.monotonic() + 20
    while deps.latest_deployment(runtime.store, spec.name).phase != "SYNCING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert deps.latest_deployment(runtime.store, spec.name).phase == "SYNCING"

    r2 = bgqueue_cli("fleet", "run", str(path), env=bgq_env)
    assert r2.returncode == 1
    assert f"cluster '{spec.name}' is in flight" in r2.stderr and first in r2.stderr
    assert runtime.locks.holder(spec.name) == first

    with blocker.cursor() as cur:
        cur.execute("UNLOCK TABLES")
    blocker.close()
    admin.close()
    r3 = bgqueue_cli("status", first, "--json", env=bgq_env)
    assert json.loads(r3.stdout)["batch"] == first
    deadline = time.monotonic() + 60
    while deps.latest_deployment(runtime.store, spec.name).phase not in ("COMPLETED", "NO_GO", "FAILED") \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    dep = deps.latest_deployment(runtime.store, spec.name)
    assert dep.batch_id == first and dep.phase == "COMPLETED", dep.reason
    assert runtime.locks.holder(spec.name) is None

    # A second run the other way round, through --wait --json, switches back.
    back = path.parent / "back.yaml"
    back.write_text(path.read_text().replace(f"port: {pair.blue.port}", "port: BLUE")
                    .replace(f"port: {pair.green.port}", f"port: {pair.blue.port}")
                    .replace("port: BLUE", f"port: {pair.green.port}"))
    r4 = bgqueue_cli("fleet", "run", str(back), "--wait", "--json", env=bgq_env)
    assert r4.returncode == 0, r4.stderr
    data = json.loads(r4.stdout)
    assert data["ok"] and data["clusters"][0]["phase"] == "COMPLETED"
    r5 = bgqueue_cli("status", spec.name, env=bgq_env)
    assert r5.returncode == 0 and "flip_routing" in r5.stdout and f"127.0.0.1:{pair.blue.port}" in r5.stdout


def test_status_of_unknown_reference_is_bad_input(bgq_env, runtime):
    r = bgqueue_cli("status", "no-such-thing", env=bgq_env)
    assert r.returncode == 2 and "'no-such-thing' is neither a batch id nor a cluster" in r.stderr
