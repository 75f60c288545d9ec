"""The operator commands, run as real processes: exit codes, error messages, and "nothing changed"."""
from __future__ import annotations

import json
import time

import yaml

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


def test_unreachable_server_is_no_go_at_once_and_a_wrong_password_is_bad_input(
        cluster_pair_factory, fleet_file, unique_name, bgq_env, runtime, tmp_path):
    pair = cluster_pair_factory(unique_name("unr"))
    before = _server_state(pair)
    path = fleet_file([pair])
    text = path.read_text()
    dead = free_port()
    path.write_text(text.replace(f"port: {pair.green.port}", f"port: {dead}"))
    # --strict: all or nothing, as bad input (exit 2, nothing recorded)
    r = bgqueue_cli("fleet", "run", str(path), "--strict", env=bgq_env)
    assert r.returncode == 2
    assert f"cluster '{pair.name}': field green: green 127.0.0.1:{dead}: cannot connect" in r.stderr
    assert deps.latest_deployment(runtime.store, pair.name) is None
    # default: the server's state makes this cluster NO_GO at once (recorded, named), exit 1
    r = bgqueue_cli("fleet", "run", str(path), "--json", env=bgq_env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 1 and list(doc["no_go"]) == [pair.name]
    assert f"green: green 127.0.0.1:{dead}: cannot connect" in doc["no_go"][pair.name]
    dep = deps.latest_deployment(runtime.store, pair.name)
    assert dep.phase == "NO_GO" and dep.reason.startswith("preflight: green: ") and str(dead) in dep.reason
    assert runtime.locks.holder(pair.name) is None

    path.write_text(text)
    env = dict(bgq_env, BGQ_SANDBOX_ADMIN_PASSWORD="wrong")
    r = bgqueue_cli("fleet", "run", str(path), env=env)
    assert r.returncode == 2
    assert f"field blue: blue 127.0.0.1:{pair.blue.port}: access denied for user 'bgq_admin' " \
           "(password from BGQ_SANDBOX_ADMIN_PASSWORD)" in r.stderr
    assert "wrong" not in r.stderr
    assert _server_state(pair) == before
    assert runtime.routing.get(pair.name) is None and runtime.locks.holder(pair.name) is None
    assert deps.latest_deployment(runtime.store, pair.name).id == dep.id  # nothing new recorded


def test_green_not_replicating_is_no_go_at_once_or_refused_with_strict(cluster_pair_factory, fleet_file, unique_name,
                                                                       bgq_env, runtime):
    pair = cluster_pair_factory(unique_name("nosync"))
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("STOP SLAVE")
    before = _server_state(pair)
    r = bgqueue_cli("fleet", "run", str(fleet_file([pair])), "--wait", "--strict", env=bgq_env)
    assert r.returncode == 2
    assert f"cluster '{pair.name}': field green: green: replication IO thread is not running" in r.stderr
    assert deps.latest_deployment(runtime.store, pair.name) is None
    r = bgqueue_cli("fleet", "run", str(fleet_file([pair])), "--wait", "--json", env=bgq_env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and [c["phase"] for c in doc["clusters"]] == ["NO_GO"]
    assert "replication IO thread is not running" in doc["clusters"][0]["reason"]
    assert f"cluster '{pair.name}': NO_GO: preflight: green: green: replication IO thread" in r.stderr
    assert _server_state(pair) == before
    assert runtime.locks.holder(pair.name) is None


def test_every_bad_input_at_once_and_json_on_failure(cluster_pair_factory, fleet_file, unique_name, bgq_env,
                                                     runtime):
    a, b = cluster_pair_factory(unique_name("alla")), cluster_pair_factory(unique_name("allb"))
    path = fleet_file([a, b])
    doc = yaml.safe_load(path.read_text())
    for c in doc["clusters"]:  # two problems, in two clusters: a green that is blue itself
        c["green"] = dict(c["blue"])
        c["green"]["host"] = "localhost"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = bgqueue_cli("fleet", "run", str(path), "--json", env=bgq_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["exit_code"] == 2 and out["meaning"].startswith("bad input")
    assert sorted(e["cluster"] for e in out["errors"]) == sorted([a.name, b.name]), out
    assert all(e["field"] == "green" and e["path"] == str(path) for e in out["errors"])
    assert a.name in r.stderr and b.name in r.stderr and "also:" in r.stderr
    assert deps.latest_deployment(runtime.store, a.name) is None and deps.latest_deployment(runtime.store, b.name) is None
    bad = bgqueue_cli("status", "no-such-batch-or-cluster", "--json", env=bgq_env)
    assert bad.returncode == 2 and json.loads(bad.stdout)["errors"][0]["type"] == "BadInput"


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
    # Both decisions, labelled: the gate's GO that allowed the switchover and the monitor's verdict.
    assert "decision before the switchover (round" in r5.stdout and "GO" in r5.stdout, r5.stdout
    assert "monitoring window's decision (round" in r5.stdout, r5.stdout
    assert "new_gtid:" in r5.stdout or "gtid:" in r5.stdout  # journal facts as key: value lines
    r6 = bgqueue_cli("status", env=bgq_env)
    assert r6.returncode == 0 and f"batch {data['batch']}" in r6.stdout and ": done, " in r6.stdout, r6.stdout
    assert "1 COMPLETED" in r6.stdout


def test_status_of_unknown_reference_is_bad_input(bgq_env, runtime):
    r = bgqueue_cli("status", "no-such-thing", env=bgq_env)
    assert r.returncode == 2 and "'no-such-thing' is neither a batch id nor a cluster" in r.stderr


def test_one_broken_cluster_never_blocks_the_fleet(cluster_pair_factory, fleet_file, unique_name, bgq_env, runtime,
                                                   celery_workers, sampler_process):
    good, broken = cluster_pair_factory(unique_name("fleetok")), cluster_pair_factory(unique_name("fleetbad"))
    with broken.green.root() as c, c.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")
    path = fleet_file([good, broken], monitor_window_s=0)
    r = bgqueue_cli("fleet", "run", str(path), "--wait", "--json", env=bgq_env, timeout=240)
    assert r.returncode == 1, (r.stdout, r.stderr)
    phases = {c["cluster"]: (c["phase"], c["reason"]) for c in json.loads(r.stdout)["clusters"]}
    assert phases[good.name][0] == "COMPLETED", phases
    assert phases[broken.name][0] == "NO_GO" and "SQL thread is not running" in phases[broken.name][1], phases
    with broken.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0  # the broken cluster's blue was never touched


def test_fleet_run_says_at_once_when_no_worker_answers(cluster_pair_factory, fleet_file, unique_name, bgq_env,
                                                       redis_url, tmp_path):
    pair = cluster_pair_factory(unique_name("noworker"))
    # A Redis database and a store of its own: no worker of this session consumes that queue.
    env = dict(bgq_env, BGQUEUE_REDIS_URL=redis_url.rsplit("/", 1)[0] + "/7",
               BGQUEUE_STORE_URL=f"sqlite:///{tmp_path / 'alone.sqlite'}", BGQUEUE_HOME=str(tmp_path))
    r = bgqueue_cli("fleet", "run", str(fleet_file([pair])), "--json", env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["warnings"] and "no Celery worker answered a ping" in doc["warnings"][0], doc
    assert "celery -A tasks worker" in r.stderr


def test_progress_says_what_validation_waits_for(cluster_pair_factory, fleet_file, unique_name, bgq_env, runtime,
                                                 celery_workers):
    """A sign-off that never comes: validation waits until its deadline, and the progress says for
    what (and how to give it) while it waits, not only the phase."""
    pair = cluster_pair_factory(unique_name("why"))
    path = fleet_file([pair], validation_timeout_s=4)
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["signoffs"] = ["dba"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = bgqueue_cli("fleet", "run", str(path), "--wait", env=bgq_env, timeout=180)
    assert r.returncode == 1, (r.stdout, r.stderr)
    log = r.stderr.replace("\n", " ")
    assert f"{pair.name}: VALIDATING: " in log and "signoffs waits: missing sign-off from dba" in log, r.stderr
    assert f"bgqueue signoff {pair.name} --team T --by NAME" in log
    assert f"{pair.name}: NO_GO" in log


def test_lag_without_samples_names_the_sampler():
    from types import SimpleNamespace

    from bgqueue.checks.replication import replication_lag
    from bgqueue.model.thresholds import Thresholds

    class NoSamples:
        def window(self, *_a, **_k):
            return []

    ctx = SimpleNamespace(spec=SimpleNamespace(name="c", thresholds=Thresholds(), blue=SimpleNamespace(port=1)),
                          metrics=NoSamples(), now=lambda: 1000.0)
    result = replication_lag(ctx)
    assert result.status == "wait" and "is `bgqueue sampler run` running?" in result.reason


def test_version_and_nightly_without_now(bgq_env):
    r = bgqueue_cli("--version", env=bgq_env)
    assert r.returncode == 0 and r.stdout.strip().startswith("bgqueue 0."), r.stdout
    r = bgqueue_cli("nightly", env=bgq_env)
    assert r.returncode == 2 and "say --now" in r.stderr
    assert "required" not in bgqueue_cli("nightly", "--help", env=bgq_env).stdout
    r = bgqueue_cli("nightly", "--json", env=bgq_env)
    assert r.returncode == 2 and json.loads(r.stdout)["exit_code"] == 2  # JSON on a usage error too
