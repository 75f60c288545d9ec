"""Pre-switchover checks of the rds provider (light: a round of them runs in the validate task) and the monitoring
window's alarm figure. Every check returns a CheckResult and never raises: an AWS error is an
``error`` result (retryable, so validation waits for it until its deadline). The blue/green
deployment's own health is not a check here: wait_for_sync saw it AVAILABLE, and the switchover
step assesses it again (and RDS's guardrails too) before anything changes.

    rds_alarms            the cluster's CloudWatch alarms (alarms.prefix and/or alarms.tag) are all OK
    rds_replica_lag       green's ReplicaLag (AuroraBinlogReplicaLag for Aurora) below max_lag_s
    rds_parameter_groups  blue's and green's parameter groups compared, behaviour-changing values flagged
    rds_metrics           green vs blue on CloudWatch metrics over a window (``checks.rds_metrics``)
"""
from __future__ import annotations

import functools
import logging
from datetime import timedelta

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import utcnow
from bgqueue.checks import rds_params as params
from bgqueue.checks.context import Check, CheckContext
from bgqueue.checks.drift import MAX_LISTED
from bgqueue.checks.rds_metrics import rds_metrics
from bgqueue.model.results import ERROR, CheckResult, failed, passed, waiting

log = logging.getLogger("bgqueue.rds")
LAG_PERIOD_S = 60  # RDS publishes replica lag once a minute


def _safe(name: str):
    """AWS errors become an ``error`` result naming the call's failure (retryable)."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(ctx: CheckContext) -> CheckResult:
            try:
                return fn(ctx)
            except (*aws.AWS_ERRORS, aws.AwsError) as e:
                return CheckResult(name, ERROR, aws.explain(e) if not isinstance(e, aws.AwsError) else str(e),
                                   retryable=True)
        return run
    return wrap


def _facts(ctx: CheckContext) -> dict:
    """The deployment's facts: from the context when the caller put them there, else from the store."""
    if "facts" in ctx.extra:
        return ctx.extra["facts"] or {}
    return deps.get_deployment(ctx.store, ctx.deployment_id).facts or {}


