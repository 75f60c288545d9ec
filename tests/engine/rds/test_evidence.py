"""CloudWatch metrics as evidence: the rds_metrics validation check (green vs blue over a window, one
GetMetricData call), the monitoring window against blue's pre-switchover baseline, and the automatic
rollback a breach starts (a blue/green deployment back). Metrics are put by the test (moto never
produces any); Stubber serves what moto does not (a paged answer, a refusal)."""
from __future__ import annotations

import datetime as dt
import re
import time
from contextlib import contextmanager

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bench.fleet import evidence_datapoints
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.store import journal, validation
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.rds_metrics import compare, rds_metrics
from bgqueue.engine.decision import NO_GO, WAIT, decide
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.phases import Phase
from bgqueue.model.rds_evidence import MetricRule, RdsEvidence
from tests.engine.rds.helpers import (
    REGION,
    LagFeeder,
    blue_green_of,
    cluster_entry,
    instance,
    moto_client,
    parameter_group,
    unique,
    write_fleet,
)


def test_a_rule_needs_both_the_ratio_and_the_floor_and_missing_evidence_is_never_a_pass():
    rules = {"CPUUtilization": MetricRule(ratio=1.5, floor=20.0),
             "FreeableMemory": MetricRule(stat="Minimum", worse="lower", ratio=2.0, floor=100.0),
             "ReplicaLag": MetricRule(stat="Maximum", floor=30.0, required=False)}
    # 2 → 10 is 5× but only +8: noise near zero, not a breach; 10 → 40 is both.
    assert compare(rules, {"CPUUtilization": 2.0, "FreeableMemory": 1000.0},
                   {"CPUUtilization": 10.0, "FreeableMemory": 900.0})[:2] == ([], [])
    breaches, missing, table = compare(rules, {"CPUUtilization": 10.0, "FreeableMemory": 1000.0},
                                       {"CPUUtilization": 40.0, "FreeableMemory": 400.0, "ReplicaLag": 31.0})
    assert [b.split(" ")[0] for b in breaches] == ["CPUUtilization", "FreeableMemory", "ReplicaLag"]
    assert missing == [] and table["ReplicaLag"]["blue"] is None and table["FreeableMemory"]["limit"] == 500.0
    # A required metric without datapoints on a side is missing; an optional one green lacks is skipped.
    assert compare(rules, {"CPUUtilization": 10.0}, {"FreeableMemory": 1.0})[1] == \
        ["CPUUtilization (green)", "FreeableMemory (blue)"]


def _spec(name: str, **evidence):
    return cluster_spec({**cluster_entry(name, instance=name), "evidence": evidence} if evidence
                        else cluster_entry(name, instance=name))


def _ctx(runtime, spec, blue: str, green: str) -> CheckContext:
    facts = {"source": {"kind": "instance", "identifier": blue}, "green": {"kind": "instance", "identifier": green}}
    return CheckContext(spec=spec, blue=None, green=None, store=runtime.store, extra={"facts": facts})


@contextmanager
def counting(operation: str):
    """How many times bgqueue's CloudWatch client sends ``operation``."""
    calls: list[str] = []
    events = aws.client("cloudwatch", REGION).meta.events
    handler = lambda **_: calls.append(operation)  # noqa: E731
    events.register(f"before-call.cloudwatch.{operation}", handler)
    try:
        yield calls
    finally:
        events.unregister(f"before-call.cloudwatch.{operation}", handler)


