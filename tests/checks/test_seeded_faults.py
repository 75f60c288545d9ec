"""Each pre-switchover check against a real pair with one fault seeded: caught, with the right reason."""
from __future__ import annotations

import threading
import time

import pymysql
import pytest

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import validation as records
from bgqueue.checks.activity import blue_activity
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.drift import diff, parameter_drift
from bgqueue.checks.governance import signoffs, staging_gate
from bgqueue.checks.readiness import event_scheduler, reverse_readiness
from bgqueue.checks.replication import replication_health
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import Phase
from tests.fixtures.servers import both_flavours


def _spec(pair, **overrides) -> ClusterSpec:
    data = pair.spec_dict()
    data.update(overrides)
    return ClusterSpec.model_validate(data)


@pytest.fixture
def ctx_for(runtime):
    made = []

    def make(pair, **overrides) -> CheckContext:
        spec = _spec(pair, **overrides)
        blue, green = servers(spec)
        ctx = CheckContext(spec=spec, blue=blue, green=green, store=runtime.store)
        made.append(ctx)
        return ctx

    yield make
    for c in made:
        c.close()


@both_flavours
def test_clean_pair_passes_every_server_check(cluster_pair_factory, unique_name, ctx_for):
    ctx = ctx_for(cluster_pair_factory(unique_name("clean")))
    for name, check in [("replication_health", replication_health), ("parameter_drift", parameter_drift),
                        ("blue_activity", blue_activity), ("event_scheduler", event_scheduler),
                        ("reverse_readiness", reverse_readiness), ("signoffs", signoffs), ("staging", staging_gate)]:
        r = run_check(name, check, ctx)
        assert r.ok, (name, r.reason)


@both_flavours
def test_sql_thread_stopped(cluster_pair_factory, unique_name, ctx_for):
    pair = cluster_pair_factory(unique_name("sqlstop"))
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute(f"{pair.dialect.stop_replica_sql} SQL_THREAD")
    r = replication_health(ctx_for(pair))
    assert r.status == "fail" and not r.retryable
    assert "green: replication SQL thread is not running" in r.reason


def test_sql_mode_differing_on_green_fails_unless_intended(cluster_pair_factory, unique_name, ctx_for):
    pair = cluster_pair_factory(unique_name("sqlmode"))
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SET GLOBAL sql_mode = 'ANSI_QUOTES'")
    r = parameter_drift(ctx_for(pair))
    assert r.status == "fail" and "sql_mode differs" in r.reason and "'ANSI_QUOTES'" in r.reason
    assert r.evidence["behaviour_changing"][0]["name"] == "sql_mode"
    ok = parameter_drift(ctx_for(pair, change={"description": "ansi quotes", "parameters": {"sql_mode": "ANSI_QUOTES"}}))
    assert ok.ok and ok.evidence["intended"][0]["name"] == "sql_mode"
    wrong = parameter_drift(ctx_for(pair, change={"parameters": {"sql_mode": "STRICT_ALL_TABLES"}}))
    assert wrong.status == "fail" and "declares 'STRICT_ALL_TABLES' but green has 'ANSI_QUOTES'" in wrong.reason


def test_drift_classification_is_pure():
    blue = {"server_id": "1", "sql_mode": "A", "max_connections": "100", "version": "10.11", "new_var": None}
    green = {"server_id": "2", "sql_mode": "A", "max_connections": "200", "version": "11.4", "only_g": "1"}
    blue = {k: v for k, v in blue.items() if v is not None}
    out = diff(blue, green, {}, engine_change=True)
    assert out["behaviour_changing"] == [] and out["other"] == [{"name": "max_connections", "blue": "100",
                                                                 "green": "200"}]
    assert out["only_green"] == ["only_g"]
    assert diff(blue, green, {}, engine_change=False)["other"][-1]["name"] == "version"


def test_open_transaction_on_blue_older_than_the_limit(cluster_pair_factory, unique_name, ctx_for, sandbox_passwords):
    pair = cluster_pair_factory(unique_name("trx"))
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("CREATE TABLE appdb.t (id INT PRIMARY KEY)")
    app = pymysql.connect(host=pair.blue.host, port=pair.blue.port, user="app", password=sandbox_passwords.app,
                          database="appdb", ssl_disabled=True)
    try:
        with app.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO t VALUES (1)")
        time.sleep(2.2)
        thresholds = dict(max_trx_age_s=1)
        r = blue_activity(ctx_for(pair, thresholds=thresholds))
        assert r.status == "fail" and r.retryable
        assert "1 transaction(s) open longer than 1s on blue" in r.reason and "user 'app'" in r.reason
    finally:
        app.rollback()
        app.close()
    deadline = time.monotonic() + 5  # the server ends the transaction of a closed session on its own time
    while not (r := blue_activity(ctx_for(pair, thresholds=dict(max_trx_age_s=1)))).ok and time.monotonic() < deadline:
        time.sleep(0.2)
    assert r.ok, r.reason


