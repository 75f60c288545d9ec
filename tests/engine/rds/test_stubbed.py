"""What moto does not model, with botocore's Stubber in this process (domain-level calls of the steps):
the binlog-coordinates event, SWITCHOVER_FAILED, provisioning that never ends, guardrail refusals,
INVALID_CONFIGURATION and failed provisioning, a cross-Region replica. A Stubber fails the test on
any call it was not told about, so "nothing was deleted / created" is checked by construction."""
from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.engine import lifecycle
from bgqueue.engine.rds import switchover
from bgqueue.engine.rds.preflight import check_rds_cluster
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.phases import Phase
from tests.engine.rds.helpers import ACCOUNT, REGION, cluster_entry, move, new_deployment, unique

BG = "bgd-stubbed0000000001"


def arn(name: str) -> str:
    return f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{name}"


@contextmanager
def stubbed():
    """The process's rds client replaced by a stubbed one for the duration."""
    client = boto3.client("rds", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub, aws.installed("rds", REGION, client):
        yield stub
        stub.assert_no_pending_responses()


def bg(status: str, name: str, *, member: str | None = None, tasks: str = "COMPLETED", details: str | None = None,
       switched: bool = False) -> dict:
    source, target = (arn(f"{name}-old1"), arn(name)) if switched else (arn(name), arn(f"{name}-green-abcdef"))
    d = {"BlueGreenDeploymentIdentifier": BG, "BlueGreenDeploymentName": f"bgq-{name}", "Source": source,
         "Target": target, "Status": status,
         "SwitchoverDetails": [{"SourceMember": source, "TargetMember": target, "Status": member or status}],
         "Tasks": [{"Name": "CREATING_READ_REPLICA_OF_SOURCE", "Status": tasks}]}
    if details:
        d["StatusDetails"] = details
    return {"BlueGreenDeployments": [d]}


def one(described: dict) -> dict:
    """A describe answer as the single-deployment answer of switchover/create/delete."""
    return {"BlueGreenDeployment": described["BlueGreenDeployments"][0]}


def db(name: str, **extra) -> dict:
    return {"DBInstances": [{"DBInstanceIdentifier": name, "DBInstanceArn": arn(name), "Engine": "mysql",
                             "EngineVersion": "8.0.35", "DBInstanceStatus": "available",
                             "DBInstanceClass": "db.r6g.large", "AllocatedStorage": 100, "StorageType": "gp3",
                             "MultiAZ": False, "Endpoint": {"Address": f"{name}.x.rds.amazonaws.com", "Port": 3306},
                             "DBParameterGroups": [{"DBParameterGroupName": "pg", "ParameterApplyStatus": "in-sync"}],
                             "ReadReplicaDBInstanceIdentifiers": [], **extra}]}


def deployment(runtime, phase: Phase, *, thresholds: dict | None = None, facts: dict | None = None,
               name: str | None = None, **entry):
    """A deployment of a fresh cluster name, walked to ``phase`` with the facts prepare would have left."""
    name = name or unique("stub")
    dep_id = new_deployment(runtime, cluster_entry(name, instance=name, **entry), **(thresholds or {}))
    path = [Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, Phase.READY, Phase.SWITCHING]
    walk = path[:path.index(phase) + 1] if phase in path else []
    fields = {"facts": {"blue_green": {"id": BG}, **(facts or {})}}
    if phase == Phase.SYNCING:
        fields["phase_deadline"] = dt.datetime.now(dt.UTC) + dt.timedelta(
            seconds=(thresholds or {}).get("sync_timeout_s", 30))
    if phase == Phase.SWITCHING:
        now = dt.datetime.now(dt.UTC)
        fields.update(switch_started_at=now, phase_deadline=now + dt.timedelta(seconds=180))
    if walk:
        move(runtime, dep_id, *walk, **fields)
    return name, dep_id


def dep(runtime, dep_id):
    return deps.get_deployment(runtime.store, dep_id)


def test_provisioning_that_never_ends_is_a_no_go_at_the_deadline_and_green_is_deleted(runtime):
    # A deadline a loaded machine cannot pass before the first poll (2 s), then waited out.
    name, dep_id = deployment(runtime, Phase.SYNCING, thresholds={"sync_timeout_s": 2.0, "sync_poll_s": 0.2})
    with stubbed() as stub:
        stub.add_response("describe_blue_green_deployments", bg("PROVISIONING", name), {"BlueGreenDeploymentIdentifier": BG})
        nxt = lifecycle.wait_for_sync(runtime, dep_id)
        assert nxt.wait_s == 0.2 and nxt.detail == "PROVISIONING" and dep(runtime, dep_id).phase == Phase.SYNCING
        time.sleep(2.05)
        stub.add_response("describe_blue_green_deployments", bg("PROVISIONING", name), {"BlueGreenDeploymentIdentifier": BG})
        # lifecycle.end(NO_GO) → on_no_go: look, then delete with its target (nothing was switched).
        stub.add_response("describe_blue_green_deployments", bg("PROVISIONING", name), {"BlueGreenDeploymentIdentifier": BG})
        stub.add_response("delete_blue_green_deployment", {}, {"BlueGreenDeploymentIdentifier": BG, "DeleteTarget": True})
        assert lifecycle.wait_for_sync(runtime, dep_id).wait_s is None
    d = dep(runtime, dep_id)
    assert d.phase == Phase.NO_GO and d.reason == f"blue/green deployment {BG} still PROVISIONING after 2s"
    [cleanup] = journal.steps(runtime.store, dep_id, "cleanup")
    assert cleanup.status == "done" and cleanup.detail["delete_target"] is True


@pytest.mark.parametrize("description, reason", [
    (dict(status="INVALID_CONFIGURATION", details="Replication from blue to green is broken"),
     "RDS reports INVALID_CONFIGURATION for {BG}: Replication from blue to green is broken"),
    (dict(status="PROVISIONING", tasks="FAILED", details="Insufficient capacity"),
     "blue/green deployment {BG}: provisioning failed (tasks CREATING_READ_REPLICA_OF_SOURCE): Insufficient capacity"),
    (dict(status="AVAILABLE", member="MISSING_TARGET"), "blue/green deployment {BG}: members missing: "),
])
def test_a_broken_green_environment_is_a_clear_no_go_and_is_deleted(runtime, description, reason):
    name, dep_id = deployment(runtime, Phase.SYNCING)
    status = description.pop("status")
    with stubbed() as stub:
        stub.add_response("describe_blue_green_deployments", bg(status, name, **description),
                          {"BlueGreenDeploymentIdentifier": BG})
        stub.add_response("describe_blue_green_deployments", bg(status, name, **description),
                          {"BlueGreenDeploymentIdentifier": BG})
        stub.add_response("delete_blue_green_deployment", {}, {"BlueGreenDeploymentIdentifier": BG, "DeleteTarget": True})
        lifecycle.wait_for_sync(runtime, dep_id)
    d = dep(runtime, dep_id)
    assert d.phase == Phase.NO_GO and d.reason.startswith(reason.format(BG=BG)), d.reason


def test_creation_refused_by_rds_is_a_no_go_with_its_reason_and_nothing_to_delete(runtime):
    name, dep_id = deployment(runtime, Phase.PENDING, change={"engine_version": "8.0.36"})
    with stubbed() as stub:
        stub.add_response("describe_db_instances", db(name), {"DBInstanceIdentifier": name})
        stub.add_response("describe_db_proxies", {"DBProxies": []}, {})
        stub.add_response("describe_blue_green_deployments", {"BlueGreenDeployments": []},
                          {"Filters": [{"Name": "source", "Values": [arn(name)]}]})
        stub.add_client_error("create_blue_green_deployment", "SourceDatabaseNotSupportedFault",
                              "The source DB instance isn't supported for a blue/green deployment.",
                              expected_params={"BlueGreenDeploymentName": ANY, "Source": arn(name),
                                               "TargetEngineVersion": "8.0.36", "Tags": ANY})
        lifecycle.prepare(runtime, dep_id)
    d = dep(runtime, dep_id)
    assert d.phase == Phase.NO_GO
    assert d.reason == (f"RDS refused to create a blue/green deployment for {name}: SourceDatabaseNotSupportedFault: "
                        "The source DB instance isn't supported for a blue/green deployment.")
    assert "blue_green" not in d.facts and journal.steps(runtime.store, dep_id, "cleanup") == []


def test_a_guardrail_refusing_the_switchover_leaves_blue_primary(runtime):
    name, dep_id = deployment(runtime, Phase.READY, thresholds={"catchup_timeout_s": 0.1})
    with stubbed() as stub:
        stub.add_client_error("switchover_blue_green_deployment", "InvalidBlueGreenDeploymentStateFault",
                              "Switchover guardrail: replica lag on the green environment is too high.",
                              expected_params={"BlueGreenDeploymentIdentifier": BG, "SwitchoverTimeout": 30})
        lifecycle.switch(runtime, dep_id)
    d = dep(runtime, dep_id)
    assert d.phase == Phase.SWITCHOVER_FAILED and d.switch_started_at is not None
    assert d.reason == ("RDS refused the switchover: InvalidBlueGreenDeploymentStateFault: Switchover guardrail: "
                        "replica lag on the green environment is too high.; blue is still the primary")
    assert [(s.name, s.status) for s in journal.steps(runtime.store, dep_id, "switchover")] == [("request", "failed")]


def test_switchover_failed_reported_by_rds_ends_switchover_failed_and_keeps_green(runtime):
    name, dep_id = deployment(runtime, Phase.READY)
    with stubbed() as stub:
        stub.add_response("switchover_blue_green_deployment", one(bg("SWITCHOVER_IN_PROGRESS", name)),
                          {"BlueGreenDeploymentIdentifier": BG, "SwitchoverTimeout": 60})
        assert lifecycle.switch(runtime, dep_id).wait_s == 0.2
        assert dep(runtime, dep_id).phase == Phase.SWITCHING and dep(runtime, dep_id).facts["switchover"]["requested_at"]
        stub.add_response("describe_blue_green_deployments", bg("SWITCHOVER_IN_PROGRESS", name),
                          {"BlueGreenDeploymentIdentifier": BG})
        assert lifecycle.switch(runtime, dep_id).detail == "SWITCHOVER_IN_PROGRESS"
        stub.add_response("describe_blue_green_deployments",
                          bg("SWITCHOVER_FAILED", name, details="Switchover timed out after 60 seconds; rolled back"),
                          {"BlueGreenDeploymentIdentifier": BG})
        assert lifecycle.switch(runtime, dep_id).wait_s is None
    d = dep(runtime, dep_id)
    assert d.phase == Phase.SWITCHOVER_FAILED
    assert d.reason.startswith(f"RDS reports SWITCHOVER_FAILED for {BG}: Switchover timed out after 60 seconds; "
                               "rolled back; blue is still the primary")
    assert journal.steps(runtime.store, dep_id, "cleanup") == [] and runtime.locks.holder(name) is None


def test_the_binlog_coordinates_event_becomes_the_switchover_checkpoint(runtime):
    name = unique("coords")
    source = {"identifier": name, "endpoint": f"{name}.c0ffee.{REGION}.rds.amazonaws.com", "port": 3306}
    name, dep_id = deployment(runtime, Phase.SWITCHING, name=name, facts={
        "source": source, "switchover": {"requested_at": "x", "timeout_s": 60}})
    event = {"SourceIdentifier": BG, "SourceType": "blue-green-deployment", "Date": dt.datetime.now(dt.UTC),
             "Message": "Binary log coordinates in green environment after switchover: file "
                        "mysql-bin-changelog.000042 and position 1234"}
    with stubbed() as stub:
        stub.add_response("describe_blue_green_deployments", bg("SWITCHOVER_COMPLETED", name, switched=True),
                          {"BlueGreenDeploymentIdentifier": BG})
        stub.add_response("describe_events", {"Events": [event]},
                          {"SourceType": "blue-green-deployment", "SourceIdentifier": BG, "StartTime": ANY})
        assert lifecycle.switch(runtime, dep_id).wait_s is None
    d = dep(runtime, dep_id)
    assert d.phase == Phase.CDC_MIGRATING and d.switch_duration_ms > 0 and d.switch_ended_at is not None
    cp = journal.latest_checkpoint(runtime.store, dep_id, "switchover")
    assert (cp.old_primary, cp.new_primary, cp.new_binlog_file, cp.new_binlog_pos) == \
        (f"{name}-old1.c0ffee.{REGION}.rds.amazonaws.com:3306", f"{name}.c0ffee.{REGION}.rds.amazonaws.com:3306",
         "mysql-bin-changelog.000042", 1234)
    assert d.facts["old"] == {"kind": "instance", "identifier": f"{name}-old1", "arn": arn(f"{name}-old1")}


def test_pipelines_wait_for_the_binlog_event_then_fail_clearly_without_it(runtime, monkeypatch):
    pipelines = [{"kind": "dms", "name": "orders-cdc", "task_arn": f"arn:aws:dms:{REGION}:{ACCOUNT}:task:ORDERS"}]
    name, dep_id = deployment(runtime, Phase.SWITCHING, pipelines=pipelines,
                              facts={"switchover": {"requested_at": "x", "timeout_s": 60}})
    with stubbed() as stub:
        for _ in range(2):
            stub.add_response("describe_blue_green_deployments", bg("SWITCHOVER_COMPLETED", name, switched=True),
                              {"BlueGreenDeploymentIdentifier": BG})
            stub.add_response("describe_events", {"Events": []}, {"SourceType": "blue-green-deployment",
                                                                  "SourceIdentifier": BG, "StartTime": ANY})
            stub.add_response("describe_events", {"Events": []}, {"SourceType": "db-instance",
                                                                  "SourceIdentifier": name, "StartTime": ANY})
            if _ == 0:
                nxt = lifecycle.switch(runtime, dep_id)
                assert nxt.detail == "waiting for the binlog coordinates event"
                assert dep(runtime, dep_id).phase == Phase.SWITCHING
                monkeypatch.setattr(switchover, "EVENT_WAIT_S", 0)
        lifecycle.switch(runtime, dep_id)
    d = dep(runtime, dep_id)
    assert d.phase == Phase.FAILED and "no binlog coordinates event within 0s" in d.reason
    assert journal.latest_checkpoint(runtime.store, dep_id, "switchover") is None


def test_a_switchover_whose_request_was_lost_in_a_crash_is_requested_on_resume(runtime):
    name, dep_id = deployment(runtime, Phase.SWITCHING, facts={"switchover": {"timeout_s": 300}})
    with stubbed() as stub:
        stub.add_response("describe_blue_green_deployments", bg("AVAILABLE", name), {"BlueGreenDeploymentIdentifier": BG})
        stub.add_response("switchover_blue_green_deployment", one(bg("SWITCHOVER_IN_PROGRESS", name)),
                          {"BlueGreenDeploymentIdentifier": BG, "SwitchoverTimeout": 300})
        assert lifecycle.switch(runtime, dep_id).detail == "switchover requested"
        stub.add_response("describe_blue_green_deployments", bg("AVAILABLE", name), {"BlueGreenDeploymentIdentifier": BG})
        assert lifecycle.switch(runtime, dep_id).detail == "AVAILABLE"  # requested once: now it only looks
    assert dep(runtime, dep_id).phase == Phase.SWITCHING


def test_a_cross_region_read_replica_is_listed_before_anything_is_created():
    name = unique("xregion")
    replica = f"arn:aws:rds:eu-west-1:{ACCOUNT}:db:{name}-eu"
    with stubbed() as stub:
        stub.add_response("describe_db_instances", db(name, ReadReplicaDBInstanceIdentifiers=[replica, f"{name}-r1"]),
                          {"DBInstanceIdentifier": name})
        stub.add_response("describe_db_instances", db(f"{name}-r1"),
                          {"Filters": [{"Name": "db-instance-id", "Values": [f"{name}-r1"]}]})
        stub.add_response("describe_db_proxies", {"DBProxies": []}, {})
        result = check_rds_cluster(cluster_spec(cluster_entry(name, instance=name)))
    assert result.problems == [("db_instance_identifier",
                                f"instance {name} has cross-Region read replicas, which blue/green deployments do "
                                f"not support: {replica} (handle them outside blue/green)")]


def test_a_create_whose_outcome_is_unknown_is_retried_and_finds_the_one_it_made(runtime):
    name, dep_id = deployment(runtime, Phase.PENDING)
    made = bg("PROVISIONING", name)["BlueGreenDeployments"][0]
    made["TagList"] = [{"Key": "bgqueue:deployment", "Value": dep_id}]
    source_filter = {"Filters": [{"Name": "source", "Values": [arn(name)]}]}
    with stubbed() as stub:
        stub.add_response("describe_db_instances", db(name), {"DBInstanceIdentifier": name})
        stub.add_response("describe_db_proxies", {"DBProxies": []}, {})
        stub.add_response("describe_blue_green_deployments", {"BlueGreenDeployments": []}, source_filter)
        stub.add_client_error("create_blue_green_deployment", "InternalFailure", "try again", http_status_code=500)
        nxt = lifecycle.prepare(runtime, dep_id)
        assert nxt.wait_s == 0.2 and "InternalFailure" in nxt.detail and dep(runtime, dep_id).phase == Phase.PREPARING
        stub.add_response("describe_db_instances", db(name), {"DBInstanceIdentifier": name})
        stub.add_response("describe_blue_green_deployments", {"BlueGreenDeployments": [made]}, source_filter)
        assert lifecycle.prepare(runtime, dep_id).wait_s is None  # (proxies: cached for a minute)
    d = dep(runtime, dep_id)
    assert d.phase == Phase.SYNCING and (d.facts["blue_green"]["id"], d.facts["blue_green"]["how"]) == (BG, "resumed")
