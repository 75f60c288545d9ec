"""Cost Explorer and Budgets: the batch's budget from start to end, the real cost per batch and per
deployment next to the estimate, cost allocation tags on the coexisting environment, the nightly
report of environments coexisting for too long; a billing permission missing is a warning."""
from __future__ import annotations

import time
from datetime import timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber
from sqlalchemy import update

from bgqueue.adapters.aws import billing
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.app.progress import wait_for_batch
from bgqueue.engine import claims, nightly
from bgqueue.engine.batches import open_batch
from bgqueue.engine.rds import costs
from bgqueue.model.phases import Phase
from tests.engine.rds.helpers import (
    ACCOUNT,
    LagFeeder,
    cluster_entry,
    cost_result,
    instance,
    moto_client,
    new_deployment,
    parameter_group,
    queue_cost_results,
    unique,
    write_fleet,
)

BUDGET = {"limit": 250, "threshold_percent": 80, "notify": ["dba-oncall@example.com"]}


def _source(rds, base: str) -> str:
    name = unique(base)
    parameter_group(rds, f"{name}-pg")
    instance(rds, name, pg=f"{name}-pg")
    return name


def _tags(rds, arn: str) -> dict:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def _done_summary(runtime, batch_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the chord body writes it just after the last chain ends
        b = deps.get_batch(runtime.store, batch_id)
        if b.status == "DONE" and b.summary:
            return b.summary
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} has no summary after {timeout}s")


def test_a_batch_has_its_budget_while_it_runs_and_its_real_cost_beside_the_estimate(rds, moto_url, tmp_path, runtime,
                                                                                   rds_celery, rds_workers):
    budgets = moto_client("budgets", moto_url)
    name = _source(rds, "costly")
    path = write_fleet(tmp_path / "fleet.yaml", [cluster_entry(name, instance=name,
                                                               change={"instance_class": "db.r6g.xlarge"})],
                       aws_cost={"budget": BUDGET})
    opened = open_batch(runtime, str(path))
    assert opened.warnings == ()
    dep_id = opened.deployments[name]
    budget = budgets.describe_budget(AccountId=ACCOUNT, BudgetName=billing.budget_name(opened.batch_id))["Budget"]
    assert budget["BudgetLimit"] == {"Amount": "250.00", "Unit": "USD"}
    assert budget["CostFilters"] == {"TagKeyValue": [f"user:bgqueue:batch${opened.batch_id}"]}
    [note] = budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=budget["BudgetName"])["Notifications"]
    assert (note["Threshold"], note["ThresholdType"], note["NotificationType"]) == (80, "PERCENTAGE", "ACTUAL")

    queue_cost_results(moto_url, cost_result({dep_id: 1.25}))
    with LagFeeder(moto_url):
        rds_celery.send_task("bgqueue.batch.start", args=(opened.batch_id,), queue="bgqueue")
        [dep] = wait_for_batch(runtime, opened.batch_id, timeout=60)
        summary = _done_summary(runtime, opened.batch_id)
    assert dep.phase == Phase.COMPLETED, (dep.phase, dep.reason)
    cost = summary["cost"]["rds"]
    assert cost["budget_deleted"] is True and cost["warnings"] == []
    assert cost["explorer"]["total"] == 1.25 and cost["explorer"]["by_deployment"] == {dep_id: 1.25}
    assert cost["estimate"]["green_per_hour"] == dep.facts["cost"]["green_per_hour"] > 0
    [row] = summary["clusters"]
    assert row["explorer_cost"] == 1.25 and row["estimated_cost"] is not None and row["green_cost_per_hour"] > 0
    with pytest.raises(budgets.exceptions.NotFoundException):
        budgets.describe_budget(AccountId=ACCOUNT, BudgetName=billing.budget_name(opened.batch_id))
    # Cost allocation: the coexisting environment carries the batch's tags; production does not.
    old = rds.describe_db_instances(DBInstanceIdentifier=f"{name}-old1")["DBInstances"][0]
    new = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    assert _tags(rds, old["DBInstanceArn"])["bgqueue:deployment"] == dep_id
    assert _tags(rds, old["DBInstanceArn"])["bgqueue:batch"] == opened.batch_id
    assert "bgqueue:deployment" not in _tags(rds, new["DBInstanceArn"])