def test_ddl_in_flight_on_blue(cluster_pair_factory, unique_name, ctx_for):
    pair = cluster_pair_factory(unique_name("ddl"))
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("CREATE TABLE appdb.big (id INT PRIMARY KEY, v INT)")
        cur.execute("INSERT INTO appdb.big SELECT seq, seq FROM appdb.seq_1_to_300000")
    locker = pair.blue.root()
    alter = pair.blue.root()
    with locker.cursor() as cur:
        cur.execute("LOCK TABLES appdb.big READ")  # the ALTER waits on it: DDL in flight
    t = threading.Thread(target=lambda: alter.cursor().execute("ALTER TABLE appdb.big ADD COLUMN w INT"))
    t.start()
    try:
        time.sleep(0.5)
        r = blue_activity(ctx_for(pair))
        assert r.status == "fail" and r.retryable and "DDL in flight on blue" in r.reason and "ALTER TABLE" in r.reason
    finally:
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        t.join(30)
        locker.close()
        alter.close()


def test_event_scheduler_mismatch(cluster_pair_factory, unique_name, ctx_for):
    pair = cluster_pair_factory(unique_name("evt"))
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SET GLOBAL event_scheduler = ON")
    r = event_scheduler(ctx_for(pair))
    assert r.status == "fail" and "green has event_scheduler=ON but blue has OFF" in r.reason


def test_reverse_readiness_needs_the_replication_user_on_green(cluster_pair_factory, unique_name, ctx_for):
    pair = cluster_pair_factory(unique_name("rev"))
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("REVOKE REPLICATION SLAVE ON *.* FROM 'bgq_repl'@'127.0.0.1'")
    r = reverse_readiness(ctx_for(pair))
    assert r.status == "fail" and "lacks REPLICATION SLAVE" in r.reason


def test_missing_signoff_then_signed_and_only_for_this_change(cluster_pair_factory, unique_name, ctx_for, runtime):
    pair = cluster_pair_factory(unique_name("sig"))
    ctx = ctx_for(pair, signoffs=["dba", "payments"], change={"description": "upgrade to 11.4"})
    r = signoffs(ctx)
    assert r.status == "fail" and r.retryable and "missing sign-off from dba, payments" in r.reason
    records.add_signoff(runtime.store, pair.name, ctx.spec.change_key(), "dba", "alice")
    other = _spec(pair, change={"description": "another change"})
    records.add_signoff(runtime.store, pair.name, other.change_key(), "payments", "bob")  # not this change
    r = signoffs(ctx)
    assert r.status == "fail" and "missing sign-off from payments" in r.reason
    records.add_signoff(runtime.store, pair.name, ctx.spec.change_key(), "payments", "carol")
    r = signoffs(ctx)
    assert r.ok and "dba (alice)" in r.reason and "payments (carol)" in r.reason


def test_failed_staging_twin_blocks_and_a_completed_one_lets_through(cluster_pair_factory, unique_name, ctx_for,
                                                                     runtime):
    pair = cluster_pair_factory(unique_name("prod"))
    twin = unique_name("stg")
    change = {"description": "upgrade to 11.4"}
    ctx = ctx_for(pair, staging=twin, change=change)
    r = staging_gate(ctx)
    assert r.status == "fail" and not r.retryable and f"staging twin {twin!r} has no deployment of this change" in r.reason

    def twin_deployment(final: Phase, reason: str) -> None:
        spec = dict(pair.spec_dict(), name=twin, change=change)
        _, ids = deps.create_batch(runtime.store, fleet_name="stg", fleet_path="/stg", fleet_text="", clusters=[spec])
        claim = deps.claim(runtime.store, ids[twin], "test", [Phase.PENDING])
        if final == Phase.COMPLETED:
            for p in (Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, Phase.READY, Phase.SWITCHING,
                      Phase.CDC_MIGRATING, Phase.MONITORING):
                claim = deps.transition(runtime.store, claim, p)
        deps.transition(runtime.store, claim, final, reason=reason)

    twin_deployment(Phase.NO_GO, "checksum mismatch")
    r = staging_gate(ctx)
    assert r.status == "fail" and f"staging twin {twin!r}'s latest deployment of this change ended NO_GO: " \
                                  "checksum mismatch" in r.reason
    twin_deployment(Phase.COMPLETED, "")
    assert staging_gate(ctx).ok
    # A completed twin of ANOTHER change does not open the gate.
    assert staging_gate(ctx_for(pair, staging=twin, change={"description": "something else"})).status == "fail"
