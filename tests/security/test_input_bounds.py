"""Issue 11, item 6: inputs with bounds. Through the real command line (`bgqueue fleet check` /
`fleet run` in a subprocess), each refusal is exit 2 naming file, cluster and field, and nothing
changes on any server. Load-time cases name only loopback ports nobody listens on (a check that
let them through would try those, never another host); preflight cases run real servers."""
from __future__ import annotations

import math
import re
import time

import pytest
import yaml

from bgqueue.adapters.metrics.samples import DEFAULT_RETENTION_S
from bgqueue.adapters.store import deployments as deps
from bgqueue.model.fleet import FleetFileError, parse_fleet
from bgqueue.model.phases import Phase
from bgqueue.model.thresholds import SAMPLE_WINDOW_MAX_S, Thresholds
from bgqueue.sandbox import free_port
from bgqueue.sandbox.pair import REPL_PRIVILEGES, REPL_USER, USER_HOSTS
from tests.fixtures.bgq import bgqueue_cli
from tests.fixtures.servers import _server_ids
from tests.security.relay import Relay


def _cluster(name: str, **extra) -> dict:
    """A mysql cluster on loopback ports where nothing listens."""
    return {"name": name, "provider": "mysql", "blue": {"host": "127.0.0.1", "port": free_port()},
            "green": {"host": "127.0.0.1", "port": free_port()},
            "admin": {"user": "bgq_admin", "password_env": "BGQ_SANDBOX_ADMIN_PASSWORD"},
            "replication": {"user": "bgq_repl", "password_env": "BGQ_SANDBOX_REPL_PASSWORD"}, **extra}


def _write(tmp_path, clusters: list[dict], **top) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"version": 1, **top, "clusters": clusters}, sort_keys=False))
    return str(path)


def _line_of(path: str, needle: str, after: int = 0) -> int:
    lines = open(path).read().splitlines()
    return next(i for i, line in enumerate(lines, 1) if i > after and needle in line)


