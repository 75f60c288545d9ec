"""The fence holds against privileged sessions too: read_only does not stop SUPER / READ_ONLY ADMIN,
so the switchover ends every client session and, before promoting, checks that the old primary's
position did not move. Real servers; the switchover step runs in this process."""
from __future__ import annotations

import time

import pymysql
import pytest
from sqlalchemy import update

from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store.models import Deployment
from bgqueue.client.workload import start_workload, verify
from bgqueue.engine import lifecycle
from bgqueue.engine.batches import open_batch
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from tests.fixtures.servers import both_flavours


def _ready(runtime, path) -> str:
    """A deployment put straight into READY (validation is not what these tests are about)."""
    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(phase=Phase.READY))
    return dep_id


def _admin(pair, sandbox_passwords, server):
    return pymysql.connect(host=server.host, port=server.port, user="bgq_admin", password=sandbox_passwords.admin,
                           autocommit=True, ssl_disabled=True)


@both_flavours
def test_privileged_sessions_are_ended_at_the_fence(cluster_pair_factory, fleet_file, unique_name, runtime,
                                                    sandbox_passwords):
    pair = cluster_pair_factory(unique_name("fkill"))
    dep_id = _ready(runtime, fleet_file([pair]))
    privileged = _admin(pair, sandbox_passwords, pair.blue)  # exempt from read_only
    with privileged.cursor() as cur:
        cur.execute("CREATE TABLE appdb.t (id INT PRIMARY KEY)")
    lifecycle.switch(runtime, dep_id)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.CDC_MIGRATING
    fence = [s for s in journal.steps(runtime.store, dep_id, "switchover") if s.name == "fence"][0]
    assert "bgq_admin" in fence.detail["users"] and fence.detail["sessions_ended"] >= 1
    with pytest.raises(pymysql.err.OperationalError):  # its session was killed: it cannot write past the fence
        with privileged.cursor() as cur:
            cur.execute("INSERT INTO appdb.t VALUES (1)")
    privileged.close()


def test_a_write_that_escapes_the_fence_fails_the_switchover_safely(cluster_pair_factory, fleet_file, unique_name,
                                                                     runtime, redis_url, sandbox_passwords,
                                                                     monkeypatch):
    """A privileged session that connects after the fence writes while green catches up: the
    switchover must not promote green (that write would be lost and be an errant GTID)."""
    pair = cluster_pair_factory(unique_name("fesc"))
    path = fleet_file([pair])
    spec = load_fleet(path).clusters[0]
    dep_id = _ready(runtime, path)
    load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                          rate_hz=100)
    real_wait = Server.wait_for_position

    def wait_while_someone_writes(self, position, timeout_s, **kw):
        if self.label == "green":
            sneaky = _admin(pair, sandbox_passwords, pair.blue)  # a new privileged session, after the fence
            with sneaky.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS appdb.escaped (id INT PRIMARY KEY)")
            sneaky.close()
        return real_wait(self, position, timeout_s, **kw)

    monkeypatch.setattr(Server, "wait_for_position", wait_while_someone_writes)
    try:
        time.sleep(0.3)
        lifecycle.switch(runtime, dep_id)
        time.sleep(0.5)
    finally:
        load.stop()
    dep = deps.get_deployment(runtime.store, dep_id)
    assert dep.phase == Phase.SWITCHOVER_FAILED, dep.reason
    assert "writes escaped the fence on blue" in dep.reason
    names = [(s.name, s.status) for s in journal.steps(runtime.store, dep_id, "switchover")]
    assert ("fence_held", "failed") in names and names[-1] == ("lift_fence", "done")
    assert runtime.routing.get(spec.name).port == spec.blue.port  # routing never moved
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone()[0] == 0  # blue is the writer again
    v = verify(spec, load.writer.acked_ids(), new=spec.blue, old=spec.green)
    assert v.lost == 0 and v.old_caught_up  # green replicates everything, the escaped write included
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'escaped'")
        assert cur.fetchone()[0] == 1
