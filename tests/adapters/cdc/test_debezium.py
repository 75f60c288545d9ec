"""The Debezium adapter against a local Kafka Connect REST server (tests/cdc/fake_connect.py),
driven through the CDC phase (migrate_pipelines) with a real store journal and a real Redis."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bgqueue.adapters.cdc.debezium import kafka_version
from bgqueue.adapters.cdc.migration import pipeline_health
from bgqueue.adapters.cdc.pipeline import Coordinates
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.journal import Journal
from bgqueue.model.fleet import ClusterSpec
from tests.adapters.cdc.fake_connect import FakeConnect
from tests.adapters.cdc.helpers import claim_deployment, drive_cdc_phase

CONNECTOR = "orders-cdc"
CONFIG = {"connector.class": "io.debezium.connector.mysql.MySqlConnector", "database.hostname": "10.0.0.1",
          "database.port": "3306", "database.user": "debezium", "database.password": "${file:/secrets/db:password}",
          "topic.prefix": "orders", "database.server.id": "184054"}
CP = Coordinates(checkpoint_id=7, kind="switchover", old_primary="10.0.0.1:3306", new_primary="10.0.0.2:3307",
                 old_gtid="0-1-100", old_binlog_file="binlog.000002", old_binlog_pos=5000, new_gtid="0-1-100",
                 new_binlog_file="binlog.000003", new_binlog_pos=1234)


def cluster(name: str, url: str) -> ClusterSpec:
    return ClusterSpec.model_validate({
        "name": name, "provider": "mysql", "blue": {"host": "10.0.0.1", "port": 3306},
        "green": {"host": "10.0.0.2", "port": 3307}, "admin": {"user": "a", "password_env": "A_PW"},
        "replication": {"user": "r", "password_env": "R_PW"},
        "pipelines": [{"kind": "debezium", "name": "dbz", "connect_url": url, "connector": CONNECTOR,
                       "topic_prefix": "orders", "move_timeout_s": 120}]})


@pytest.fixture
def phase(runtime, unique_name):
    """(spec factory, journal, steps reader) for one deployment of a fresh cluster name."""
    name = unique_name("dbz")

    def make(url: str):
        spec = cluster(name, url)
        claim = claim_deployment(runtime, spec)
        return spec, Journal(runtime.store, claim, "cdc"), lambda: [
            (s.name, s.status, s.detail) for s in journals.steps(runtime.store, claim.deployment_id, "cdc")]
    return make


def test_gtid_connector_is_stopped_moved_to_the_new_primary_and_resumed(phase, runtime):
    with FakeConnect("3.7.0") as connect:
        c = connect.add(CONNECTOR, CONFIG, {"file": "binlog.000002", "pos": 4100, "gtids": "0-1-97",
                                            "ts_sec": 1700000000, "server_id": 1}, "orders")
        spec, journal, steps = phase(connect.url)
        progress = drive_cdc_phase(spec, CP, journal, runtime.redis, now=1000.0)
        assert progress.done and progress.problems == [], progress
        # It keeps its GTID set (what it delivered); file/pos name the new primary at promotion.
        assert c.offsets == [{"partition": {"server": "orders"}, "offset": {
            "file": "binlog.000003", "pos": 1234, "gtids": "0-1-97", "ts_sec": 1700000000, "server_id": 1}}]
        assert c.config == {**CONFIG, "database.hostname": "10.0.0.2", "database.port": "3307"}
        assert c.state == "RUNNING" and c.tasks == ["RUNNING"]
        writes = [(m, p) for m, p in connect.calls() if m != "GET"]
        assert writes == [("PUT", f"/connectors/{CONNECTOR}/stop"), ("PATCH", f"/connectors/{CONNECTOR}/offsets"),
                          ("PUT", f"/connectors/{CONNECTOR}/config"), ("PUT", f"/connectors/{CONNECTOR}/resume")]
        assert connect.calls()[0] == ("GET", "/")  # the version is checked before anything is stopped
    recorded = steps()
    assert [(n, s) for n, s, _ in recorded] == [("plan", "done"), ("stop", "done"), ("move", "done"),
                                                ("resume", "done"), ("pipelines", "done")]
    resume = recorded[3][2]
    assert resume["pipeline"] == "dbz" and resume["down_measured_by"] == "phase"
    assert resume["down_ms"] == progress.downtime_ms["dbz"] == 3000.0  # stopped at t=1000, running at t=1003
    assert recorded[2][2]["repointed_from"] == "10.0.0.1:3306"


def test_connector_without_gtids_is_let_finish_the_old_primary_before_it_moves(phase, runtime):
    with FakeConnect("3.6.1") as connect:
        c = connect.add(CONNECTOR, CONFIG, {"file": "binlog.000002", "pos": 4100}, "orders")
        stops = []

        def on_stop(conn):  # the second time it stops it has read blue to its end
            stops.append(1)
            if len(stops) == 2:
                conn.offsets = [{"partition": {"server": "orders"}, "offset": {"file": "binlog.000002", "pos": 5000}}]
        c.on_stop = on_stop
        spec, journal, steps = phase(connect.url)
        progress = drive_cdc_phase(spec, CP, journal, runtime.redis)
        assert progress.done and progress.problems == [], progress
        assert c.offsets[0]["offset"] == {"file": "binlog.000003", "pos": 1234}
        writes = [p.rsplit("/", 1)[-1] for m, p in connect.calls() if m != "GET"]
        assert writes == ["stop", "resume", "stop", "offsets", "config", "resume"]
    assert steps()[1][2]["drains"] == 1


def test_connector_that_never_reaches_the_old_primary_end_is_not_moved(phase, runtime):
    with FakeConnect("3.6.1") as connect:
        c = connect.add(CONNECTOR, CONFIG, {"file": "binlog.000002", "pos": 4100}, "orders")
        spec, journal, steps = phase(connect.url)
        progress = drive_cdc_phase(spec, CP, journal, runtime.redis, step_s=5)
        assert progress.done and len(progress.problems) == 1
        assert "stopped at binlog.000002:4100, before the old primary's final position binlog.000002:5000" in \
            progress.problems[0]
        assert ("PATCH", f"/connectors/{CONNECTOR}/offsets") not in connect.calls()
        assert c.offsets[0]["offset"] == {"file": "binlog.000002", "pos": 4100}
    assert [(n, s) for n, s, _ in steps()][-2:] == [("stop", "failed"), ("pipelines", "failed")]


@pytest.mark.parametrize("version", ["3.5.1", "7.5.2-ccs", "2.8.0"])
def test_connect_without_the_offsets_api_is_refused_before_anything_stops(version, phase, runtime):
    with FakeConnect(version) as connect:
        c = connect.add(CONNECTOR, CONFIG, {"file": "binlog.000002", "pos": 4100, "gtids": "0-1-97"}, "orders")
        spec, journal, _ = phase(connect.url)
        progress = drive_cdc_phase(spec, CP, journal, runtime.redis)
        [problem] = progress.problems
        assert f"runs version {version}" in problem and "Kafka >= 3.6" in problem and "nothing was changed" in problem
        assert connect.calls() == [("GET", "/")] and c.state == "RUNNING"


def test_task_failing_after_resume_is_a_problem_with_its_trace(phase, runtime):
    with FakeConnect("3.7.0") as connect:
        c = connect.add(CONNECTOR, CONFIG, {"file": "binlog.000002", "pos": 4100, "gtids": "0-1-97"}, "orders")
        c.fail_on_resume = ("org.apache.kafka.connect.errors.ConnectException: Access denied for user 'debezium'\n"
                            "\tat io.debezium.connector.mysql.MySqlConnectorTask.start(MySqlConnectorTask.java:1)")
        spec, journal, _ = phase(connect.url)
        progress = drive_cdc_phase(spec, CP, journal, runtime.redis)
        assert progress.problems == ["connector orders-cdc: task 0 FAILED: org.apache.kafka.connect.errors."
                                     "ConnectException: Access denied for user 'debezium'"]
        [health] = pipeline_health(spec, runtime.redis)
        assert (health.kind, health.state, health.healthy) == ("debezium", "RUNNING", False)
        assert health.last_error.startswith("task 0 FAILED: org.apache.kafka.connect.errors.ConnectException")


def test_unknown_connector_and_unreachable_connect(phase, runtime):
    with FakeConnect("3.7.0") as connect:
        spec, journal, _ = phase(connect.url)
        progress = drive_cdc_phase(spec, CP, journal, runtime.redis)
        assert progress.problems == [f"Kafka Connect PUT /connectors/{CONNECTOR}/stop: HTTP 404: "
                                     f"Connector {CONNECTOR} not found"]
    # Nothing listens there any more: retried until move_timeout_s (120 s), then given up with the error.
    spec, journal, _ = phase(connect.url)
    progress = drive_cdc_phase(spec, replace(CP, checkpoint_id=8), journal, runtime.redis, step_s=30)
    [problem] = progress.problems
    assert "did not complete within its move_timeout_s" in problem and "Kafka Connect at http://127.0.0.1" in problem
    [health] = pipeline_health(spec, runtime.redis)
    assert health.state == "unknown" and not health.healthy


def test_kafka_versions():
    assert kafka_version("3.6.0") == (3, 6) and kafka_version("4.0.0") == (4, 0)
    assert kafka_version("7.6.1-ccs") == (3, 6) and kafka_version("8.0.0-ce") == (4, 0)
    assert kafka_version("") is None