def test_green_is_held_to_blue_on_cloudwatch_in_one_call_and_no_datapoints_is_wait_then_no_go(aws_env, moto_url,
                                                                                             runtime):
    cw = moto_client("cloudwatch", moto_url)
    blue, green = unique("ev-blue"), unique("ev-green")
    spec = _spec(blue)
    ctx = _ctx(runtime, spec, blue, green)

    with counting("GetMetricData") as calls:
        first = run_check("rds_metrics", rds_metrics, ctx)
    assert first.status == "wait" and first.reason.startswith("no evidence yet"), first
    assert "CPUUtilization (blue) (green)" in first.reason and calls == ["GetMetricData"]
    # WAIT before the validation deadline, NO_GO at it: never a pass.
    assert decide([first], now=0, deadline=10, poll_s=1).verdict == WAIT
    assert decide([first], now=10, deadline=10, poll_s=1).verdict == NO_GO

    now = dt.datetime.now(dt.UTC)
    cw.put_metric_data(Namespace="AWS/RDS", MetricData=evidence_datapoints("db", blue, now)
                       + evidence_datapoints("db", green, now))
    with counting("GetMetricData") as calls:
        ok = run_check("rds_metrics", rds_metrics, ctx)
    assert ok.status == "pass", ok
    assert calls == ["GetMetricData"] and len(ok.evidence["metrics"]) == 8  # ReplicaLag: none on a primary

    cw.put_metric_data(Namespace="AWS/RDS", MetricData=evidence_datapoints(
        "db", green, now, {"CPUUtilization": 190.0, "WriteLatency": 0.05})[:1] + evidence_datapoints(
        "db", green, now, {"WriteLatency": 0.05})[4:5])
    worse = run_check("rds_metrics", rds_metrics, ctx)
    assert worse.status == "fail" and worse.retryable, worse  # green may settle: WAIT, NO_GO at the deadline
    assert "CPUUtilization (Average) 100 is above 30" in worse.reason and "WriteLatency" in worse.reason

    off = run_check("rds_metrics", rds_metrics, _ctx(runtime, _spec(blue, enabled=False), blue, green))
    assert off.status == "pass" and "disabled" in off.reason


def _stubbed_cloudwatch():
    client = boto3.client("cloudwatch", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_a_paged_answer_is_joined_and_a_refusal_is_a_retryable_error(runtime):
    """Stubber: moto answers GetMetricData in one page and never refuses it."""
    name = unique("ev-stub")
    only_cpu = {**dict.fromkeys(RdsEvidence().metrics), "CPUUtilization": {"ratio": 1.5, "floor": 20}}
    spec = _spec(name, metrics=only_cpu)  # null drops a default rule
    client, stub = _stubbed_cloudwatch()
    ids = {"blue": "b0x0", "green": "g1x0"}
    stub.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": ids["blue"], "Values": [10.0, 12.0], "StatusCode": "Complete"},
        {"Id": ids["green"], "Values": [], "StatusCode": "PartialData"}], "NextToken": "more"},
        {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY})
    stub.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": ids["green"], "Values": [60.0], "StatusCode": "Complete"}]},
        {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "NextToken": "more"})
    stub.add_client_error("get_metric_data", "AccessDenied", "not authorized to perform: cloudwatch:GetMetricData",
                          403)
    with stub, aws.installed("cloudwatch", REGION, client):
        r = run_check("rds_metrics", rds_metrics, _ctx(runtime, spec, name, f"{name}-green"))
        assert r.status == "fail" and r.evidence["metrics"]["CPUUtilization"] == {
            "blue": 11.0, "green": 60.0, "limit": 31.0, "stat": "Average", "breach": True}, r
        denied = run_check("rds_metrics", rds_metrics, _ctx(runtime, spec, name, f"{name}-green"))
        assert (denied.status, denied.retryable) == ("error", True) and "cloudwatch:GetMetricData" in denied.reason
        stub.assert_no_pending_responses()


def test_evidence_bounds_are_checked_in_the_fleet_file():
    with pytest.raises(ValueError, match="window_s"):
        RdsEvidence(window_s=10)
    with pytest.raises(ValueError, match="ratio"):
        MetricRule(ratio=1.0)


def _batch(rds, moto_url, tmp_path, change: dict, name: str, **thresholds):
    parameter_group(rds, f"{name}-pg")
    instance(rds, name, pg=f"{name}-pg")
    # Blue has been publishing for a while (moto reads to the second: the batch's own minute is too short).
    moto_client("cloudwatch", moto_url).put_metric_data(Namespace="AWS/RDS", MetricData=evidence_datapoints(
        "db", name, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)))
    return write_fleet(tmp_path / "fleet.yaml", [cluster_entry(name, instance=name, change=change)],
                       monitor_window_s=60, **thresholds)