def _refused(r, where: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert where in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "cannot connect" not in r.stderr, r.stderr


# --- load time: thresholds ------------------------------------------------------------------


@pytest.mark.parametrize("layer,field,value", [
    ("defaults", "monitor_window_s", math.inf),  # the case: the worker overflowed after the switchover
    ("tier", "retention_s", 1e300),
    ("cluster", "sync_timeout_s", 10 * 365 * 86400.0),
    ("cluster", "rollback_max_lag_s", math.inf),
    ("defaults", "lag_window_s", 86400.0),  # longer than the sampler keeps samples: the check would wait for ever
    ("tier", "max_trx_age_s", 1e300),
])
def test_infinite_and_huge_thresholds_are_refused_where_written(tmp_path, bgq_env, layer, field, value):
    top: dict = {}
    c = _cluster("orders")
    if layer == "defaults":
        top["defaults"] = {"thresholds": {field: value}}
    elif layer == "tier":
        top["tiers"] = {"gold": {field: value}}
        c["tier"] = "gold"
    else:
        c["thresholds"] = {field: value}
    path = _write(tmp_path, [c], **top)
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    line = _line_of(path, f"{field}:")
    if layer == "cluster":
        _refused(r, f"{path}:{line}: cluster 'orders': field thresholds.{field}:")
    else:
        where = "defaults.thresholds" if layer == "defaults" else "tiers.gold"
        _refused(r, f"{path}:{line}: field {where}.{field}:")


def test_every_threshold_and_pipeline_figure_has_a_finite_bound():
    """No number in a fleet file is unbounded above: the largest float is refused for each."""
    base = {"name": "orders", "provider": "mysql", "blue": {"host": "db1"}, "green": {"host": "db2"},
            "admin": {"user": "a", "password_env": "BGQ_A"}, "replication": {"user": "r", "password_env": "BGQ_R"}}
    numeric = [n for n, f in Thresholds.model_fields.items() if f.annotation is not bool]
    assert len(numeric) == 17
    for name in numeric:
        for value in (1.7e308, math.inf, math.nan):
            with pytest.raises(FleetFileError) as e:
                parse_fleet(yaml.safe_dump({"clusters": [dict(base, thresholds={name: value})]}), "f.yaml")
            assert e.value.field == f"thresholds.{name}", str(e.value)
    pipelines = [
        ({"kind": "binlog", "name": "p", "tables": ["a.b"]}, ["heartbeat_s", "stream_maxlen", "move_timeout_s"]),
        ({"kind": "dms", "name": "p", "task_arn": "arn:aws:dms:x"}, ["max_latency_s", "move_timeout_s"]),
        ({"kind": "debezium", "name": "p", "connect_url": "http://c", "connector": "c", "topic_prefix": "t"},
         ["request_timeout_s", "move_timeout_s"]),
    ]
    for pipeline, fields in pipelines:
        for name in fields:
            with pytest.raises(FleetFileError) as e:
                parse_fleet(yaml.safe_dump({"clusters": [dict(base, pipelines=[dict(pipeline, **{name: 10**18})])]}))
            assert e.value.field == f"pipelines.0.{pipeline['kind']}.{name}", str(e.value)
    with pytest.raises(FleetFileError):
        parse_fleet(yaml.safe_dump({"budget_per_hour": 1e18, "clusters": [base]}))
    # The bounds still admit what an operator means: a week of monitoring, a month of retention.
    ok = parse_fleet(yaml.safe_dump({"clusters": [dict(base, thresholds={
        "monitor_window_s": 7 * 86400, "retention_s": 30 * 86400, "sync_timeout_s": 7 * 86400})]}))
    assert ok.clusters[0].thresholds.monitor_window_s == 7 * 86400
    # A window computed from samples must fit in what the sampler keeps.
    assert SAMPLE_WINDOW_MAX_S < DEFAULT_RETENTION_S


# --- load time: one server, one cluster ------------------------------------------------------


def test_two_clusters_naming_one_server_are_refused(tmp_path, bgq_env):
    a = _cluster("orders")
    b = _cluster("billing")
    port = free_port()
    b["green"] = {"host": "LOCALHOST.", "port": port}
    a["blue"] = {"host": "localhost", "port": port}  # one server: names are case-insensitive, the dot is the root
    path = _write(tmp_path, [a, b])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    line = _line_of(path, "host: LOCALHOST.")
    _refused(r, f"{path}:{line}: cluster 'billing': field green: LOCALHOST.:{port} is already cluster 'orders''s "
                "blue: two clusters on one server would each take their own lock")


def test_blue_and_green_the_same_endpoint_are_refused_at_the_field(tmp_path, bgq_env):
    c = _cluster("orders")
    c["green"] = {"host": "127.0.0.1", "port": c["blue"]["port"]}
    path = _write(tmp_path, [c])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    line = _line_of(path, "green:") + 1  # where green's mapping starts
    _refused(r, f"{path}:{line}: cluster 'orders': field green: blue and green are the same endpoint")


def test_a_host_that_is_not_a_host_name_is_refused(tmp_path, bgq_env):
    c = _cluster("orders")
    c["blue"]["host"] = "db1', MASTER_SSL=0 -- \x1b[2J"
    path = _write(tmp_path, [c])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    _refused(r, "cluster 'orders': field blue.host: String should match pattern")
    assert "\x1b" not in r.stderr


# --- load time: CDC streams ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [
    "bgq:route:orders",          # the routing record the clients follow
    "bgq:lock:cluster:orders",   # the cluster lock
    "bgq:cdc:orders:app:position",
    "bgqueue",                   # the Celery queue
    "_kombu.binding.bgqueue",
    "celery-task-meta-1",
    "unacked",
    "cdc:",
    "cdc:has space",
])
def test_a_cdc_stream_cannot_name_any_key_of_bgqueue_or_celery(tmp_path, bgq_env, stream):
    c = _cluster("orders", pipelines=[{"kind": "binlog", "name": "app", "tables": ["shop.orders"], "stream": stream}])
    path = _write(tmp_path, [c])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    line = _line_of(path, "stream:")
    _refused(r, f"{path}:{line}: cluster 'orders': field pipelines.0.binlog.stream: String should match pattern")


def test_two_pipelines_cannot_share_a_stream(tmp_path, bgq_env):
    p = {"kind": "binlog", "name": "app", "tables": ["shop.orders"], "stream": "cdc:shop.orders"}
    path = _write(tmp_path, [_cluster("orders", pipelines=[dict(p)]), _cluster("billing", pipelines=[dict(p)])])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    line = _line_of(path, "stream:", after=_line_of(path, "name: billing"))
    _refused(r, f"{path}:{line}: cluster 'billing': field pipelines.0.stream: stream cdc:shop.orders is already "
                "written by pipeline 'app' of cluster 'orders'")
    ok = parse_fleet(open(path).read().replace("stream: cdc:shop.orders", "stream: cdc:orders.events", 1))
    assert ok.clusters[0].pipelines[0].stream_key("orders") == "cdc:orders.events"


# --- staging twins ---------------------------------------------------------------------------


