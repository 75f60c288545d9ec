"""Maintenance mode end to end: a SQLAlchemy QueuePool application (no retry logic of its own) drains
before the fence and reconnects to green after the flip with no error; the protocol's edge cases
(a duplicate "enter", a stale epoch, a client that crashed mid-drain) on a real Redis."""
from __future__ import annotations

import itertools
import threading
import time

import pytest
import redis
import yaml
from sqlalchemy import text

from bgqueue.adapters.routing.maintenance import Maintenance
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.client.maintenance import MaintenanceParticipant
from bgqueue.client.sqlalchemy import routed_engine
from bgqueue.engine import lifecycle
from bgqueue.engine.batches import open_batch
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from bgqueue.sandbox import APP_DATABASE, APP_USER
from tests.engine.mysql.test_switchover_resume import _drive_to_ready

TABLE = f"{APP_DATABASE}.sa_items"


def _with_maintenance(path, **m):
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["maintenance"] = {"mode": "drain", **m}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_sqlalchemy_application_in_maintenance_mode_sees_no_error_across_a_switchover(
        cluster_pair_factory, fleet_file, unique_name, runtime, redis_url, sandbox_passwords, sampler_process):
    pair = cluster_pair_factory(unique_name("sa"))
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, writer INT)")
    pair.wait_green_synced()
    path = _with_maintenance(fleet_file([pair]), ack_timeout_s=5, on_timeout="abort")
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]  # the route is initialised at prepare
    _drive_to_ready(runtime, dep_id)
    engine = routed_engine(spec.name, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE, maintenance=True,
                           client_id="app-1", pool_size=4)
    ids = itertools.count(1)
    acked: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def write(w: int) -> None:
        while not stop.is_set():
            i = next(ids)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"INSERT INTO {TABLE} (id, writer) VALUES (:i, :w)"), {"i": i, "w": w})
                acked.append(i)
            except Exception as e:  # what the application would see
                errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.005)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        lifecycle.switch(runtime, dep_id)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        engine.bgqueue_close()
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.CDC_MIGRATING, dep.reason
    assert errors == [], errors[:5]
    steps = {s.name: s for s in journal.steps(runtime.store, dep_id, "switchover")}
    assert steps["maintenance_enter"].detail["acknowledged"] == ["app-1"]
    assert steps["maintenance_enter"].detail["silent"] == []
    assert steps["maintenance_exit"].status == "done"
    assert engine.bgqueue.disposals >= 1
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE}")
        on_green = {r[0] for r in cur.fetchall()}
    assert len(acked) > 50 and set(acked) <= on_green


def test_a_client_silent_past_the_ack_timeout_aborts_the_switchover_with_nothing_changed(
        cluster_pair_factory, fleet_file, unique_name, runtime, redis_url, sampler_process):
    pair = cluster_pair_factory(unique_name("silent"))
    path = _with_maintenance(fleet_file([pair]), ack_timeout_s=1, on_timeout="abort")
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    _drive_to_ready(runtime, dep_id)
    # An instance that announced itself, then crashed mid-drain: it never acknowledges.
    Maintenance(runtime.redis).announce(spec.name, "crashed-app", ttl_s=60)
    lifecycle.switch(runtime, dep_id)
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.SWITCHOVER_FAILED and "crashed-app" in dep.reason, dep.reason
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0  # never fenced
    assert Maintenance(runtime.redis).state(spec.name)["state"] == "exit"  # the clients were let go again
    Maintenance(runtime.redis).withdraw(spec.name, "crashed-app")


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_a_duplicate_enter_drains_once_and_a_stale_epoch_is_ignored(r, unique_name):
    cluster = unique_name("proto")
    drains, resumes = [], []
    p = MaintenanceParticipant(r, cluster, drain=lambda: drains.append(1), resume=lambda: resumes.append(1),
                               client_id="c1")
    m = Maintenance(r)
    try:
        assert "c1" in m.registered(cluster)
        m.enter(cluster, 7, "d1")
        p.poll()
        m.enter(cluster, 7, "d1")  # the same "enter" again (a resumed switchover)
        p.poll()
        assert drains == [1] and m.acknowledged(cluster, 7) == {"c1"}
        m.exit(cluster, 7, "d1")
        p.poll()
        assert resumes == [1]
        m.enter(cluster, 5, "d1")  # a stale epoch: a worker that lost this deployment
        p.poll()
        assert drains == [1] and m.acknowledged(cluster, 5) == set()
    finally:
        p.close()
    assert "c1" not in m.registered(cluster)


