"""The CDC phase driver (migrate_pipelines): re-entrance, state in Redis, deadlines, several pipelines.

The built-in consumer's side is written through its own state API (ConsumerState), exactly what a
consumer process writes, so the binlog adapter's decisions can be driven step by step here; the
end-to-end runs with real consumers are in test_consumer_switchover.py."""
from __future__ import annotations

import json

from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.cdc.events import ENTRY_FIELDS
from bgqueue.adapters.cdc.migration import migrate_pipelines, state_key
from bgqueue.adapters.cdc.pipeline import Coordinates
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.journal import Journal
from bgqueue.model.fleet import ClusterSpec
from tests.adapters.cdc.fake_connect import FakeConnect
from tests.adapters.cdc.helpers import claim_deployment, drive_cdc_phase

BLUE, GREEN = "127.0.0.1:13306", "127.0.0.1:13307"
CP = Coordinates(checkpoint_id=11, kind="switchover", old_primary=BLUE, new_primary=GREEN, old_gtid="0-1-100",
                 old_binlog_file="binlog.000002", old_binlog_pos=5000, new_gtid="0-1-100",
                 new_binlog_file="binlog.000003", new_binlog_pos=1234)


def cluster(name: str, *pipelines: dict) -> ClusterSpec:
    return ClusterSpec.model_validate({
        "name": name, "provider": "mysql", "blue": {"host": "127.0.0.1", "port": 13306},
        "green": {"host": "127.0.0.1", "port": 13307}, "admin": {"user": "a", "password_env": "A_PW"},
        "replication": {"user": "r", "password_env": "R_PW"}, "pipelines": list(pipelines)})


BINLOG = {"kind": "binlog", "name": "app", "tables": ["appdb.bgq_writes"], "move_timeout_s": 20}


def consumer_delivers(state: ConsumerState, gtid: str, *, source: str, expected: str) -> str:
    """What a consumer writes when it delivers the transaction ``gtid`` read from ``source``."""
    state.commit(expected, gtid, reader=source, committed_gtid=gtid, flavour="mariadb", route_version=2,
                 fields=ENTRY_FIELDS, entries=[(gtid, source, "appdb.bgq_writes", "insert", "0", '{"id":1}')])
    state.report("consumer-1", state="streaming", source=source, caught_up=1, lag_s=0.0)
    return gtid


def test_binlog_pipeline_waits_for_its_consumer_to_move_then_records_its_gap(runtime, unique_name):
    spec = cluster(unique_name("mig"), BINLOG)
    runtime.routing.init(spec.name, "127.0.0.1", 13307)  # the switchover flipped the route to green
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    at = consumer_delivers(state, "0-1-90", source=BLUE, expected="")
    claim = claim_deployment(runtime, spec)
    journal = Journal(runtime.store, claim, "cdc")

    first = migrate_pipelines(spec, CP, journal, None, redis=runtime.redis, now=1000.0)
    assert not first.done and first.wait_s == 0.2  # the consumer still reads blue
    assert first.state["pipelines"]["app"]["step"] == "move"
    at = consumer_delivers(state, "0-1-95", source=BLUE, expected=at)
    state.report("consumer-1", state="streaming", source=GREEN, caught_up=0)  # it moved: reading green now
    second = migrate_pipelines(spec, CP, journal, first.state, redis=runtime.redis, now=1001.0)
    # Moved, but blue's last 5 transactions (up to 0-1-100) are not delivered yet.
    assert not second.done and second.state["pipelines"]["app"]["step"] == "resume"
    assert second.state["pipelines"]["app"]["last"]["behind"] == 5
    at = consumer_delivers(state, "0-1-100", source=GREEN, expected=at)  # blue's last one, read from green
    third = migrate_pipelines(spec, CP, journal, None, redis=runtime.redis, now=1002.0)  # state from Redis
    assert not third.done  # nothing written on green delivered yet
    consumer_delivers(state, "0-2-101", source=GREEN, expected=at)  # the first write on green
    fourth = migrate_pipelines(spec, CP, journal, None, redis=runtime.redis, now=1003.0)
    assert fourth.done and fourth.problems == []
    [move], [crossing] = state.moves(), state.origin_changes()
    assert (move.source_from, move.gtid) == (BLUE, "0-1-100")
    assert (crossing.origin_from, crossing.origin_to, crossing.last_gtid, crossing.gtid) == ("1", "2", "0-1-100",
                                                                                            "0-2-101")
    assert fourth.downtime_ms == {"app": crossing.gap_ms}

    steps = journals.steps(runtime.store, claim.deployment_id, "cdc")
    assert [(s.name, s.status) for s in steps] == [("plan", "done"), ("stop", "done"), ("move", "done"),
                                                   ("resume", "done"), ("pipelines", "done")]
    resume = steps[3].detail
    assert resume["moved_from"] == BLUE and resume["down_ms"] == resume["gap_ms"] == crossing.gap_ms
    assert resume["source_gap_ms"] == move.gap_ms and resume["first_new_gtid"] == "0-2-101"
    # Invoked again (a redelivered task): the same answer, nothing journaled twice.
    again = migrate_pipelines(spec, CP, journal, None, redis=runtime.redis, now=1004.0)
    assert again.done and again.downtime_ms == fourth.downtime_ms
    assert len(journals.steps(runtime.store, claim.deployment_id, "cdc")) == len(steps)
    assert json.loads(runtime.redis.get(state_key(spec.name, CP.checkpoint_id)))["summarized"] is True