def test_a_cluster_cannot_be_its_own_staging_twin_nor_twins_a_cycle(tmp_path, bgq_env):
    path = _write(tmp_path, [_cluster("orders", staging="orders")])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    _refused(r, f"{path}:{_line_of(path, 'staging:')}: cluster 'orders': field staging: a cluster cannot be its own "
                "staging twin")
    path = _write(tmp_path, [_cluster("orders", staging="orders-stg"), _cluster("orders-stg", staging="orders")])
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    _refused(r, "cluster 'orders': field staging: staging twins form a cycle (orders → orders-stg → orders)")


def test_a_staging_twin_nobody_knows_is_refused_before_anything_is_enqueued(tmp_path, bgq_env, runtime,
                                                                           unique_name):
    name, twin = unique_name("prod"), unique_name("stg")
    path = _write(tmp_path, [_cluster(name, staging=twin)])
    r = bgqueue_cli("fleet", "run", path, env=bgq_env)
    _refused(r, f"{path}: cluster '{name}': field staging: staging twin '{twin}' is unknown: no cluster of this fleet "
                "and no deployment in the store has that name")
    assert deps.latest_deployment(runtime.store, name) is None and runtime.locks.holder(name) is None

    # A twin the store has deployed (in another fleet) is known: the run goes on to preflight.
    spec = dict(_cluster(twin), thresholds={})
    _, ids = deps.create_batch(runtime.store, fleet_name="stg", fleet_path="/stg", fleet_text="", clusters=[spec])
    deps.transition(runtime.store, deps.claim(runtime.store, ids[twin], "test", [Phase.PENDING]), Phase.NO_GO,
                    reason="test twin")
    r = bgqueue_cli("fleet", "run", path, "--strict", env=bgq_env)  # (no server answers: --strict refuses)
    assert r.returncode == 2 and f"cluster '{name}': field blue: blue 127.0.0.1:" in r.stderr, r.stderr
    assert "field staging" not in r.stderr


# --- preflight, real servers: server identity -------------------------------------------------


def _server_state(pair) -> tuple:
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos")
        blue = cur.fetchone()
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_current_pos")
        green = cur.fetchone()
    return blue, green


def _wait_replicating_from(server, server_id: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with server.root() as c, c.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=False))
        if row["Slave_IO_Running"] == "Yes" and row["Slave_SQL_Running"] == "Yes" \
                and int(row["Master_Server_Id"]) == server_id:
            return
        assert time.monotonic() < deadline, (row["Slave_IO_Running"], row["Last_IO_Error"], row["Last_SQL_Error"], row["Master_Server_Id"])
        time.sleep(0.1)


def test_green_replicating_from_another_server_behind_blues_name_is_refused(
        cluster_pair_factory, fleet_file, unique_name, bgq_env, runtime, tmp_path, sandbox_passwords,
        mariadb_cache_dir):
    """The fleet names blue through a VIP (a relay); green was pointed at that VIP while it led to
    another server, a replica of blue, and still streams from it. By name, green replicates from
    blue; by identity it does not: bgqueue would fence blue and wait for a green that follows C."""
    from bgqueue.sandbox.mariadb import MariaDBServer

    pair = cluster_pair_factory(unique_name("vip"))
    other = MariaDBServer(tmp_path / "other", "other", next(_server_ids), cache_dir=mariadb_cache_dir).start()
    relay = Relay(other.port)
    try:
        with other.root() as c, c.cursor() as cur:  # another replica of blue, that green can replicate from
            cur.execute("SET SESSION sql_log_bin=0")
            for host in USER_HOSTS:
                cur.execute(f"CREATE USER '{REPL_USER}'@'{host}' IDENTIFIED BY %s", (sandbox_passwords.repl,))
                cur.execute(f"GRANT {REPL_PRIVILEGES} ON *.* TO '{REPL_USER}'@'{host}'")
            cur.execute("SET SESSION sql_log_bin=1")
            cur.execute("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER=%s, "
                        "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                        (pair.blue.port, REPL_USER, sandbox_passwords.repl))
            cur.execute("START SLAVE")
        _wait_replicating_from(other, pair.blue.server_id)
        with pair.blue.root() as c, c.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            blue_pos = cur.fetchone()[0]
        with other.root() as c, c.cursor() as cur:  # else green may ask it for a GTID it has not got yet
            cur.execute("SELECT MASTER_GTID_WAIT(%s, 20)", (blue_pos,))
            assert cur.fetchone()[0] == 0
        with pair.green.root() as c, c.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USE_GTID=slave_pos",
                        (relay.port,))
            cur.execute("START SLAVE")
        _wait_replicating_from(pair.green, other.server_id)
        relay.target_port = pair.blue.port  # the VIP moves to blue; green's stream stays on the other server

        path = fleet_file([pair])
        path.write_text(path.read_text().replace(f"port: {pair.blue.port}", f"port: {relay.port}"))
        before = _server_state(pair)
        r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert f"cluster '{pair.name}': field green: green replicates from the server with server_id " \
               f"{other.server_id}, not from blue 127.0.0.1:{relay.port} (server_id {pair.blue.server_id})" in r.stderr
        r = bgqueue_cli("fleet", "run", str(path), env=bgq_env)
        assert r.returncode == 2 and f"server_id {other.server_id}, not from blue" in r.stderr, r.stderr
        assert _server_state(pair) == before
        assert deps.latest_deployment(runtime.store, pair.name) is None and runtime.locks.holder(pair.name) is None
    finally:
        with pair.green.root() as c, c.cursor() as cur:
            cur.execute("STOP SLAVE")
        relay.close()
        other.stop()