def test_a_routed_client_in_maintenance_mode_finishes_its_transaction_and_sees_no_error_across_a_switchover(
        cluster_pair_factory, fleet_file, unique_name, runtime, redis_url, sandbox_passwords, sampler_process):
    from bgqueue.client import RoutedClient

    pair = cluster_pair_factory(unique_name("rc-maint"))
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, writer INT)")
    pair.wait_green_synced()
    path = _with_maintenance(fleet_file([pair]), ack_timeout_s=5, on_timeout="abort")
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    _drive_to_ready(runtime, dep_id)
    client = RoutedClient(spec.name, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE,
                          endpoints=[(pair.blue.host, pair.blue.port), (pair.green.host, pair.green.port)],
                          maintenance=True, client_id="rc-1", ssl_disabled=True)
    ids = itertools.count(1)
    acked: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            i = next(ids)
            try:
                client.transaction(lambda cur, i=i: cur.execute(
                    f"INSERT INTO {TABLE} (id, writer) VALUES (%s, 0)", (i,)))
                acked.append(i)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.003)

    t = threading.Thread(target=write)
    t.start()
    try:
        time.sleep(1.0)
        lifecycle.switch(runtime, dep_id)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(30)
        client.close()
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.CDC_MIGRATING, dep.reason
    assert errors == [], errors[:5]
    steps = {s.name: s for s in journal.steps(runtime.store, dep_id, "switchover")}
    assert steps["maintenance_enter"].detail["acknowledged"] == ["rc-1"]
    # Drained before the fence: no transaction of this client was refused by read_only (1290).
    assert client.retries == 0, client.counters()
    assert client.route.endpoint == (pair.green.host, pair.green.port)
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE}")
        on_green = {r[0] for r in cur.fetchall()}
    assert len(acked) > 50 and set(acked) <= on_green


def test_an_enter_past_its_hold_bound_lets_the_clients_go(r, unique_name):
    import json as _json

    cluster = unique_name("hold")
    drains, resumes = [], []
    p = MaintenanceParticipant(r, cluster, drain=lambda: drains.append(1), resume=lambda: resumes.append(1),
                               client_id="c1")
    m = Maintenance(r)
    try:
        m.enter(cluster, 3, "d1", hold_s=10)
        p.poll()
        assert drains == [1] and p.in_maintenance
        # The worker died after "enter" and nobody sent "exit": the state ages past its bound.
        state = m.state(cluster)
        r.set(m.key(cluster), _json.dumps({**state, "at": state["at"] - 11}))
        p.poll()
        assert resumes == [1] and not p.in_maintenance
        p.poll()
        assert drains == [1] and resumes == [1]  # an expired "enter" drains nobody again
    finally:
        p.close()


def test_maintenance_in_another_environment_on_the_same_redis_drains_nobody_here(r, unique_name):
    cluster = unique_name("ns")
    drains: list[int] = []
    p = MaintenanceParticipant(r, cluster, drain=lambda: drains.append(1), resume=lambda: None, client_id="c1")
    try:
        theirs = Maintenance(r, namespace="staging")
        theirs.enter(cluster, 1, "their-deployment")
        p.poll()
        time.sleep(0.6)  # the participant's own thread has seen the signal too
        assert drains == [] and theirs.acknowledged(cluster, 1) == set()
        assert "c1" not in theirs.registered(cluster) and "c1" in Maintenance(r).registered(cluster)
    finally:
        p.close()
