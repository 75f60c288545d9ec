"""The provider's pure parts and its client handling: status assessment, the switchover timeout,
names, Target* parameters, the cost estimate, one reused client per (service, region)."""
from __future__ import annotations

import time

import pytest
from botocore.config import Config

from bgqueue.adapters.aws import bluegreen, cost
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.source import Member, Source, identifier_of
from bgqueue.engine.rds.decommission import snapshot_name
from bgqueue.model.fleet import Thresholds, cluster_spec
from tests.engine.rds.helpers import REGION, cluster_entry


def _bg(status, member=None, tasks="COMPLETED", details=None):
    d = {"BlueGreenDeploymentIdentifier": "bgd-1", "Status": status, "Tasks": [{"Name": "T", "Status": tasks}],
         "SwitchoverDetails": [{"SourceMember": "a", "TargetMember": "b", "Status": member or status}]}
    return {**d, "StatusDetails": details} if details else d


@pytest.mark.parametrize("bg, state", [
    (_bg("PROVISIONING"), "waiting"),
    (_bg("AVAILABLE"), "ready"),
    (_bg("AVAILABLE", member="PROVISIONING"), "waiting"),
    (_bg("AVAILABLE", member="MISSING_SOURCE"), "failed"),
    (_bg("AVAILABLE", member="INVALID_CONFIGURATION"), "failed"),
    (_bg("PROVISIONING", tasks="FAILED"), "failed"),
    (_bg("INVALID_CONFIGURATION"), "failed"),
    (_bg("SWITCHOVER_IN_PROGRESS"), "switching"),
    (_bg("SWITCHOVER_COMPLETED"), "switched"),
    (_bg("SWITCHOVER_FAILED", details="guardrail"), "switch_failed"),
    (_bg("DELETING"), "failed"),
    (_bg("SOMETHING_NEW"), "failed"),
])
def test_assess_turns_every_status_into_a_decision(bg, state):
    a = bluegreen.assess(bg)
    assert a.state == state and (a.reason if state in ("failed", "switch_failed") else True)


def test_switchover_timeout_maps_catchup_and_is_clamped_to_what_rds_accepts():
    t = lambda s: Thresholds(catchup_timeout_s=s)  # noqa: E731
    assert [bluegreen.switchover_timeout_s(t(s)) for s in (0.1, 1, 5, 30, 300)] == [30, 60, 300, 1800, 3600]


def test_names_and_target_parameters():
    name = bluegreen.name_for("orders_eu__main" + "x" * 60, "0123456789abcdef")
    assert len(name) <= 60 and name.startswith("bgq-orders-eu-main") and name.endswith("-01234567") and "--" not in name
    spec = cluster_spec(cluster_entry("c", instance="c", change={"engine_version": "8.0.36", "instance_class": "db.r6g.xlarge",
                                                                 "iops": 3000, "parameter_group": "pg"}))
    assert bluegreen.target_parameters(spec.change, "instance") == {
        "TargetEngineVersion": "8.0.36", "TargetDBParameterGroupName": "pg", "TargetDBInstanceClass": "db.r6g.xlarge",
        "TargetIops": 3000}
    assert bluegreen.target_parameters(spec.change, "cluster") == {"TargetEngineVersion": "8.0.36",
                                                                   "TargetDBParameterGroupName": "pg"}
    assert identifier_of("arn:aws:rds:us-east-1:1:cluster:led-old1") == ("cluster", "led-old1")
    with pytest.raises(ValueError):
        identifier_of("arn:aws:rds:us-east-1:1:snapshot:x")
    import datetime as dt
    assert snapshot_name("a--b-old1", dt.datetime(2026, 1, 2, 3, 4, 5)) == "bgq-final-a-b-old1-20260102030405"


def _src(**kw) -> Source:
    base = dict(kind="instance", identifier="c", arn="arn:aws:rds:us-east-1:1:db:c", region=REGION, engine="mysql",
                engine_version="8.0.35", status="available", instance_class="db.r6g.large", storage_type="gp3",
                allocated_storage=200, iops=6000, storage_throughput=250)
    return Source(**{**base, **kw})


