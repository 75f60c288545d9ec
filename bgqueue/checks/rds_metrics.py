"""CloudWatch metrics as evidence (rds provider): green held to blue over a window.

    rds_metrics   before the switchover: green's and blue's figures over the last
                  ``evidence.window_s`` (one GetMetricData call for both sides and every metric)
    baseline()    blue's figures in the ``evidence.baseline_s`` before the switchover
    current()     the new primary's figures since the switchover (one call per monitoring tick)
    compare()     pure: the rule of each metric (``bgqueue.model.rds_evidence``) applied

Where the metrics live: CloudWatch keys RDS metrics by identifier at publication time. A DB
instance's are read with ``DBInstanceIdentifier``, an Aurora cluster's with ``DBClusterIdentifier``.
RDS moves the names at the switchover, so blue's pre-switchover figures and the new primary's
figures are both under the source's identifier, told apart by time; green's before the switchover
are under its own identifier (``<name>-green-xxxxxx``).

No datapoints is never a pass: a required metric missing on a side is "no evidence yet".
"""
from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import utcnow
from bgqueue.checks.context import CheckContext
from bgqueue.model.rds_evidence import MetricRule, RdsEvidence
from bgqueue.model.results import ERROR, CheckResult, failed, passed, waiting

NAMESPACE = "AWS/RDS"
MAX_QUERIES = 500  # GetMetricData's limit per call


def applicable(evidence: RdsEvidence, kind: str) -> dict[str, MetricRule]:
    """The rules that apply to a source of ``kind`` (instance | cluster)."""
    return {m: r for m, r in evidence.metrics.items() if r.level in ("any", kind)}


def _dimension(kind: str, identifier: str) -> list[dict]:
    return [{"Name": "DBInstanceIdentifier" if kind == "instance" else "DBClusterIdentifier", "Value": identifier}]


def _aggregate(stat: str, values: list[float]) -> float | None:
    if not values:
        return None
    if stat == "Maximum":
        return max(values)
    if stat == "Minimum":
        return min(values)
    if stat == "Sum":
        return float(sum(values))
    return statistics.fmean(values)


def fetch(region: str, sides: dict[str, tuple[str, str]], rules: dict[str, MetricRule], *,
          start: datetime, end: datetime, period_s: int) -> dict[str, dict[str, float | None]]:
    """``{side: {metric: value or None}}`` for every side (``{side: (kind, identifier)}``) in ONE
    GetMetricData call (pages followed, never more queries than its limit). Raises ClientError & co."""
    queries, index = [], {}
    for s, (kind, ident) in sides.items():
        for i, (metric, rule) in enumerate(rules.items()):
            qid = f"{s[:1]}{len(queries)}x{i}"
            index[qid] = (s, metric, rule.stat)
            queries.append({"Id": qid, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": _dimension(kind, ident)},
                "Period": period_s, "Stat": rule.stat}})
    if len(queries) > MAX_QUERIES:
        raise ValueError(f"{len(queries)} metric queries: GetMetricData takes at most {MAX_QUERIES}")
    values: dict[str, list[float]] = {q: [] for q in index}
    cw = aws.client("cloudwatch", region)
    token = None
    while True:  # one call; more pages only when CloudWatch splits a large answer
        kwargs = {"NextToken": token} if token else {}
        page = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end, **kwargs)
        for r in page.get("MetricDataResults", []):
            values[r["Id"]] += [float(v) for v in r.get("Values", [])]
        token = page.get("NextToken")
        if not token:
            break
    out: dict[str, dict[str, float | None]] = {s: {} for s in sides}
    for qid, (s, metric, stat) in index.items():
        out[s][metric] = _aggregate(stat, values[qid])
    return out