def test_a_new_primary_busier_than_blue_rolls_back_by_a_blue_green_deployment_back(rds, moto_url, tmp_path,
                                                                                   run_batch, runtime):
    name = unique("ev-rollback")
    path = _batch(rds, moto_url, tmp_path, {"instance_class": "db.r6g.xlarge"}, name)
    t0 = time.monotonic()
    with LagFeeder(moto_url, after_switch={"CPUUtilization": 95.0}):
        _, [dep] = run_batch(path, timeout=90)
    assert dep.phase == Phase.ROLLED_BACK, (dep.phase, dep.reason)
    assert re.match(r"automatic rollback: CPUUtilization \(Average\) [3-9]\d(\.\d+)? is above 30 \(baseline 10", dep.reason)
    assert time.monotonic() - t0 < 80
    # Blue's pre-switchover figures are the baseline; the breach is journaled with the table.
    assert dep.baseline["cloudwatch"]["CPUUtilization"] == 10.0
    [breach] = [s for s in journal.steps(runtime.store, dep.id, "monitor") if s.name == "breach"]
    assert breach.detail["figures"]["evidence"]["metrics"]["CPUUtilization"]["green"] > 30
    assert [d.verdict for d in validation.decisions(runtime.store, dep.id, "monitor")][-1] == "ROLLBACK"
    # The way back: a second blue/green deployment from the new primary with blue's class; RDS moved the name.
    assert [s.name for s in journal.steps(runtime.store, dep.id, "rollback")] == ["begin", "create", "switch",
                                                                                    "rolled_back"]
    back = [bg for bg in blue_green_of(rds, name) if bg["BlueGreenDeploymentIdentifier"] == dep.facts["rollback"]["id"]]
    assert back and back[0]["Status"] == "SWITCHOVER_COMPLETED"
    now = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    assert now["DBInstanceClass"] == "db.r6g.large"
    assert runtime.locks.holder(name) is None


def test_a_breach_after_an_engine_upgrade_fails_with_the_manual_path(rds, moto_url, tmp_path, run_batch, runtime):
    name = unique("ev-upgrade")
    path = _batch(rds, moto_url, tmp_path, {"engine_version": "8.0.36"}, name)
    with LagFeeder(moto_url, after_switch={"WriteLatency": 0.5}):
        _, [dep] = run_batch(path, timeout=90)
    assert dep.phase == Phase.FAILED, (dep.phase, dep.reason)
    # (a healthy datapoint of the switchover's own second may be averaged in: moto reads to the second)
    assert re.search(r"breach: WriteLatency \(Average\) 0\.[1-5]\d* is above 0\.007 \(baseline 0\.002", dep.reason)
    assert "an RDS blue/green green may not run an older version" in dep.reason
    assert f"point the applications at {name}-old1" in dep.reason
    assert [bg["Status"] for bg in blue_green_of(rds, name)] == ["SWITCHOVER_COMPLETED"]  # nothing created back


def test_which_changes_have_a_blue_green_deployment_back():
    """Pure: RDS lets a green run the same engine or a newer one, and storage never shrinks."""
    from types import SimpleNamespace

    from bgqueue.engine.rds.rollback import back_parameters, preconditions

    source = {"engine_version": "8.0.35", "allocated_storage": 100, "instance_class": "db.r6g.large",
              "parameter_group": "pg-old", "storage_type": "gp3"}

    def dep(change: dict, **extra):
        spec = {**cluster_entry("back", instance="back"), "change": change, **extra}
        return SimpleNamespace(id="d1", phase=Phase.MONITORING, spec=spec,
                               facts={"source": source, "old": {"identifier": "back-old1"}})

    ok = dep({"instance_class": "db.r6g.xlarge", "parameter_group": "pg-new"})
    assert preconditions(None, ok) == []
    assert back_parameters(cluster_spec(ok.spec), source) == {"TargetDBInstanceClass": "db.r6g.large",
                                                               "TargetDBParameterGroupName": "pg-old"}
    [why] = preconditions(None, dep({"allocated_storage": 200}))
    assert "storage never shrinks" in why and "point the applications at back-old1" in why
    [why] = preconditions(None, dep({"engine_version": "8.0.36"}))
    assert "8.0.35 → 8.0.36" in why
    assert preconditions(None, dep({"engine_version": "8.0.35"})) == []  # the same version: no downgrade
    never = SimpleNamespace(id="d2", phase=Phase.MONITORING, spec=ok.spec, facts={"source": source})
    assert preconditions(None, never) == ["deployment d2 has no switchover recorded"]
