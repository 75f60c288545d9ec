"""The DMS adapter through the CDC phase: against moto in server mode for what moto implements
(tasks, endpoints, instances, CloudWatch), and botocore's Stubber for what it does not (moto
accepts CdcStartPosition without storing it, has no RecoveryCheckpoint and no modify_endpoint)."""
from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from bgqueue.adapters.cdc.dms import binlog_before, parse_recovery_checkpoint
from bgqueue.adapters.cdc.migration import pipeline_health
from bgqueue.adapters.cdc.pipeline import Coordinates
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.journal import Journal
from bgqueue.model.fleet import ClusterSpec
from bgqueue.sandbox import free_port
from tests.adapters.cdc.helpers import claim_deployment, drive_cdc_phase

REGION = "us-east-1"
CP = Coordinates(checkpoint_id=3, kind="switchover", old_primary="10.0.0.1:3306", new_primary="10.0.0.2:3307",
                 old_gtid="0-1-100", old_binlog_file="binlog.000002", old_binlog_pos=5000, new_gtid="0-1-100",
                 new_binlog_file="binlog.000003", new_binlog_pos=1234)
TASK_ARN = "arn:aws:dms:us-east-1:123456789012:task:ORDERSCDC"
SOURCE_ARN = "arn:aws:dms:us-east-1:123456789012:endpoint:SRC"
INSTANCE_ARN = "arn:aws:dms:us-east-1:123456789012:rep:RI1"