@pytest.fixture
def denied_budgets():
    """AWS Budgets refusing for want of a permission (moto has no IAM enforcement)."""
    client = boto3.client("budgets", region_name=billing.CE_REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub, aws.installed("budgets", billing.CE_REGION, client):
        yield stub


def test_a_missing_budgets_permission_is_a_warning_naming_it_and_the_batch_goes_on(rds, aws_env, tmp_path, runtime,
                                                                                 denied_budgets):
    denied_budgets.add_client_error("create_budget", "AccessDeniedException",
                                    "User is not authorized to perform: budgets:ModifyBudget", 400,
                                    expected_params={"AccountId": ACCOUNT, "Budget": ANY,
                                                     "NotificationsWithSubscribers": ANY})
    name = _source(rds, "nobudget")
    path = write_fleet(tmp_path / "fleet.yaml", [cluster_entry(name, instance=name)], aws_cost={"budget": BUDGET})
    opened = open_batch(runtime, str(path))
    try:
        [warning] = opened.warnings
        assert "missing permission budgets:ModifyBudget" in warning and "price-table estimate" in warning
        dep_id = opened.deployments[name]
        assert deps.get_deployment(runtime.store, dep_id).phase == Phase.PENDING  # the batch goes on
        steps = {s.name: s for s in journal.steps(runtime.store, dep_id, "cost")}
        assert steps["budget"].status == "failed" and steps["settings"].detail["budget"] is None
        denied_budgets.assert_no_pending_responses()
    finally:
        claims.fail(runtime, opened.deployments[name], "test over")


def test_cost_explorer_denied_at_the_batch_end_is_a_warning_and_the_estimate_stays(runtime, aws_env):
    client = boto3.client("ce", region_name=billing.CE_REGION, aws_access_key_id="x", aws_secret_access_key="x")
    dep_id = new_deployment(runtime, cluster_entry(unique("noce"), instance="x"))
    row = deps.get_deployment(runtime.store, dep_id)
    row.facts = {"cost": {"green_per_hour": 2.0}}
    row.created_at = utcnow() - timedelta(hours=3)
    with Stubber(client) as stub, aws.installed("ce", billing.CE_REGION, client):
        stub.add_client_error("get_cost_and_usage", "AccessDeniedException",
                              "User is not authorized to perform: ce:GetCostAndUsage", 400)
        out = costs.batch_ended(runtime, row.batch_id, [row])
        stub.assert_no_pending_responses()
    assert "explorer" not in out and out["estimate"]["green_per_hour"] == 2.0
    assert 5.9 < out["estimate"]["so_far"] < 6.1  # 2/hour × 3 hours
    [w] = out["warnings"]
    assert "missing permission ce:GetCostAndUsage" in w
    claims.fail(runtime, dep_id, "test over")


def test_nightly_reports_environments_coexisting_longer_than_n_days_with_their_cost(rds, moto_url, runtime):
    name = unique("lingering")
    dep_id = new_deployment(runtime, cluster_entry(name, instance=name))
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(
            phase=Phase.MONITORING, created_at=utcnow() - timedelta(days=10),
            facts={"cost": {"green_per_hour": 0.5, "unpriced": []}}))
    queue_cost_results(moto_url, cost_result({dep_id: 97.5}))
    run_id = nightly.start_run(runtime, "test")
    try:
        nightly.fleet_wide(runtime, run_id)
        summary = nightly.finish_run(runtime, run_id, 0)
        # The same question again: moto answers a repeated GetCostAndUsage with the same result.
        _, items, warnings = nightly.coexistence_cost(runtime, [])
    finally:
        with runtime.store.session() as s:
            s.execute(update(Deployment).where(Deployment.id == dep_id).values(phase=Phase.FAILED))
    by = {(x["cluster"], x["check"]): x for x in summary["results"]}
    finding = by[(name, "coexisting_too_long")]
    assert finding["status"] == "fail" and "10.0 days (over 7)" in finding["reason"]
    assert "about $120.00 so far at $0.50/hour, 97.50 per Cost Explorer" in finding["reason"], finding["reason"]
    assert by[("*", "coexistence_cost")]["status"] == "pass"
    item = next(i for i in items if i["deployment"] == dep_id)
    assert warnings == [] and item["explorer_cost"] == 97.5 and 9.99 < item["age_days"] < 10.01