def test_the_cost_estimate_prices_green_from_the_table():
    spec = cluster_spec(cluster_entry("c", instance="c", change={"instance_class": "db.r6g.xlarge"}))
    e = cost.estimate(spec, _src())
    storage = (200 * 0.115 + (6000 - 3000) * 0.02 + (250 - 125) * 0.08) / 730
    assert e["green_per_hour"] == pytest.approx(0.43 + storage, abs=1e-4) and e["unpriced"] == []
    assert cost.estimate(spec, _src(multi_az=True))["green_per_hour"] == pytest.approx(2 * (0.43 + storage), abs=1e-4)
    assert cost.estimate(spec, _src(), [{"DBInstanceIdentifier": "r", "DBInstanceClass": "db.r6g.large"}])[
        "green_per_hour"] == pytest.approx(0.43 + 0.215 + 2 * storage, abs=1e-4)
    odd = cost.estimate(cluster_spec(cluster_entry("c", instance="c")), _src(instance_class="db.x9.huge", storage_type="magnetic"))
    assert odd["unpriced"] == ["instance class db.x9.huge (mysql)", "storage type magnetic"] and odd["green_per_hour"] == 0
    aurora = _src(kind="cluster", engine="aurora-mysql", instance_class=None,
                  members=(Member("w", "db.r6g.large", True), Member("r", "db.r6g.2xlarge", False)))
    e = cost.estimate(cluster_spec(cluster_entry("a", cluster="a")), aurora)
    assert e["green_per_hour"] == pytest.approx(0.26 + 1.038) and e["storage_per_hour"] == 0
    assert cost.estimate_batch([e, e]) == {"currency": "USD", "green_per_hour": round(2 * (0.26 + 1.038), 4),
                                           "clusters": 2, "unpriced": []}


def test_one_client_per_service_and_region_honouring_the_endpoint_environment(aws_env, moto_url, monkeypatch):
    a = aws.client("rds", REGION)
    assert aws.client("rds", REGION) is a and aws.client("rds", "eu-west-1") is not a
    assert aws.client("ssm", REGION) is not a
    assert a.meta.endpoint_url == moto_url  # AWS_ENDPOINT_URL, honoured by boto3 itself
    assert a.meta.config.retries["total_max_attempts"] == 1  # BGQUEUE_AWS_RETRIES=0: no retry
    monkeypatch.setenv(aws.ENDPOINT_ENV, "http://127.0.0.1:9")
    aws.reset()
    assert aws.client("rds", REGION).meta.endpoint_url == "http://127.0.0.1:9"  # ours wins, for our clients only
    monkeypatch.delenv(aws.ENDPOINT_ENV)
    aws.configure(Config(retries={"max_attempts": 2}))
    try:
        assert aws.client("rds", REGION).meta.config.retries["total_max_attempts"] == 3
    finally:
        aws.configure(None)


def test_a_call_moto_does_not_implement_fails_at_once(aws_env):
    t0 = time.monotonic()
    with pytest.raises(aws.AWS_ERRORS):
        aws.client("rds", REGION).describe_db_recommendations()
    assert time.monotonic() - t0 < 20  # retried, it would take minutes; 6.6 s seen on a loaded machine


def test_a_forked_child_keeps_the_clients_its_parent_never_used(aws_env, monkeypatch):
    """``warm`` (a worker's parent, before the fork) makes the clients of the configured regions; a
    real forked child keeps those that never sent a request, and builds again those that did."""
    import os

    monkeypatch.setenv(aws.REGIONS_ENV, f"{REGION},eu-west-1")
    aws.reset()
    try:
        aws.warm(("rds", "cloudwatch"))
        unused, used = aws.client("rds", "eu-west-1"), aws.client("rds", REGION)
        assert aws.client("cloudwatch", REGION) is not None
        used.describe_db_instances()  # a socket in the parent's pool now
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running the parent's atexit/pytest code
            ok = aws.client("rds", "eu-west-1") is unused and aws.client("rds", REGION) is not used
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        assert os.read(r, 1) == b"1"
        os.waitpid(pid, 0)
        assert aws.client("rds", REGION) is used  # the parent keeps its own
    finally:
        aws.reset()


def test_warm_makes_no_client_for_role_credentials(aws_env, monkeypatch):
    """Instance-metadata, container and web-identity credentials are resolved by each child: their
    providers hold connections and refresh themselves. No credentials at all: no client either."""
    from botocore.credentials import Credentials

    aws.reset()
    try:
        aws.warm(("rds",))
        assert aws._session.get_credentials().method == "env" and aws._clients  # static: made
        aws._clients.clear()
        monkeypatch.setattr(aws._session, "get_credentials", lambda: Credentials("a", "b", method="iam-role"))
        aws.warm(("rds",))
        assert aws._clients == {}
        monkeypatch.setattr(aws._session, "get_credentials", lambda: None)
        aws.warm(("rds",))
        assert aws._clients == {}
    finally:
        aws.reset()
