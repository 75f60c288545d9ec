"""What the batch's coexisting environments cost: the price-table estimate, Cost Explorer's figure, the budget.

    batch_started  the fleet's ``aws_cost.budget``: a budget in AWS Budgets on the batch's tag with a
                   notification threshold (journaled on the batch's first deployment)
    tag_green      at sync: green carries ``bgqueue:batch`` / ``bgqueue:deployment`` (cost allocation)
    retag          at the switchover: the new primary drops them (it is production), ``-oldN`` takes them
    batch_ended    the budget is deleted; Cost Explorer's cost per batch and per deployment, next to
                   the estimate (green's hourly price × the hours it coexisted)
    real_costs     nightly: Cost Explorer's cost of deployments still coexisting
A permission error (``BillingDenied``) is a warning that names the permission; the batch goes on.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from bgqueue.adapters.aws import billing
from bgqueue.adapters.aws.clients import AwsError
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.deployments import as_aware
from bgqueue.adapters.store.models import utcnow

log = logging.getLogger("bgqueue.rds")
PROCEDURE = "cost"


def _warn(rt: Runtime, dep_id: str | None, what: str, e: AwsError) -> str:
    msg = f"{what}: {e}"
    log.warning(msg)
    if dep_id:
        journals.note_unfenced(rt.store, dep_id, PROCEDURE, what.split(" ")[0], "failed", {"warning": msg})
    return msg


def batch_started(rt: Runtime, fleet, batch_id: str, deployment_ids: list[str]) -> list[str]:
    """Create the batch's budget (when the fleet asks for one). Returns warnings; never raises."""
    first = deployment_ids[0] if deployment_ids else None
    settings = {"explorer": fleet.aws_cost.explorer, "budget": None}
    warnings = []
    if fleet.aws_cost.budget is not None:
        try:
            made = billing.create_batch_budget(batch_id, fleet.aws_cost.budget)
            settings["budget"] = made["name"]
            if first:
                journals.note_unfenced(rt.store, first, PROCEDURE, "budget", "done", made)
        except AwsError as e:
            warnings.append(_warn(rt, first, "budget not created", e))
    if first:
        journals.note_unfenced(rt.store, first, PROCEDURE, "settings", "done", settings)
    return warnings


def tag_green(region: str, arns: list[str], batch_id: str, deployment_id: str, cluster: str) -> str | None:
    """Cost allocation tags on green; a warning (not raised) when RDS refuses."""
    try:
        billing.tag(region, arns, {billing.TAG_BATCH: batch_id, billing.TAG_DEPLOYMENT: deployment_id,
                                   "bgqueue:cluster": cluster})
    except AwsError as e:
        return f"green not tagged for Cost Explorer: {e}"
    return None


def retag(region: str, new: list[str], old: list[str], batch_id: str, deployment_id: str, cluster: str) -> str | None:
    try:
        billing.untag(region, new)
        billing.tag(region, old, {billing.TAG_BATCH: batch_id, billing.TAG_DEPLOYMENT: deployment_id,
                                  "bgqueue:cluster": cluster})
    except AwsError as e:
        return f"cost allocation tags not moved at the switchover: {e}"
    return None


def _settings(rt: Runtime, rows) -> dict:
    for d in rows:
        for s in journals.steps(rt.store, d.id, PROCEDURE):
            if s.name == "settings":
                return s.detail or {}
    return {}


def estimated_cost(dep, until=None) -> float | None:
    """Green's hourly estimate × the hours it has coexisted with blue (from its deployment's start)."""
    per_hour = ((dep.facts or {}).get("cost") or {}).get("green_per_hour")
    start = as_aware(dep.created_at)
    if per_hour is None or start is None:
        return None
    end = as_aware(dep.decommissioned_at) or until or utcnow()
    return round(per_hour * max(0.0, (end - start).total_seconds()) / 3600, 4)


def batch_ended(rt: Runtime, batch_id: str, rows) -> dict:
    """The batch's cost part of its summary; deletes its budget. Never raises."""
    settings = _settings(rt, rows)
    first = rows[0].id if rows else None
    out: dict = {"estimate": {"green_per_hour": round(sum(((d.facts or {}).get("cost") or {}).get("green_per_hour")
                                                          or 0.0 for d in rows), 4),
                              "so_far": round(sum(estimated_cost(d) or 0.0 for d in rows), 4),
                              "by_deployment": {d.id: estimated_cost(d) for d in rows}},
                 "warnings": []}
    if settings.get("budget"):
        try:
            out["budget_deleted"] = billing.delete_batch_budget(batch_id)
            out["budget"] = settings["budget"]
        except AwsError as e:
            out["warnings"].append(_warn(rt, first, "budget not deleted", e))
    if settings.get("explorer", True) and rows:
        start = min(as_aware(d.created_at) for d in rows).date()
        try:
            out["explorer"] = billing.cost_by_deployment(tag_key=billing.TAG_BATCH, values=[batch_id], start=start)
        except AwsError as e:
            out["warnings"].append(_warn(rt, first, "explorer unreadable", e))
    return out


def real_costs(rows) -> tuple[dict[str, float], list[str]]:
    """Cost Explorer's cost of each deployment (one call for all), and warnings."""
    if not rows:
        return {}, []
    start = (min(as_aware(d.created_at) for d in rows) - timedelta(days=1)).date()
    try:
        got = billing.cost_by_deployment(tag_key=billing.TAG_DEPLOYMENT, values=[d.id for d in rows], start=start)
    except AwsError as e:
        return {}, [str(e)]
    return got["by_deployment"], []
