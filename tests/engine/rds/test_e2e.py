"""End to end on moto (server mode): real Celery worker processes run batches of RDS instances and
Aurora clusters through the whole chain — prepare, sync, the validation chord, the switchover,
CDC, the monitoring window — to COMPLETED, or to NO_GO with the green environment removed."""
from __future__ import annotations

import json

import pytest

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal, validation
from bgqueue.engine import retention
from bgqueue.model.errors import BadInput
from bgqueue.model.phases import Phase
from tests.engine.rds.helpers import (
    LagFeeder,
    aurora,
    blue_green_of,
    cluster_entry,
    instance,
    moto_client,
    parameter_group,
    unique,
    write_fleet,
)


def test_an_instance_and_an_aurora_cluster_switch_to_completed(rds, moto_url, tmp_path, run_batch, runtime):
    ssm, cw = moto_client("ssm", moto_url), moto_client("cloudwatch", moto_url)
    inst, aur = unique("billing"), unique("ledger")
    parameter_group(rds, f"{inst}-80", sql_mode="STRICT_TRANS_TABLES")
    parameter_group(rds, f"{inst}-80b", sql_mode="STRICT_TRANS_TABLES", max_connections=500)
    instance(rds, inst, pg=f"{inst}-80")
    parameter_group(rds, f"{aur}-c", family="aurora-mysql8.0", cluster=True, time_zone="UTC")
    parameter_group(rds, f"{aur}-i", family="aurora-mysql8.0")
    aurora(rds, aur, cpg=f"{aur}-c", pg=f"{aur}-i")
    ssm.put_parameter(Name=f"/{inst}/db", Type="SecureString",
                      Value=json.dumps({"host": "before", "port": 3306, "user": "app", "password": "kept-as-is"}))
    cw.put_metric_alarm(AlarmName=f"{inst}-cpu", MetricName="CPUUtilization", Namespace="AWS/RDS", Statistic="Average",
                        Period=60, EvaluationPeriods=1, Threshold=90, ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName=f"{inst}-cpu", StateValue="OK", StateReason="test")
    path = write_fleet(tmp_path / "fleet.yaml", [
        cluster_entry(inst, instance=inst, alarms={"prefix": f"{inst}-"}, app_config_parameter=f"/{inst}/db",
                      change={"engine_version": "8.0.36", "instance_class": "db.r6g.xlarge",
                              "parameter_group": f"{inst}-80b"}),
        cluster_entry(aur, cluster=aur, change={"engine_version": "8.0.mysql_aurora.3.06.0"}),
    ], budget=5.0)

    with LagFeeder(moto_url):
        opened, rows = run_batch(path)

    assert {d.cluster: (d.phase, d.reason) for d in rows} == {inst: (Phase.COMPLETED, None), aur: (Phase.COMPLETED, None)}
    by = {d.cluster: d for d in rows}
    # Green took the name, carrying the change; blue is kept as -old1.
    now = rds.describe_db_instances(DBInstanceIdentifier=inst)["DBInstances"][0]
    old = rds.describe_db_instances(DBInstanceIdentifier=f"{inst}-old1")["DBInstances"][0]
    assert (now["EngineVersion"], now["DBInstanceClass"], old["EngineVersion"]) == ("8.0.36", "db.r6g.xlarge", "8.0.35")
    assert rds.describe_db_clusters(DBClusterIdentifier=aur)["DBClusters"][0]["EngineVersion"] == "8.0.mysql_aurora.3.06.0"
    assert rds.describe_db_clusters(DBClusterIdentifier=f"{aur}-old1")["DBClusters"]
    for name, dep in by.items():
        [bg] = blue_green_of(rds, name)
        assert bg["Status"] == "SWITCHOVER_COMPLETED" and dep.facts["blue_green"]["id"] == bg["BlueGreenDeploymentIdentifier"]
        assert dep.facts["blue_green"]["how"] == "created" and dep.facts["old"]["identifier"] == f"{name}-old1"
        assert [s.name for s in journal.steps(runtime.store, dep.id, "switchover")] == \
            ["request", "completed"] + (["app_config"] if name == inst else [])
        cp = journal.latest_checkpoint(runtime.store, dep.id, "switchover")
        first, rest = dep.facts["source"]["endpoint"].split(".", 1)  # RDS keeps the names: green took blue's
        assert first == name and (cp.old_primary, cp.new_primary) == (f"{name}-old1.{rest}:3306", f"{name}.{rest}:3306")
        assert dep.switch_started_at and dep.switch_ended_at and dep.switch_duration_ms > 0
        checks = {c.name: c.status for c in validation.check_results(runtime.store, dep.id)}
        assert checks == dict.fromkeys(["rds_alarms", "rds_replica_lag", "rds_parameter_groups", "rds_metrics",
                                        "signoffs", "staging"], "pass")
        assert dep.facts["cost"]["green_per_hour"] > 0 and dep.facts["cost"]["unpriced"] == []
    # The application's settings name the new writer; everything else in them is kept.
    p = ssm.get_parameter(Name=f"/{inst}/db", WithDecryption=True)["Parameter"]
    settings = json.loads(p["Value"])
    assert (settings["host"], settings["user"], settings["password"]) == (now["Endpoint"]["Address"], "app", "kept-as-is")
    assert settings["engine_version"] == "8.0.36" and settings["bgqueue"]["deployment"] == by[inst].id
    assert by[inst].facts["app_config"] == {"parameter": f"/{inst}/db", "previous_version": 1, "version": p["Version"]}
    assert "kept-as-is" not in json.dumps([s.detail for s in journal.steps(runtime.store, by[inst].id)])

    # Retention: never earlier than its end (unless forced); then the old source and the blue/green object go.
    with pytest.raises(BadInput, match="rollback stays possible until"):
        retention.decommission(runtime, by[inst].id)
    assert rds.describe_db_instances(DBInstanceIdentifier=f"{inst}-old1")["DBInstances"]
    for name, dep in by.items():
        msg = retention.decommission(runtime, dep.id, force=True)
        assert f"{name}-old1 " in msg and "removed" in msg, msg
        assert deps.get_deployment(runtime.store, dep.id).decommissioned_at is not None
        assert blue_green_of(rds, name) == []
    ids = {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}
    assert inst in ids and f"{inst}-old1" not in ids
    # (moto does not move instances with a renamed cluster, so the old cluster shows no members there)
    assert f"{aur}-old1" not in {c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]}
    snaps = {s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]}
    assert any(s.startswith(f"bgq-final-{inst}-old1-") for s in snaps)


