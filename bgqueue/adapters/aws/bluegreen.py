"""The RDS Blue/Green Deployments API: find, create, describe, switch over, delete — and what a
description means for the deployment (``assess``).

Every blue/green deployment bgqueue creates is tagged with the deployment id, the cluster and
the change's fingerprint, so that a re-run after a crash (or a new batch after a failed one)
finds it by its source ARN and adopts it instead of creating a second one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bgqueue.adapters.aws import clients as aws

TAG_DEPLOYMENT, TAG_CLUSTER, TAG_CHANGE = "bgqueue:deployment", "bgqueue:cluster", "bgqueue:change"
NOT_FOUND = {"BlueGreenDeploymentNotFoundFault", "BlueGreenDeploymentNotFound"}
GONE = ("SWITCHOVER_COMPLETED", "DELETING")  # a source's past deployments, not candidates for adoption
MIN_SWITCHOVER_S, MAX_SWITCHOVER_S = 30, 3600


def tags(bg: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in bg.get("TagList") or []}


def name_for(cluster: str, deployment_id: str) -> str:
    """A valid BlueGreenDeploymentName (letters, digits, hyphens; ≤ 60) naming the cluster and deployment."""
    base = re.sub(r"[^A-Za-z0-9-]", "-", cluster)[:42].strip("-")
    return re.sub(r"-{2,}", "-", f"bgq-{base}-{deployment_id[:8]}")


def target_parameters(change, kind: str) -> dict:
    """CreateBlueGreenDeployment's Target* parameters for an RdsChange (only what the change sets)."""
    pairs = [("TargetEngineVersion", change.engine_version),
             ("TargetDBParameterGroupName", change.parameter_group)]
    if kind == "cluster":
        pairs.append(("TargetDBClusterParameterGroupName", change.cluster_parameter_group))
    else:
        pairs += [("TargetDBInstanceClass", change.instance_class),
                  ("TargetAllocatedStorage", change.allocated_storage), ("TargetStorageType", change.storage_type),
                  ("TargetIops", change.iops), ("TargetStorageThroughput", change.storage_throughput)]
    return {k: v for k, v in pairs if v is not None}


def find_for_source(region: str, source_arn: str) -> list[dict]:
    """Blue/green deployments whose source is ``source_arn`` and that are not over."""
    rds = aws.client("rds", region)
    try:
        found = rds.describe_blue_green_deployments(
            Filters=[{"Name": "source", "Values": [source_arn]}])["BlueGreenDeployments"]
    except aws.AWS_ERRORS as e:
        raise aws.failure(f"cannot list blue/green deployments of {source_arn}", e) from None
    return [bg for bg in found if bg.get("Status") not in GONE]


def create(region: str, *, name: str, source_arn: str, params: dict, tag_values: dict[str, str]) -> dict:
    rds = aws.client("rds", region)
    return rds.create_blue_green_deployment(
        BlueGreenDeploymentName=name, Source=source_arn, **params,
        Tags=[{"Key": k, "Value": v} for k, v in tag_values.items()])["BlueGreenDeployment"]


def describe(region: str, bg_id: str) -> dict | None:
    """The blue/green deployment, or None when it does not exist (any more)."""
    rds = aws.client("rds", region)
    try:
        return rds.describe_blue_green_deployments(BlueGreenDeploymentIdentifier=bg_id)["BlueGreenDeployments"][0]
    except aws.AWS_ERRORS as e:
        if aws.error_code(e) in NOT_FOUND:
            return None
        raise aws.failure(f"cannot describe blue/green deployment {bg_id}", e) from None


def switchover(region: str, bg_id: str, timeout_s: int) -> dict:
    """Ask RDS to switch over (raises ClientError when a guardrail or the state refuses it)."""
    rds = aws.client("rds", region)
    return rds.switchover_blue_green_deployment(BlueGreenDeploymentIdentifier=bg_id,
                                                SwitchoverTimeout=int(timeout_s))["BlueGreenDeployment"]