def test_blue_and_green_naming_one_server_are_refused_by_identity(cluster_pair_factory, fleet_file, unique_name,
                                                                  bgq_env):
    pair = cluster_pair_factory(unique_name("same"))
    path = fleet_file([pair])
    text = path.read_text().replace(f"port: {pair.green.port}", f"port: {pair.blue.port}")
    # Two names for one server: the loader cannot tell, the servers can.
    path.write_text(text.replace("host: 127.0.0.1", "host: localhost", 1))
    r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"cluster '{pair.name}': field green: green 127.0.0.1:{pair.blue.port} is the same server as blue " \
           f"localhost:{pair.blue.port} (server_id {pair.blue.server_id} on " in r.stderr, r.stderr


def test_two_clusters_naming_one_server_under_two_names_are_refused_by_identity(cluster_pair_factory, unique_name,
                                                                                bgq_env, tmp_path):
    pair = cluster_pair_factory(unique_name("twice"))
    alias = dict(pair.spec_dict(), name=f"{pair.name}-alias",
                 blue={"host": "localhost", "port": pair.blue.port}, green={"host": "localhost", "port": pair.green.port})
    path = _write(tmp_path, [pair.spec_dict(), alias])
    r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"cluster '{pair.name}-alias': field blue: blue is the same server as cluster '{pair.name}''s blue" \
           in r.stderr, r.stderr
    assert f"cluster '{pair.name}-alias': field green: green is the same server as cluster '{pair.name}''s green" \
           in r.stderr, r.stderr


# --- preflight, real servers: the monitor user -------------------------------------------------


@pytest.mark.parametrize("grant,shown", [
    ("SUPER", "SUPER"),
    ("READ_ONLY ADMIN", "READ_ONLY ADMIN"),
    ("CONNECTION ADMIN", "CONNECTION ADMIN"),
    ("ALL PRIVILEGES", "ALL PRIVILEGES"),
    ("role:SUPER", "SUPER (through role bgq_sec_role)"),
])
def test_a_monitor_user_exempt_from_read_only_is_refused(cluster_pair_factory, fleet_file, unique_name, bgq_env,
                                                         runtime, grant, shown):
    pair = cluster_pair_factory(unique_name("mon"))
    path = fleet_file([pair])
    r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert r.returncode == 0, r.stderr  # the sandbox's monitor user is unprivileged
    with pair.blue.root() as c, c.cursor() as cur:  # binlogged: green gets the grant too
        if grant.startswith("role:"):
            cur.execute("CREATE ROLE bgq_sec_role")
            cur.execute(f"GRANT {grant[5:]} ON *.* TO bgq_sec_role")
            cur.execute("GRANT bgq_sec_role TO 'bgq_monitor'@'127.0.0.1'")
        else:
            cur.execute(f"GRANT {grant} ON *.* TO 'bgq_monitor'@'127.0.0.1'")
    pair.wait_green_synced()
    before = _server_state(pair)
    r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    for side, port in (("blue", pair.blue.port), ("green", pair.green.port)):
        assert f"cluster '{pair.name}': field monitor.user: monitor user 'bgq_monitor'@'127.0.0.1' on {side} " \
               f"127.0.0.1:{port} holds {shown}: a fenced (read_only) server would still take its writes" \
               in r.stderr, r.stderr
    assert "'bgq_monitor'@'localhost'" not in r.stderr  # the other account holds nothing more
    assert not re.search(r"\*[0-9A-F]{40}", r.stderr)  # SHOW GRANTS lines carry the password hash: never shown
    r = bgqueue_cli("fleet", "run", str(path), env=bgq_env)
    assert r.returncode == 2 and "field monitor.user" in r.stderr, r.stderr
    assert _server_state(pair) == before
    assert deps.latest_deployment(runtime.store, pair.name) is None
