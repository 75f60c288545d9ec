"""What coexisting environments really cost (Cost Explorer) and the per-batch budget (AWS Budgets).

Attribution is by cost allocation tags: green (and, after the switchover, the old ``-oldN`` copy)
carries ``bgqueue:batch`` and ``bgqueue:deployment`` while it coexists with production; the new
primary loses them when it becomes production. One GetCostAndUsage call per report, grouped by
``bgqueue:deployment``, gives the batch's total and every deployment's share. (AWS only reports
tags that are activated as cost allocation tags in the Billing console; until then the figures
are zero, which the report says.)

A permission error is never a failure of the batch: every function here raises ``BillingDenied``
naming the IAM permission, and callers turn it into a warning and go on with the price-table
estimate.
"""
from __future__ import annotations

from datetime import date, timedelta

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError

TAG_BATCH, TAG_DEPLOYMENT = "bgqueue:batch", "bgqueue:deployment"
TAGS = (TAG_BATCH, TAG_DEPLOYMENT, "bgqueue:cluster")
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
NOT_FOUND = {"NotFoundException"}
CE_REGION = "us-east-1"  # Cost Explorer and Budgets are global, served from us-east-1


class BillingDenied(AwsError):
    """The credentials lack a billing permission (named in the message)."""


def _fail(permission: str, what: str, e: BaseException) -> AwsError:
    if aws.error_code(e) in DENIED:
        return BillingDenied(f"{what}: missing permission {permission} ({aws.explain(e)}); "
                             "going on with the price-table estimate")
    return aws.failure(what, e)


def tag(region: str, arns: list[str], values: dict[str, str]) -> None:
    """Add the cost allocation tags to each resource (RDS AddTagsToResource)."""
    rds = aws.client("rds", region)
    for arn in arns:
        try:
            rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": k, "Value": v} for k, v in values.items()])
        except aws.AWS_ERRORS as e:
            raise _fail("rds:AddTagsToResource", f"tagging {arn}", e) from None


def untag(region: str, arns: list[str]) -> None:
    """Remove bgqueue's cost allocation tags (the resource became production)."""
    rds = aws.client("rds", region)
    for arn in arns:
        try:
            rds.remove_tags_from_resource(ResourceName=arn, TagKeys=list(TAGS))
        except aws.AWS_ERRORS as e:
            raise _fail("rds:RemoveTagsFromResource", f"untagging {arn}", e) from None


def cost_by_deployment(*, tag_key: str, values: list[str], start: date, end: date | None = None) -> dict:
    """Unblended cost of resources tagged ``tag_key`` ∈ ``values`` from ``start`` to today, in ONE
    GetCostAndUsage call (pages followed) grouped by ``bgqueue:deployment``.

    Returns ``{"total", "unit", "by_deployment": {id: amount}, "start", "end"}``."""
    end = end or date.today() + timedelta(days=1)  # End is exclusive
    if end <= start:
        end = start + timedelta(days=1)
    ce = aws.client("ce", CE_REGION)
    kwargs = {"TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()}, "Granularity": "DAILY",
              "Metrics": ["UnblendedCost"], "Filter": {"Tags": {"Key": tag_key, "Values": values}},
              "GroupBy": [{"Type": "TAG", "Key": TAG_DEPLOYMENT}]}
    by: dict[str, float] = {}
    unit, total = "USD", 0.0
    token = None
    while True:
        try:
            page = ce.get_cost_and_usage(**kwargs, **({"NextPageToken": token} if token else {}))
        except aws.AWS_ERRORS as e:
            raise _fail("ce:GetCostAndUsage", "reading Cost Explorer", e) from None
        for period in page.get("ResultsByTime", []):
            for g in period.get("Groups", []):
                key = g["Keys"][0].split("$", 1)[-1] if g.get("Keys") else ""
                m = g.get("Metrics", {}).get("UnblendedCost", {})
                amount = float(m.get("Amount", 0) or 0)
                unit = m.get("Unit", unit)
                by[key or "(untagged)"] = by.get(key or "(untagged)", 0.0) + amount
                total += amount
            if not period.get("Groups"):
                m = period.get("Total", {}).get("UnblendedCost", {})
                total += float(m.get("Amount", 0) or 0)
                unit = m.get("Unit", unit)
        token = page.get("NextPageToken")
        if not token:
            break
    return {"total": round(total, 4), "unit": unit, "by_deployment": {k: round(v, 4) for k, v in by.items()},
            "start": start.isoformat(), "end": end.isoformat()}


def account_id() -> str:
    try:
        return aws.client("sts", CE_REGION).get_caller_identity()["Account"]
    except aws.AWS_ERRORS as e:
        raise _fail("sts:GetCallerIdentity", "finding the account for AWS Budgets", e) from None


def budget_name(batch_id: str) -> str:
    return f"bgqueue-batch-{batch_id}"


def create_batch_budget(batch_id: str, budget) -> dict:
    """A monthly COST budget on the batch's tag with one ACTUAL notification at ``threshold_percent``
    to the fleet file's e-mail subscribers. Idempotent: an existing one of that name is kept."""
    acct = account_id()
    name = budget_name(batch_id)
    notification = {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN",
                    "Threshold": float(budget.threshold_percent), "ThresholdType": "PERCENTAGE"}
    body = {"BudgetName": name, "BudgetType": "COST", "TimeUnit": "MONTHLY",
            "BudgetLimit": {"Amount": f"{budget.limit:.2f}", "Unit": budget.unit},
            "CostFilters": {"TagKeyValue": [f"user:{TAG_BATCH}${batch_id}"]}}
    subscribers = [{"SubscriptionType": "EMAIL", "Address": a} for a in budget.notify]
    try:
        aws.client("budgets", CE_REGION).create_budget(
            AccountId=acct, Budget=body,
            NotificationsWithSubscribers=[{"Notification": notification, "Subscribers": subscribers}])
    except aws.AWS_ERRORS as e:
        if aws.error_code(e) == "DuplicateRecordException":
            return {"name": name, "account": acct, "created": False}
        raise _fail("budgets:ModifyBudget", f"creating budget {name}", e) from None
    return {"name": name, "account": acct, "created": True, "limit": body["BudgetLimit"],
            "threshold_percent": budget.threshold_percent, "subscribers": len(subscribers)}


def delete_batch_budget(batch_id: str) -> bool:
    """Delete the batch's budget; False when there was none (never created, or deleted already)."""
    acct = account_id()
    try:
        aws.client("budgets", CE_REGION).delete_budget(AccountId=acct, BudgetName=budget_name(batch_id))
    except aws.AWS_ERRORS as e:
        if aws.error_code(e) in NOT_FOUND:
            return False
        raise _fail("budgets:ModifyBudget", f"deleting budget {budget_name(batch_id)}", e) from None
    return True
