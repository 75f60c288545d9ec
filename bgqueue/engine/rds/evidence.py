"""The rds provider's monitoring window: the new primary on CloudWatch against blue's baseline.

    baseline  taken once, at the window's first tick: blue's figures in the ``evidence.baseline_s``
              before the switchover started (stored as the deployment's ``baseline``)
    figures   each tick: the new primary's figures since the switchover (ONE GetMetricData call
              for every metric), compared with the baseline by each metric's rule; a breach is a
              ``MonitorFigures.breaches`` reason, which the window turns into a ROLLBACK
A metric without datapoints is no evidence: it never breaches, and a window that ends with
required metrics still missing completes with a finding that says so (never a silent pass).
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime

from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.checks import rds_metrics
from bgqueue.checks.rds import alarms_in_alarm
from bgqueue.model.outcomes import MonitorFigures

log = logging.getLogger("bgqueue.rds")


def baseline(spec, started: float) -> dict:
    if not spec.evidence.enabled:
        return {}
    return rds_metrics.baseline(spec, datetime.fromtimestamp(started, UTC))


def figures(rt: Runtime, spec, *, since: float, now: float, unhealthy_pipelines: tuple[str, ...]) -> MonitorFigures:
    alarms = alarms_in_alarm(spec)
    dep = deps.active_deployment(rt.store, spec.name)
    replica_problems = (((dep.facts or {}).get("replicas") or {}).get("problems") or []) if dep is not None else []
    if not spec.evidence.enabled:
        return MonitorFigures(0, unhealthy_pipelines=unhealthy_pipelines, alarms=alarms,
                              evidence={"replica_problems": replica_problems})
    base = (dep.baseline if dep is not None else None) or {}
    if "cloudwatch" not in base and dep is not None and dep.switch_started_at is not None:
        # The stored baseline was unreadable (CloudWatch error): blue's window is in the past, read it again.
        base = rds_metrics.baseline(spec, deps.as_aware(dep.switch_started_at))
    rules = rds_metrics.applicable(spec.evidence, "instance" if spec.db_instance_identifier else "cluster")
    try:
        got = rds_metrics.current(spec, datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(now, UTC))
    except aws.AWS_ERRORS as e:  # this tick has no figure; the next one reads again
        log.warning("cluster=%s: CloudWatch GetMetricData: %s", spec.name, aws.explain(e))
        return MonitorFigures(0, unhealthy_pipelines=unhealthy_pipelines, alarms=alarms,
                              evidence={"error": aws.explain(e), "replica_problems": replica_problems})
    breaches, missing, table = rds_metrics.compare(rules, base.get("cloudwatch") or {}, got,
                                                  labels=("blue's baseline", "new primary"))
    return MonitorFigures(sum(v is not None for v in got.values()), unhealthy_pipelines=unhealthy_pipelines,
                          alarms=alarms, breaches=tuple(breaches),
                          evidence={"metrics": table, "missing": missing, "baseline_error": base.get("cloudwatch_error"),
                                    "replica_problems": replica_problems})


def window_end_findings(spec, figures: dict) -> tuple[dict, list[str]]:
    state = {"replicating": True, "problems": [], "note": "rds: no reverse replication"}
    ev = figures.get("evidence") or {}
    findings = [f"read replicas: {p}" for p in ev.get("replica_problems") or []]
    if spec.evidence.enabled and ev.get("missing"):
        findings.append("no CloudWatch evidence for the new primary at the window's end: " + ", ".join(ev["missing"]))
    if spec.evidence.enabled and ev.get("error"):
        findings.append(f"CloudWatch unreadable at the window's end: {ev['error']}")
    return state, findings