def test_an_alarm_in_alarm_is_a_no_go_and_the_green_environment_is_removed(rds, moto_url, tmp_path, run_batch,
                                                                           runtime):
    cw = moto_client("cloudwatch", moto_url)
    inst = unique("orders")
    parameter_group(rds, f"{inst}-pg")
    instance(rds, inst, pg=f"{inst}-pg")
    cw.put_metric_alarm(AlarmName=f"{inst}-latency", MetricName="WriteLatency", Namespace="AWS/RDS",
                        Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=0.1,
                        ComparisonOperator="GreaterThanThreshold", Tags=[{"Key": "cluster", "Value": inst}])
    cw.set_alarm_state(AlarmName=f"{inst}-latency", StateValue="ALARM", StateReason="test")
    path = write_fleet(tmp_path / "fleet.yaml", [
        cluster_entry(inst, instance=inst, alarms={"tag": {"cluster": inst}}, change={"engine_version": "8.0.36"})],
        validation_timeout_s=1.5)

    with LagFeeder(moto_url):
        _, [dep] = run_batch(path)

    assert dep.phase == Phase.NO_GO, (dep.phase, dep.reason)
    assert f"rds_alarms: in ALARM: {inst}-latency" in dep.reason
    assert blue_green_of(rds, inst) == []  # deleted, and green with it (DeleteTarget)
    ids = {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}
    assert inst in ids and not any(i.startswith(f"{inst}-green-") for i in ids)
    assert rds.describe_db_instances(DBInstanceIdentifier=inst)["DBInstances"][0]["EngineVersion"] == "8.0.35"
    [cleanup] = journal.steps(runtime.store, dep.id, "cleanup")
    assert (cleanup.name, cleanup.status, cleanup.detail["delete_target"]) == ("delete_green", "done", True)
    assert runtime.locks.holder(inst) is None


