"""The ``rds`` provider: Amazon RDS / Aurora MySQL switched by the RDS Blue/Green Deployments API.

AWS builds green, keeps it in sync and performs the switchover; bgqueue obtains the blue/green
deployment, validates it with RDS's own figures, requests and follows the switchover, moves the
CDC pipelines and the application's configuration, and decommissions the ``-oldN`` copy.
"""
from __future__ import annotations

from typing import Any

from bgqueue.adapters.aws import cost
from bgqueue.adapters.runtime import Runtime
from bgqueue.checks.rds import RDS_CHECKS
from bgqueue.checks.registry import COMMON
from bgqueue.engine.rds import costs, decommission, evidence, preflight, rollback, steps, switchover
from bgqueue.model.outcomes import ClusterCheck, MonitorFigures, Next


class RdsProvider:
    name = "rds"
    creates_environments = True  # green is built by AWS and billed beside blue

    def prepare(self, rt: Runtime, deployment_id: str) -> Next:
        return steps.prepare(rt, deployment_id)

    def wait_for_sync(self, rt: Runtime, deployment_id: str) -> Next:
        return steps.wait_for_sync(rt, deployment_id)

    def check_names(self, spec: Any) -> list[str]:
        return [*RDS_CHECKS, *COMMON]

    def switch(self, rt: Runtime, deployment_id: str) -> Next:
        return switchover.switch(rt, deployment_id)

    def procedure_poll_s(self, spec: Any) -> float:
        return spec.thresholds.sync_poll_s  # AWS runs the switchover; each poll is a task

    def on_no_go(self, rt: Runtime, dep: Any) -> None:
        steps.on_no_go(rt, dep)

    def monitor_baseline(self, metrics: Any, spec: Any, started: float) -> dict:
        return evidence.baseline(spec, started)  # blue on CloudWatch before the switchover

    def monitor_figures(self, rt: Runtime, metrics: Any, spec: Any, *, since: float, now: float,
                        unhealthy_pipelines: tuple[str, ...]) -> MonitorFigures:
        return evidence.figures(rt, spec, since=since, now=now, unhealthy_pipelines=unhealthy_pipelines)

    def window_end_findings(self, spec: Any, figures: dict) -> tuple[dict, list[str]]:
        # The old environment is kept (renamed -oldN) but does not replicate from the new one.
        return evidence.window_end_findings(spec, figures)

    def rollback_preconditions(self, rt: Runtime, dep: Any) -> list[str]:
        return rollback.preconditions(rt, dep)

    def roll_back(self, rt: Runtime, deployment_id: str, reason: str) -> Next:
        return rollback.roll_back(rt, deployment_id, reason)  # a blue/green deployment back

    def decommission(self, rt: Runtime, dep: Any, *, force: bool) -> tuple[str, dict]:
        return decommission.decommission(rt, dep, force=force)

    def preflight(self, specs: list) -> list[ClusterCheck]:
        return preflight.check_clusters(specs)

    def check_budget(self, fleet: Any, specs: list, fleet_path: str) -> dict | None:
        return cost.check_budget(fleet, specs, fleet_path)

    def nightly_checks(self, spec: Any) -> tuple:
        return ()  # health is CloudWatch's (alarms); cost is counted fleet-wide

    def batch_started(self, rt: Runtime, fleet: Any, batch_id: str, deployment_ids: list[str]) -> list[str]:
        return costs.batch_started(rt, fleet, batch_id, deployment_ids)

    def batch_ended(self, rt: Runtime, batch_id: str, rows: list) -> dict:
        return costs.batch_ended(rt, batch_id, rows)

    def real_costs(self, rows: list) -> tuple[dict[str, float], list[str]]:
        return costs.real_costs(rows)


RDS = RdsProvider()