def cluster(name: str, task_arn: str, **pipeline) -> ClusterSpec:
    return ClusterSpec.model_validate({
        "name": name, "provider": "mysql", "blue": {"host": "10.0.0.1", "port": 3306},
        "green": {"host": "10.0.0.2", "port": 3307}, "admin": {"user": "a", "password_env": "A_PW"},
        "replication": {"user": "r", "password_env": "R_PW"},
        "pipelines": [{"kind": "dms", "name": "dms", "task_arn": task_arn, "region": REGION, **pipeline}]})


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def moto_clients(url: str):
    def aws(service: str, region):
        return boto3.client(service, region_name=region, endpoint_url=url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", config=Config(retries={"max_attempts": 0}))
    return aws


def moto_task(aws, name: str, migration_type: str = "cdc") -> str:
    """A replication instance, a MySQL source, a Kinesis target and a started task, in moto."""
    dms = aws("dms", REGION)
    ri = dms.create_replication_instance(ReplicationInstanceIdentifier=f"{name}-ri",
                                         ReplicationInstanceClass="dms.t3.micro")["ReplicationInstance"]
    src = dms.create_endpoint(EndpointIdentifier=f"{name}-src", EndpointType="source", EngineName="mysql",
                              ServerName="orders-writer.internal", Port=3306, Username="dms",
                              Password="not-a-real-secret")["Endpoint"]
    dst = dms.create_endpoint(EndpointIdentifier=f"{name}-dst", EndpointType="target", EngineName="kinesis",
                              KinesisSettings={"StreamArn": f"arn:aws:kinesis:{REGION}:123456789012:stream/{name}",
                                               "MessageFormat": "json",
                                               "ServiceAccessRoleArn": "arn:aws:iam::123456789012:role/dms"})["Endpoint"]
    task = dms.create_replication_task(ReplicationTaskIdentifier=name, SourceEndpointArn=src["EndpointArn"],
                                       TargetEndpointArn=dst["EndpointArn"], MigrationType=migration_type,
                                       ReplicationInstanceArn=ri["ReplicationInstanceArn"],
                                       TableMappings='{"rules": []}')["ReplicationTask"]
    dms.start_replication_task(ReplicationTaskArn=task["ReplicationTaskArn"],
                               StartReplicationTaskType="start-replication")
    return task["ReplicationTaskArn"]


def put_latency(aws, task_name: str, seconds: float) -> None:
    aws("cloudwatch", REGION).put_metric_data(Namespace="AWS/DMS", MetricData=[{
        "MetricName": "CDCLatencySource", "Value": seconds, "Timestamp": dt.datetime.now(dt.UTC),
        "Dimensions": [{"Name": "ReplicationInstanceIdentifier", "Value": f"{task_name}-ri"},
                       {"Name": "ReplicationTaskIdentifier", "Value": task_name}]}])


def test_task_is_stopped_and_restarted_from_the_new_primary_position_in_moto(moto_url, runtime, unique_name):
    aws = moto_clients(moto_url)
    name = unique_name("dms")
    arn = moto_task(aws, name)
    put_latency(aws, name, 2.5)
    # The endpoint names a DNS record that follows the writer: nothing to re-point (moto has no modify_endpoint).
    spec = cluster(name, arn, repoint_endpoint=False)
    claim = claim_deployment(runtime, spec)
    progress = drive_cdc_phase(spec, CP, Journal(runtime.store, claim, "cdc"), runtime.redis, step_s=5, aws=aws)
    assert progress.done and progress.problems == [], progress
    steps = {s.name: s for s in journals.steps(runtime.store, claim.deployment_id, "cdc")}
    assert steps["stop"].detail["task_status"] == "stopped"
    assert steps["stop"].detail["drained"] is None  # moto keeps no RecoveryCheckpoint: nothing to verify
    assert steps["move"].detail == {"pipeline": "dms", "kind": "dms", "repointed": False}
    resume = steps["resume"].detail
    assert resume["task_status"] == "running" and resume["cdc_start_position"] == "binlog.000003:1234"
    assert resume["cdc_latency_s"] == 2.5 and resume["down_ms"] == progress.downtime_ms["dms"] == 5000.0  # stop at t, running at t+5
    task = aws("dms", REGION).describe_replication_tasks()["ReplicationTasks"]
    assert [t["Status"] for t in task if t["ReplicationTaskArn"] == arn] == ["running"]

    [health] = pipeline_health(spec, runtime.redis, aws=aws)
    assert (health.state, health.healthy, health.lag_s) == ("running", True, 2.5)
    put_latency(aws, name, 600.0)
    [health] = pipeline_health(spec, runtime.redis, aws=aws)
    assert (health.healthy, health.lag_s) == (False, 600.0)


def test_full_load_and_cdc_task_is_refused_and_left_running_in_moto(moto_url, runtime, unique_name):
    aws = moto_clients(moto_url)
    name = unique_name("dmsfl")
    arn = moto_task(aws, name, migration_type="full-load-and-cdc")
    spec = cluster(name, arn)
    progress = drive_cdc_phase(spec, CP, Journal(runtime.store, claim_deployment(runtime, spec), "cdc"),
                               runtime.redis, aws=aws)
    [problem] = progress.problems
    assert "is full-load-and-cdc" in problem and "reload the target" in problem
    tasks = aws("dms", REGION).describe_replication_tasks()["ReplicationTasks"]
    assert [t["Status"] for t in tasks if t["ReplicationTaskArn"] == arn] == ["running"]


def _task(status: str, checkpoint: str | None = None, failure: str | None = None) -> dict:
    task = {"ReplicationTaskArn": TASK_ARN, "ReplicationTaskIdentifier": "orders-cdc", "Status": status,
            "MigrationType": "cdc", "SourceEndpointArn": SOURCE_ARN, "ReplicationInstanceArn": INSTANCE_ARN}
    if checkpoint:
        task["RecoveryCheckpoint"] = checkpoint
    if failure:
        task["LastFailureMessage"] = failure
    return {"ReplicationTasks": [task]}


def _checkpoint(file: str, pos: int) -> str:
    return f"checkpoint:V1#27#{file}:{pos}:-1:2002:677883278264080:{file}:{pos - 99}#0#0#*#0#93"


class Stubbed:
    """One stubbed DMS client and one stubbed CloudWatch client, returned for every call of aws()."""

    def __init__(self):
        self.clients = {s: boto3.client(s, region_name=REGION, aws_access_key_id="testing",
                                        aws_secret_access_key="testing") for s in ("dms", "cloudwatch")}
        self.stubs = {s: Stubber(c) for s, c in self.clients.items()}
        self.dms = self.stubs["dms"]

    def __call__(self, service: str, region):
        return self.clients[service]

    def describe(self, *args, **kwargs) -> None:
        self.dms.add_response("describe_replication_tasks", _task(*args, **kwargs),
                              {"Filters": [{"Name": "replication-task-arn", "Values": [TASK_ARN]}]})

    def __enter__(self):
        for s in self.stubs.values():
            s.activate()
        return self

    def __exit__(self, *exc):
        for s in self.stubs.values():
            s.deactivate()


def test_stubbed_task_drains_the_old_primary_is_repointed_and_starts_at_the_promotion_position(
        runtime, unique_name):
    spec = cluster(unique_name("dmsstub"), TASK_ARN)
    claim = claim_deployment(runtime, spec)
    with Stubbed() as aws:
        d = aws.dms
        aws.describe("running")
        d.add_response("stop_replication_task", {}, {"ReplicationTaskArn": TASK_ARN})
        aws.describe("stopping")
        # Stopped short of blue's final position (binlog.000002:5000): resumed on blue to read the rest.
        aws.describe("stopped", _checkpoint("binlog.000002", 4100))
        d.add_response("start_replication_task", {}, {"ReplicationTaskArn": TASK_ARN,
                                                      "StartReplicationTaskType": "resume-processing"})
        aws.describe("starting")
        aws.describe("running")
        d.add_response("stop_replication_task", {}, {"ReplicationTaskArn": TASK_ARN})
        aws.describe("stopped", _checkpoint("binlog.000002", 5000))
        # move: the source endpoint is re-pointed at the new primary.
        aws.describe("stopped", _checkpoint("binlog.000002", 5000))
        d.add_response("describe_endpoints", {"Endpoints": [{"EndpointArn": SOURCE_ARN, "ServerName": "10.0.0.1",
                                                             "Port": 3306}]},
                       {"Filters": [{"Name": "endpoint-arn", "Values": [SOURCE_ARN]}]})
        d.add_response("modify_endpoint", {}, {"EndpointArn": SOURCE_ARN, "ServerName": "10.0.0.2", "Port": 3307})
        # resume: from green's binlog coordinates at promotion.
        d.add_response("start_replication_task", {}, {"ReplicationTaskArn": TASK_ARN,
                                                      "StartReplicationTaskType": "start-replication",
                                                      "CdcStartPosition": "binlog.000003:1234"})
        aws.describe("running")
        d.add_response("describe_replication_instances", {"ReplicationInstances": [
            {"ReplicationInstanceIdentifier": "ri1", "ReplicationInstanceArn": INSTANCE_ARN}]},
            {"Filters": [{"Name": "replication-instance-arn", "Values": [INSTANCE_ARN]}]})
        aws.stubs["cloudwatch"].add_response("get_metric_statistics", {"Datapoints": [
            {"Timestamp": dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC), "Maximum": 9.0},
            {"Timestamp": dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC), "Maximum": 1.5}]})
        progress = drive_cdc_phase(spec, CP, Journal(runtime.store, claim, "cdc"), runtime.redis, step_s=8, aws=aws)
        d.assert_no_pending_responses()
    assert progress.done and progress.problems == [], progress
    steps = {s.name: s.detail for s in journals.steps(runtime.store, claim.deployment_id, "cdc")}
    assert steps["stop"]["drained"] is True and steps["stop"]["drains"] == 1
    assert steps["move"]["from"] == "10.0.0.1:3306" and steps["move"]["to"] == "10.0.0.2:3307"
    assert steps["resume"]["cdc_latency_s"] == 1.5  # the latest datapoint