def test_binlog_pipeline_without_a_running_consumer_gives_up_at_its_timeout(runtime, unique_name):
    spec = cluster(unique_name("mignone"), BINLOG)
    runtime.routing.init(spec.name, "127.0.0.1", 13307)
    claim = claim_deployment(runtime, spec)
    progress = drive_cdc_phase(spec, CP, Journal(runtime.store, claim, "cdc"), runtime.redis, step_s=5)
    assert progress.done and progress.downtime_ms == {}
    [problem] = progress.problems
    assert problem.startswith("binlog pipeline app: move did not complete within its move_timeout_s") and \
        "a running consumer (bgqueue cdc run)" in problem


def test_routing_that_does_not_name_the_new_primary_is_a_problem_at_once(runtime, unique_name):
    spec = cluster(unique_name("migroute"), BINLOG)
    runtime.routing.init(spec.name, "127.0.0.1", 13306)  # still blue
    progress = migrate_pipelines(spec, CP, Journal(runtime.store, claim_deployment(runtime, spec), "cdc"), None,
                                 redis=runtime.redis, now=1000.0)
    assert progress.done and progress.problems == [
        f"routing names {BLUE} v1, not the new primary {GREEN}: the consumer follows routing and will not move"]


def test_each_pipeline_moves_on_its_own_and_problems_do_not_hold_the_others(runtime, unique_name):
    with FakeConnect("3.5.2") as old_connect, FakeConnect("3.7.0") as connect:
        for c in (old_connect, connect):
            c.add("orders-cdc", {"database.hostname": "127.0.0.1", "database.port": "13306"},
                  {"file": "binlog.000002", "pos": 5000, "gtids": "0-1-100"}, "orders")
        spec = cluster(unique_name("migmix"),
                       {"kind": "debezium", "name": "old", "connect_url": old_connect.url, "connector": "orders-cdc",
                        "topic_prefix": "orders"},
                       {"kind": "debezium", "name": "new", "connect_url": connect.url, "connector": "orders-cdc",
                        "topic_prefix": "orders"})
        claim = claim_deployment(runtime, spec)
        progress = drive_cdc_phase(spec, CP, Journal(runtime.store, claim, "cdc"), runtime.redis)
    assert list(progress.downtime_ms) == ["new"] and len(progress.problems) == 1 and "3.5.2" in progress.problems[0]
    summary = journals.steps(runtime.store, claim.deployment_id, "cdc")[-1]
    assert (summary.name, summary.status) == ("pipelines", "failed")
    assert summary.detail["downtime_ms"] == progress.downtime_ms and summary.detail["pipelines"] == 2


def test_a_cluster_without_pipelines_is_done_at_once(runtime, unique_name):
    spec = cluster(unique_name("mig0"))
    claim = claim_deployment(runtime, spec)
    progress = migrate_pipelines(spec, CP, Journal(runtime.store, claim, "cdc"), None, redis=runtime.redis)
    assert progress.done and progress.wait_s is None and progress.problems == []
    assert [s.name for s in journals.steps(runtime.store, claim.deployment_id, "cdc")] == ["plan", "pipelines"]