def select_alarms(spec) -> list[dict]:
    """The cluster's alarms (metric and composite): by name prefix, by tag (Resource Groups Tagging
    API, one call for every tagged alarm), or both (their intersection)."""
    cw = aws.client("cloudwatch", spec.region)
    sel = spec.alarms
    names: set[str] | None = None
    if sel.tag:
        tagging = aws.client("resourcegroupstaggingapi", spec.region)
        names = set()
        for page in tagging.get_paginator("get_resources").paginate(
                ResourceTypeFilters=["cloudwatch:alarm"],
                TagFilters=[{"Key": k, "Values": [v]} for k, v in sel.tag.items()]):
            names |= {m["ResourceARN"].split(":alarm:", 1)[-1] for m in page.get("ResourceTagMappingList", [])}
        if not names:
            return []
    found: list[dict] = []
    if sel.prefix or names is None:
        kwargs = {"AlarmNamePrefix": sel.prefix} if sel.prefix else {}
        for page in cw.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm", "CompositeAlarm"], **kwargs):
            found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
        if names is not None:
            found = [a for a in found if a["AlarmName"] in names]
    else:
        listed = sorted(names)
        for i in range(0, len(listed), 100):  # describe_alarms takes at most 100 names
            page = cw.describe_alarms(AlarmNames=listed[i:i + 100], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
    return found


@_safe("rds_alarms")
def alarms(ctx: CheckContext) -> CheckResult:
    sel = ctx.spec.alarms
    if not sel.prefix and not sel.tag:
        return passed("rds_alarms", "no alarms selected (set alarms.prefix and/or alarms.tag)")
    found = select_alarms(ctx.spec)
    states = {a["AlarmName"]: a.get("StateValue") for a in found}
    evidence = {"selection": sel.model_dump(), "alarms": states}
    if not found:  # a selection that matches nothing would leave the monitoring window blind
        return failed("rds_alarms", f"the selection {sel.model_dump(exclude_defaults=True)} matches no CloudWatch alarm",
                      evidence=evidence)
    firing = sorted(n for n, s in states.items() if s == "ALARM")
    unknown = sorted(n for n, s in states.items() if s not in ("OK", "ALARM"))
    if firing:
        return failed("rds_alarms", f"in ALARM: {', '.join(firing)}", retryable=True, value=len(firing), threshold=0,
                      evidence=evidence)
    if unknown:
        return waiting("rds_alarms", f"not yet OK (insufficient data): {', '.join(unknown)}", evidence=evidence)
    return passed("rds_alarms", f"{len(found)} alarm(s) OK", value=0, threshold=0, evidence=evidence)


@_safe("rds_replica_lag")
def replica_lag(ctx: CheckContext) -> CheckResult:
    green = _facts(ctx).get("green") or {}
    writer = green.get("writer_instance")
    if not writer:
        return waiting("rds_replica_lag", "green's writer instance is not known yet")
    metric = "AuroraBinlogReplicaLag" if green.get("kind") == "cluster" else "ReplicaLag"
    t = ctx.spec.thresholds
    span = max(t.lag_window_s, LAG_PERIOD_S)
    end = utcnow()
    points = aws.client("cloudwatch", ctx.spec.region).get_metric_statistics(
        Namespace="AWS/RDS", MetricName=metric, Dimensions=[{"Name": "DBInstanceIdentifier", "Value": writer}],
        StartTime=end - timedelta(seconds=span), EndTime=end + timedelta(seconds=1), Period=LAG_PERIOD_S,
        Statistics=["Maximum"])["Datapoints"]
    evidence = {"metric": metric, "instance": writer, "window_s": span, "datapoints": len(points)}
    if not points:
        return waiting("rds_replica_lag", f"no {metric} datapoints for {writer} in the last {span:g}s", evidence=evidence)
    worst = max(p["Maximum"] for p in points)
    if worst < 0:  # RDS reports -1 while replication is not running
        return failed("rds_replica_lag", f"{metric} of {writer} is {worst:g}: replication is not running",
                      retryable=True, value=worst, threshold=t.max_lag_s, evidence=evidence)
    if worst >= t.max_lag_s:
        return failed("rds_replica_lag", f"{metric} of {writer} reached {worst:g}s in the last {span:g}s "
                                         f"(must stay below {t.max_lag_s:g}s)", retryable=True, value=worst,
                      threshold=t.max_lag_s, evidence=evidence)
    return passed("rds_replica_lag", f"{metric} at most {worst:g}s", value=worst, threshold=t.max_lag_s,
                  evidence=evidence)


@_safe("rds_parameter_groups")
def parameter_groups(ctx: CheckContext) -> CheckResult:
    facts = _facts(ctx)
    report = params.compare(ctx.spec.region, facts.get("source") or {}, facts.get("green") or {}, ctx.spec.change)
    evidence = {k: v[:MAX_LISTED] for k, v in report.items()}
    evidence["counts"] = {k: len(v) for k, v in report.items() if k != "groups"}
    problems = [f"{d['name']} differs (blue {d['blue']!r}, green {d['green']!r}) and the change does not declare it"
                for d in report["behaviour_changing"]]
    problems += [f"{d['name']}: the change declares {d['intended']!r} but green has {d['green']!r}"
                 for d in report["intended_not_applied"]]
    if problems:
        return failed("rds_parameter_groups", "; ".join(problems), value=len(problems), threshold=0, evidence=evidence)
    return passed("rds_parameter_groups", f"{len(report['intended'])} intended, {len(report['other'])} other "
                                          "differences", value=0, threshold=0, evidence=evidence)


RDS_CHECKS: dict[str, Check] = {
    "rds_alarms": alarms,
    "rds_replica_lag": replica_lag,
    "rds_parameter_groups": parameter_groups,
    "rds_metrics": rds_metrics,
}


def alarms_in_alarm(spec) -> tuple[str, ...]:
    """Names of the cluster's selected alarms now in ALARM (the monitoring window rolls back / fails on any).

    A CloudWatch read error is logged and counts as no alarm for this tick: the window's next
    tick reads again (the hook has no way to report "unknown"; see the provider's notes).
    """
    if not spec.alarms.prefix and not spec.alarms.tag:
        return ()
    try:
        return tuple(sorted(a["AlarmName"] for a in select_alarms(spec) if a.get("StateValue") == "ALARM"))
    except (*aws.AWS_ERRORS, aws.AwsError) as e:
        log.warning("cluster=%s: CloudWatch alarms unreadable: %s", spec.name, aws.explain(e))
        return ()
