"""Read replicas across the switchover: the new primary's replicas exist, replicate from it and keep
the original names; the old ones are reported and deleted at decommission. moto does not give green
replicas of its own (nor move them at the switchover), so RDS's answer is served by Stubber, and
moto shows the finding a switchover that left the replicas behind must produce."""
from __future__ import annotations

from contextlib import contextmanager

import boto3
from botocore.stub import Stubber
from sqlalchemy import update

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store.models import Deployment
from bgqueue.engine.rds import decommission, replicas
from bgqueue.model.phases import Phase
from tests.engine.rds.helpers import (
    ACCOUNT,
    REGION,
    LagFeeder,
    cluster_entry,
    instance,
    new_deployment,
    parameter_group,
    unique,
    write_fleet,
)


def arn(name: str) -> str:
    return f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{name}"


def db(name: str, *, source: str | None = None, replicas_: list[str] = (), status: str = "available",
       replication: str | None = "replicating", normal: bool = True) -> dict:
    d = {"DBInstanceIdentifier": name, "DBInstanceArn": arn(name), "DBInstanceStatus": status, "Engine": "mysql",
         "EngineVersion": "8.0.36", "ReadReplicaDBInstanceIdentifiers": list(replicas_)}
    if source:
        d["ReadReplicaSourceDBInstanceIdentifier"] = source
    if replication:
        d["StatusInfos"] = [{"StatusType": "read replication", "Normal": normal, "Status": replication}]
    return d


def switched(name: str, reps: list[str]) -> dict:
    """A SWITCHOVER_COMPLETED description as RDS gives it: one member detail per instance, replicas too."""
    members = [name, *reps]
    return {"BlueGreenDeploymentIdentifier": "bgd-x", "Status": "SWITCHOVER_COMPLETED", "Source": arn(f"{name}-old1"),
            "Target": arn(name), "SwitchoverDetails": [
                {"SourceMember": arn(f"{m}-old1"), "TargetMember": arn(m), "Status": "SWITCHOVER_COMPLETED"}
                for m in members]}


@contextmanager
def stubbed_rds():
    client = boto3.client("rds", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub, aws.installed("rds", REGION, client):
        yield stub
        stub.assert_no_pending_responses()


def _expect_one_describe(stub, name: str, reps: list[str], answer: list[dict]) -> None:
    ids = [name, *reps, *(f"{r}-old1" for r in reps)]
    stub.add_response("describe_db_instances", {"DBInstances": answer},
                      {"Filters": [{"Name": "db-instance-id", "Values": ids}]})


def test_the_new_primarys_replicas_replicate_under_their_original_names_and_the_old_ones_are_listed():
    name, reps = "orders", ["orders-r1", "orders-r2"]
    with stubbed_rds() as stub:
        _expect_one_describe(stub, name, reps, [
            db(name, replicas_=reps), db("orders-r1", source=name), db("orders-r2", source=name),
            db("orders-old1", replicas_=["orders-r1-old1", "orders-r2-old1"]),
            db("orders-r1-old1", source="orders-old1"), db("orders-r2-old1", source="orders-old1")])
        found = replicas.verify(REGION, name, reps, switched(name, reps))
    assert found["problems"] == []
    assert [(r["identifier"], r["source"], r["replication"]) for r in found["new"]] == [
        ("orders-r1", name, "replicating"), ("orders-r2", name, "replicating")]
    assert found["old"] == [{"identifier": "orders-r1-old1", "replaced_by": "orders-r1", "exists": True},
                            {"identifier": "orders-r2-old1", "replaced_by": "orders-r2", "exists": True}]


def test_a_missing_a_broken_and_a_strange_replica_are_each_named():
    name, reps = "ledger", ["ledger-r1", "ledger-r2", "ledger-r3"]
    with stubbed_rds() as stub:
        _expect_one_describe(stub, name, reps, [
            db(name, replicas_=["ledger-r1", "ledger-r3", "ledger-r1-green-abc"]),
            db("ledger-r1", source=name, replication="error", normal=False),
            db("ledger-r3", source="ledger-old1", status="modifying")])
        found = replicas.verify(REGION, name, reps, switched(name, reps))
    p = found["problems"]
    assert "the new primary ledger does not list its replicas ledger-r2" in p[0]
    assert "lists replicas that blue did not have: ledger-r1-green-abc" in p[1]
    assert "replica ledger-r1: read replication is error" in p
    assert "replica ledger-r2 does not exist after the switchover" in p
    assert "replica ledger-r3 replicates from ledger-old1, not from the new primary ledger" in p
    assert "replica ledger-r3 is 'modifying', not 'available'" in p
    assert [o["exists"] for o in found["old"]] == [False, False, False]


def test_a_switchover_that_left_a_replica_behind_completes_with_the_finding(rds, moto_url, tmp_path, run_batch,
                                                                            runtime):
    name = unique("withreplica")
    parameter_group(rds, f"{name}-pg")
    instance(rds, name, pg=f"{name}-pg")
    rds.create_db_instance_read_replica(DBInstanceIdentifier=f"{name}-r1", SourceDBInstanceIdentifier=name)
    path = write_fleet(tmp_path / "fleet.yaml", [cluster_entry(name, instance=name,
                                                               change={"instance_class": "db.r6g.xlarge"})])
    with LagFeeder(moto_url):
        _, [dep] = run_batch(path, timeout=90)
    # moto keeps the replica on the old primary and gives the new one none: exactly what must not pass silently.
    assert dep.phase == Phase.COMPLETED and dep.reason, (dep.phase, dep.reason)
    assert f"read replicas: the new primary {name} does not list its replicas {name}-r1" in dep.reason
    [step] = [s for s in journal.steps(runtime.store, dep.id, "switchover") if s.name == "replicas"]
    assert step.status == "failed" and step.detail["new"][0]["identifier"] == f"{name}-r1"
    assert dep.facts["source"]["replicas"] == [f"{name}-r1"]
    assert len(dep.facts["cost"]["instances"]) == 2  # green's replica is priced with green


def test_decommission_deletes_the_old_replicas_before_the_old_primary(rds, aws_env, runtime):
    name = unique("oldreps")
    parameter_group(rds, f"{name}-pg")
    instance(rds, f"{name}-old1", pg=f"{name}-pg")
    rds.create_db_instance_read_replica(DBInstanceIdentifier=f"{name}-r1-old1", SourceDBInstanceIdentifier=f"{name}-old1")
    dep_id = new_deployment(runtime, cluster_entry(name, instance=name))
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(facts={
            "blue_green": {"id": "bgd-gone0000000000"},
            "old": {"kind": "instance", "identifier": f"{name}-old1", "replicas": [f"{name}-r1-old1", f"{name}-r2-old1"]}}))
    msg, detail = decommission.decommission(runtime, deps.get_deployment(runtime.store, dep_id))
    assert detail["old_replicas"] == [f"{name}-r1-old1"]  # r2-old1 was already gone
    assert f"old read replicas {name}-r1-old1 deleted" in msg
    ids = {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}
    assert not {f"{name}-old1", f"{name}-r1-old1"} & ids