def delete(region: str, bg_id: str, *, delete_target: bool) -> bool:
    """Delete the blue/green deployment (and green with it when ``delete_target``, only before a
    switchover). False when it was already gone."""
    rds = aws.client("rds", region)
    try:
        rds.delete_blue_green_deployment(BlueGreenDeploymentIdentifier=bg_id, DeleteTarget=delete_target)
    except aws.AWS_ERRORS as e:
        if aws.error_code(e) in NOT_FOUND:
            return False
        raise aws.failure(f"cannot delete blue/green deployment {bg_id}", e) from None
    return True


def switchover_timeout_s(thresholds) -> int:
    """SwitchoverTimeout for RDS, from the cluster's thresholds.

    The mysql provider's ``catchup_timeout_s`` bounds how long writes may stay fenced while green
    catches up; RDS's SwitchoverTimeout bounds the whole switchover (guardrails, catch-up,
    renames), after which RDS rolls it back. Mapping: 60 × catchup_timeout_s, clamped to RDS's
    30–3600 s — the default 5 s gives RDS's own default of 300 s.
    """
    return int(min(MAX_SWITCHOVER_S, max(MIN_SWITCHOVER_S, round(60 * thresholds.catchup_timeout_s))))


@dataclass(frozen=True)
class Assessment:
    """What a description means. state: waiting | ready | switching | switched | switch_failed | failed."""

    state: str
    status: str
    reason: str = ""


def _members(bg: dict, statuses: set[str]) -> list[str]:
    return [f"{d.get('SourceMember')} → {d.get('TargetMember')}: {d.get('Status')}"
            for d in bg.get("SwitchoverDetails") or [] if d.get("Status") in statuses]


def assess(bg: dict) -> Assessment:
    """Pure: the blue/green deployment's status (and its members' and tasks') as a decision."""
    status = bg.get("Status", "?")
    details = bg.get("StatusDetails") or ""
    ident = bg.get("BlueGreenDeploymentIdentifier", "?")
    missing = _members(bg, {"MISSING_SOURCE", "MISSING_TARGET"})
    if missing:
        return Assessment("failed", status, f"blue/green deployment {ident}: members missing: {'; '.join(missing)}")
    failed_tasks = [t["Name"] for t in bg.get("Tasks") or [] if t.get("Status") == "FAILED"]
    if failed_tasks:
        return Assessment("failed", status, f"blue/green deployment {ident}: provisioning failed "
                                            f"(tasks {', '.join(failed_tasks)})" + (f": {details}" if details else ""))
    if status == "PROVISIONING":
        return Assessment("waiting", status)
    if status == "AVAILABLE":
        invalid = _members(bg, {"INVALID_CONFIGURATION", "SWITCHOVER_FAILED"})
        if invalid:
            return Assessment("failed", status, f"blue/green deployment {ident}: {'; '.join(invalid)}")
        pending = _members(bg, {"PROVISIONING"})
        return Assessment("waiting", status, "; ".join(pending)) if pending else Assessment("ready", status)
    if status == "SWITCHOVER_IN_PROGRESS":
        return Assessment("switching", status)
    if status == "SWITCHOVER_COMPLETED":
        return Assessment("switched", status)
    if status == "SWITCHOVER_FAILED":
        return Assessment("switch_failed", status, f"RDS reports SWITCHOVER_FAILED for {ident}"
                                                   + (f": {details}" if details else ""))
    if status == "INVALID_CONFIGURATION":
        members = _members(bg, {"INVALID_CONFIGURATION"})
        return Assessment("failed", status, f"RDS reports INVALID_CONFIGURATION for {ident}"
                                            + (f": {details}" if details else "")
                                            + (f" ({'; '.join(members)})" if members else ""))
    return Assessment("failed", status, f"blue/green deployment {ident} is {status}" + (f": {details}" if details else ""))