def test_stubbed_task_failing_on_the_new_primary_is_a_problem(runtime, unique_name):
    spec = cluster(unique_name("dmsfail"), TASK_ARN, repoint_endpoint=False)
    claim = claim_deployment(runtime, spec)
    with Stubbed() as aws:
        aws.describe("stopped", _checkpoint("binlog.000002", 5000))
        aws.dms.add_response("start_replication_task", {}, {
            "ReplicationTaskArn": TASK_ARN, "StartReplicationTaskType": "start-replication",
            "CdcStartPosition": "binlog.000003:1234"})
        aws.describe("starting")
        aws.describe("failed", failure="Error reading binary log: could not find first log file name in binary log")
        progress = drive_cdc_phase(spec, CP, Journal(runtime.store, claim, "cdc"), runtime.redis, aws=aws)
        aws.dms.assert_no_pending_responses()
    assert progress.problems == [f"DMS task {TASK_ARN} is failed: Error reading binary log: could not find first "
                                 f"log file name in binary log"]


def test_recovery_checkpoints_and_binlog_order():
    assert parse_recovery_checkpoint(_checkpoint("mysql-bin-changelog.157832", 1975)) == \
        ("mysql-bin-changelog.157832", 1975)
    assert parse_recovery_checkpoint(None) is None and parse_recovery_checkpoint("2024-01-01T00:00:00") is None
    assert binlog_before(("binlog.000009", 900), ("binlog.000010", 4))
    assert not binlog_before(("binlog.000010", 4), ("binlog.000009", 900))
    assert binlog_before(("binlog.000010", 4), ("binlog.000010", 5))
    assert not binlog_before(("binlog.000010", 5), ("binlog.000010", 5))