def test_the_example_rds_fleet_file_runs_to_completed_on_moto(moto_url, runtime, run_batch):
    """What the README walks through: config/fleet.rds.example.yaml against moto seeded by
    `bench/fleet.py serve-moto` (its seeding and its replica-lag feeding, here in this process)."""
    import threading
    from pathlib import Path

    from bench.fleet import feed_replica_lag, seed_moto
    from bgqueue.adapters.store import validation as records
    from bgqueue.model.fleet import load_fleet

    path = Path(__file__).resolve().parents[3] / "config" / "fleet.rds.example.yaml"
    fleet = load_fleet(path)
    assert [(c.name, c.provider) for c in fleet.clusters] == [("billing", "rds"), ("ledger", "rds")]
    assert seed_moto(moto_url, str(path)) == ["billing-prod", "ledger-prod"]
    ledger = fleet.cluster("ledger")
    records.add_signoff(runtime.store, "ledger", ledger.change_key(), "payments-dba", "test", None)
    stop = threading.Event()

    def feed():
        while not stop.wait(0.2):
            feed_replica_lag(moto_url)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        _, rows = run_batch(path, timeout=90)
    finally:
        stop.set()
        feeder.join(5)
    assert {d.cluster: (d.phase, d.reason) for d in rows} == {"billing": (Phase.COMPLETED, None),
                                                            "ledger": (Phase.COMPLETED, None)}
    billing = next(d for d in rows if d.cluster == "billing")
    checks = {c.name: (c.status, c.reason) for c in validation.check_results(runtime.store, billing.id)}
    assert checks["rds_parameter_groups"][0] == "pass" and checks["rds_parameter_groups"][1].startswith("1 intended")


def test_a_round_of_light_checks_waits_in_the_validate_task_then_goes(rds, moto_url, tmp_path, run_batch, runtime):
    """The rds provider's checks are light: each round runs in the validate task, not a chord. With
    no ReplicaLag datapoint yet a round is WAIT and the task re-enqueues itself; once RDS publishes
    the lag, a later round is GO and the deployment goes on to COMPLETED."""
    import threading
    import time

    inst = unique("cart")
    parameter_group(rds, f"{inst}-pg")
    instance(rds, inst, pg=f"{inst}-pg")
    path = write_fleet(tmp_path / "fleet.yaml", [cluster_entry(inst, instance=inst, change={"engine_version": "8.0.36"})],
                       validation_poll_s=0.5, validation_timeout_s=60)
    out: dict = {}
    runner = threading.Thread(target=lambda: out.update(rows=run_batch(path)[1]), daemon=True)
    runner.start()
    dep_id, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:
        active = deps.active_deployment(runtime.store, inst)
        dep_id = active.id if active is not None else dep_id
        if dep_id and len(validation.decisions(runtime.store, dep_id, "pre_switch")) >= 2:
            break
        time.sleep(0.1)
    waits = validation.decisions(runtime.store, dep_id, "pre_switch")
    assert len(waits) >= 2 and {d.verdict for d in waits} == {"WAIT"}, [(d.verdict, d.reasons) for d in waits]
    assert "no ReplicaLag datapoints" in " ".join(waits[0].reasons)
    with LagFeeder(moto_url):  # RDS publishes every minute from now on (the new primary's figures too)
        runner.join(60)
    [dep] = out["rows"]
    assert (dep.phase, dep.reason) == (Phase.COMPLETED, None)
    decided = validation.decisions(runtime.store, dep.id, "pre_switch")
    assert decided[-1].verdict == "GO" and {d.verdict for d in decided[:-1]} == {"WAIT"}, [d.verdict for d in decided]
    for d in decided:  # every round recorded its six results
        assert len(validation.check_results(runtime.store, dep.id, round_=d.round)) == 6
