"""The built-in consumer crosses real switchovers under continuous writes: every acknowledged write
is in its stream exactly once, checked against the writers' ledger.

Real mariadbd pairs, a real redis-server, the consumer in its own process (as in production), an
unprivileged application user writing through bgqueue.client, and the switchover driven through
the deployment's lifecycle steps, then the CDC phase (migrate_pipelines) re-invoked until done.
"""
from __future__ import annotations

import signal
import time

import pytest

from bgqueue.adapters.cdc import position as gtidpos
from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.cdc.migration import pipeline_health
from bgqueue.adapters.store import journal
from bgqueue.client.audit import audit_stream
from bgqueue.client.workload import start_workload
from bgqueue.model.fleet import load_fleet
from tests.adapters.cdc.helpers import (
    ConsumerProcess,
    run_cdc_phase,
    server_gtid,
    switch_over,
    wait_delivered,
    wait_streaming,
    write_cdc_fleet,
)
from tests.fixtures.servers import both_flavours

RATE_HZ = 300


def _origin(server) -> str:
    """How a GTID names the server a transaction was first committed on: MariaDB's server_id,
    MySQL's server_uuid."""
    if server.flavour == "mariadb":
        return str(server.server_id)
    with server.root() as c, c.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.server_uuid")
        return str(cur.fetchone()[0]).lower()


@both_flavours
def test_consumer_process_follows_switchovers_there_and_back_with_no_event_lost_or_repeated(
        cluster_pair_factory, unique_name, tmp_path, runtime, redis_url, sandbox_passwords, cdc_env):
    pair = cluster_pair_factory(unique_name("cdcsw"))
    there = write_cdc_fleet(tmp_path / "there.yaml", [pair])
    back = write_cdc_fleet(tmp_path / "back.yaml", [pair], swapped=True)
    spec, spec_back = load_fleet(there).clusters[0], load_fleet(back).clusters[0]
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    consumer = ConsumerProcess(there, cdc_env, tmp_path / "consumer.log").start()
    load = None
    try:
        wait_streaming(state, str(spec.blue))
        load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                              rate_hz=RATE_HZ)
        time.sleep(0.5)
        claim = switch_over(runtime, spec)
        progress = run_cdc_phase(runtime, claim, spec)
        time.sleep(1.0)
        claim_back = switch_over(runtime, spec_back)  # green → blue
        progress_back = run_cdc_phase(runtime, claim_back, spec_back)
        time.sleep(0.5)
        load.stop()
        wait_delivered(state, server_gtid(spec.blue, sandbox_passwords.admin))
    finally:
        if load is not None:
            load.stop()
        assert consumer.stop() == 0, consumer.output()[-2000:]

    audit = audit_stream(runtime.redis, state.stream, load.writer.acked_ids())
    assert audit.acked > 200 and audit.ok, audit  # ~600 alone, 305 seen on a loaded machine
    assert audit.unacknowledged == 0, audit
    # The CDC phase confirmed each move and journaled it with the pipeline's downtime.
    for p, claim_, old, new in ((progress, claim, spec.blue, spec.green),
                                (progress_back, claim_back, spec.green, spec.blue)):
        assert p.done and p.problems == [], p
        assert 0 < p.downtime_ms["app"] < 2000, p.downtime_ms
        steps = journal.steps(runtime.store, claim_.deployment_id, "cdc")
        assert [(s.name, s.status) for s in steps] == [("plan", "done"), ("stop", "done"), ("move", "done"),
                                                       ("resume", "done"), ("pipelines", "done")]
        resume = steps[3].detail
        assert resume["pipeline"] == "app" and resume["moved_from"] == str(old)
        assert resume["down_ms"] == resume["gap_ms"] == p.downtime_ms["app"]
        assert resume["down_measured_by"] == "pipeline" and 0 < resume["source_gap_ms"] < 2000
        assert steps[2].detail["source"] == str(new)
    moves = state.moves()
    assert [(m.source_from, m.source_to) for m in moves] == [(str(spec.green), str(spec.blue)),
                                                             (str(spec.blue), str(spec.green))]
    # The writer changed at each switchover: green's server id, then blue's again.
    changes = state.origin_changes()
    blue_id, green_id = _origin(pair.blue), _origin(pair.green)
    assert [(c.origin_from, c.origin_to) for c in changes] == [(green_id, blue_id), (blue_id, green_id)]
    assert [c.gap_ms for c in reversed(changes)] == [progress.downtime_ms["app"], progress_back.downtime_ms["app"]]


@pytest.mark.parametrize("how", ["frozen", "stopped"])
def test_consumer_far_behind_at_the_switchover_resumes_blue_history_from_green(
        how, cluster_pair_factory, unique_name, tmp_path, runtime, redis_url, sandbox_passwords, cdc_env):
    """frozen: the consumer process is SIGSTOPped (its socket and its route message wait for it);
    stopped: it is not running at all and starts after the switchover. Either way it is ~1000
    transactions behind blue when the route flips, and reads the rest of blue's history from green."""
    pair = cluster_pair_factory(unique_name("cdclag"))
    fleet = write_cdc_fleet(tmp_path / "fleet.yaml", [pair])
    spec = load_fleet(fleet).clusters[0]
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    consumer = ConsumerProcess(fleet, cdc_env, tmp_path / "consumer.log").start()
    load = None
    try:
        wait_streaming(state, str(spec.blue))
        load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                              rate_hz=RATE_HZ)
        time.sleep(0.5)
        if how == "frozen":
            consumer.signal(signal.SIGSTOP)
        else:
            assert consumer.stop() == 0
        time.sleep(3.0)
        claim = switch_over(runtime, spec)
        cp = journal.latest_checkpoint(runtime.store, claim.deployment_id, "switchover")
        behind = gtidpos.behind("mariadb", state.position()["gtid"], cp.old_gtid)
        if how == "frozen":
            consumer.signal(signal.SIGCONT)
        else:
            consumer = ConsumerProcess(fleet, cdc_env, tmp_path / "consumer2.log").start()
        progress = run_cdc_phase(runtime, claim, spec)
        time.sleep(0.3)
        load.stop()
        wait_delivered(state, server_gtid(spec.green, sandbox_passwords.admin))
    finally:
        if load is not None:
            load.stop()
        assert consumer.stop() == 0, consumer.output()[-2000:]

    assert behind > 500, behind
    assert progress.done and progress.problems == [], progress
    audit = audit_stream(runtime.redis, state.stream, load.writer.acked_ids())
    assert audit.acked > 1000 and audit.ok, audit
    [move] = state.moves()
    assert (move.source_from, move.source_to) == (str(spec.blue), str(spec.green))
    # The first transaction it delivered from green was one of blue's: it resumed in blue's history.
    assert gtidpos.origin_server_id("mariadb", move.gtid) == str(pair.blue.server_id), move
    [health] = pipeline_health(spec, runtime.redis)
    assert health.kind == "binlog" and health.source == str(spec.green)
    assert health.detail["events"] == audit.delivered