def compare(rules: dict[str, MetricRule], reference: dict[str, float | None],
            candidate: dict[str, float | None], labels: tuple[str, str] = ("blue", "green"),
            ) -> tuple[list[str], list[str], dict]:
    """Pure: ``(breaches, missing, table)``. ``missing`` names required metrics without evidence on
    either side (and optional ones green lacks are skipped); ``table`` is what the report shows."""
    breaches, missing, table = [], [], {}
    for metric, rule in rules.items():
        ref, got = reference.get(metric), candidate.get(metric)
        if got is None or (ref is None and rule.required):
            if rule.required:
                missing.append(metric + (f" ({labels[0]})" if ref is None else "")
                               + (f" ({labels[1]})" if got is None else ""))
            continue
        base = ref if ref is not None else 0.0
        if rule.worse == "higher":
            limit = max(base * rule.ratio, base + rule.floor)
            bad = got > limit
            how = f"above {limit:g} (baseline {base:g} × {rule.ratio:g}, at least +{rule.floor:g})"
        else:
            limit = min(base / rule.ratio, base - rule.floor)
            bad = got < limit
            how = f"below {limit:g} (baseline {base:g} / {rule.ratio:g}, at least −{rule.floor:g})"
        table[metric] = {"blue": ref, "green": got, "limit": limit, "stat": rule.stat, "breach": bad}
        if bad:
            breaches.append(f"{metric} ({rule.stat}) {got:g} is {how}")
    return breaches, missing, table


def _facts(ctx: CheckContext) -> dict:
    if "facts" in ctx.extra:
        return ctx.extra["facts"] or {}
    return deps.get_deployment(ctx.store, ctx.deployment_id).facts or {}


def rds_metrics(ctx: CheckContext) -> CheckResult:
    """Green against blue on CloudWatch over the last ``evidence.window_s`` (see the module docstring)."""
    name = "rds_metrics"
    ev: RdsEvidence = ctx.spec.evidence
    if not ev.enabled:
        return passed(name, "CloudWatch evidence disabled for this cluster (evidence.enabled: false)")
    facts = _facts(ctx)
    source, green = facts.get("source") or {}, facts.get("green") or {}
    if not green.get("identifier") or not source.get("identifier"):
        return waiting(name, "green or blue not described yet")
    kind = source.get("kind", "instance")
    rules = applicable(ev, kind)
    end = utcnow()
    try:
        got = fetch(ctx.spec.region, {"blue": (kind, source["identifier"]), "green": (kind, green["identifier"])},
                    rules, start=end - timedelta(seconds=ev.window_s), end=end + timedelta(seconds=1),
                    period_s=ev.period_s)  # the end is exclusive, and sent to the second
    except aws.AWS_ERRORS as e:
        return CheckResult(name, ERROR, f"CloudWatch GetMetricData: {aws.explain(e)}", retryable=True)
    breaches, missing, table = compare(rules, got["blue"], got["green"])
    evidence = {"window_s": ev.window_s, "blue": source["identifier"], "green": green["identifier"], "metrics": table,
                "missing": missing}
    if breaches:  # green may settle (caches warming): WAIT on it, NO_GO at the deadline
        return failed(name, "green is worse than blue: " + "; ".join(breaches), retryable=True,
                      value=len(breaches), threshold=0, evidence=evidence)
    if missing:
        return waiting(name, f"no evidence yet: no CloudWatch datapoints in the last {ev.window_s:g}s for "
                             + ", ".join(missing), evidence=evidence)
    return passed(name, f"{len(table)} metric(s) of green within their limits of blue's", value=0, threshold=0,
                  evidence=evidence)


def baseline(spec, before: datetime) -> dict:
    """Blue's figures in the ``evidence.baseline_s`` before ``before`` (the switchover's start), one call.
    ``{"cloudwatch": {metric: value}, "until": iso}``, or ``{"cloudwatch_error": ...}`` when unreadable."""
    ev: RdsEvidence = spec.evidence
    kind = "instance" if spec.db_instance_identifier else "cluster"
    try:
        got = fetch(spec.region, {"blue": (kind, spec.source_identifier)}, applicable(ev, kind),
                    start=before - timedelta(seconds=ev.baseline_s), end=before, period_s=ev.period_s)
    except aws.AWS_ERRORS as e:
        return {"cloudwatch_error": aws.explain(e), "until": before.isoformat()}
    return {"cloudwatch": got["blue"], "until": before.isoformat()}


def current(spec, since: datetime, now: datetime) -> dict[str, float | None]:
    """The new primary's figures over the last ``evidence.window_s``, never before ``since``, one call."""
    ev: RdsEvidence = spec.evidence
    kind = "instance" if spec.db_instance_identifier else "cluster"
    start = max(since, now - timedelta(seconds=ev.window_s))
    return fetch(spec.region, {"new": (kind, spec.source_identifier)}, applicable(ev, kind),
                 start=start, end=now + timedelta(seconds=1), period_s=ev.period_s)["new"]
