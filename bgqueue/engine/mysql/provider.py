"""The ``mysql`` provider: blue and green are servers bgqueue reaches by SQL (self-managed MySQL or
MariaDB, or RDS instances used as plain servers). Its switchover is bgqueue's own procedure."""
from __future__ import annotations

from typing import Any

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.runtime import Runtime
from bgqueue.checks import sync
from bgqueue.checks.drift import parameter_drift
from bgqueue.checks.registry import SQL_CHECKS, checksum
from bgqueue.checks.replication import replication_health
from bgqueue.engine import monitoring
from bgqueue.engine.mysql import preflight, rollback, steps
from bgqueue.model.errors import BadInput, BgqueueError
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.outcomes import ClusterCheck, MonitorFigures, Next

NIGHTLY_CHECKS = (("replication_health", replication_health), ("parameter_drift", parameter_drift),
                  ("checksum", checksum))


class MysqlProvider:
    name = "mysql"
    creates_environments = False  # green is the operator's replica

    def prepare(self, rt: Runtime, deployment_id: str) -> Next:
        return steps.prepare(rt, deployment_id)

    def wait_for_sync(self, rt: Runtime, deployment_id: str) -> Next:
        return steps.wait_for_sync(rt, deployment_id)

    def check_names(self, spec: Any) -> list[str]:
        return list(SQL_CHECKS)

    def switch(self, rt: Runtime, deployment_id: str) -> Next:
        return steps.switch(rt, deployment_id)

    def procedure_poll_s(self, spec: Any) -> float:
        return 0.0  # the procedure runs in one task, renewing its lease as it goes

    def on_no_go(self, rt: Runtime, dep: Any) -> None:
        """Nothing to remove: bgqueue built nothing (green is the operator's replica)."""

    def monitor_baseline(self, metrics: Any, spec: Any, started: float) -> dict:
        return monitoring.baseline(metrics, spec, started)

    def monitor_figures(self, rt: Runtime, metrics: Any, spec: Any, *, since: float, now: float,
                        unhealthy_pipelines: tuple[str, ...]) -> MonitorFigures:
        return monitoring.figures(metrics, spec, spec.green, since=since, now=now,
                                  eval_s=spec.thresholds.monitor_eval_s, unhealthy_pipelines=unhealthy_pipelines)

    def window_end_findings(self, spec: Any, figures: dict) -> tuple[dict, list[str]]:
        """At the end of the monitoring window: is blue replicating from green, and was the window
        observed at all? Returns (reverse replication state, reasons for concern)."""
        blue, green = servers(spec)
        try:
            state = sync.assess(green, blue, spec.green).as_dict()
        except BgqueueError as e:
            state = {"replicating": False, "problems": [str(e)]}
        finally:
            blue.close()
            green.close()
        reasons = [] if state.get("replicating") else ["reverse replication is not healthy: " +
                                                       "; ".join(state.get("problems", []))]
        if not figures.get("samples"):
            # Nothing measured is not a clean pass: say so (the sampler was down, or lost the cluster).
            reasons.append(f"the monitoring window ended unobserved: no samples of the new primary in the last "
                           f"{spec.thresholds.monitor_eval_s:g}s (is `bgqueue sampler run` running?)")
        return state, reasons

    def rollback_preconditions(self, rt: Runtime, dep: Any) -> list[str]:
        return rollback.preconditions(rt, dep)

    def roll_back(self, rt: Runtime, deployment_id: str, reason: str) -> Next:
        return rollback.roll_back(rt, deployment_id, reason)

    def decommission(self, rt: Runtime, dep: Any, *, force: bool) -> tuple[str, dict]:
        """Stop reverse replication on the old primary: blue is free."""
        spec = ClusterSpec.model_validate(dep.spec)
        blue, _green = servers(spec)
        try:
            blue.stop_replication()
        except BgqueueError as e:
            raise BadInput(f"{dep.cluster}: cannot reach blue {spec.blue} to stop reverse replication: {e}") from None
        finally:
            blue.close()
        return (f"blue {spec.blue} decommissioned: reverse replication stopped, the server is free",
                {"blue": str(spec.blue), "forced": force, "note": "reverse replication stopped; blue is free"})

    def preflight(self, specs: list) -> list[ClusterCheck]:
        return preflight.check_clusters(specs)

    def check_budget(self, fleet: Any, specs: list, fleet_path: str) -> dict | None:
        return None  # no cloud resources are created: nothing to budget

    def nightly_checks(self, spec: Any) -> tuple:
        return NIGHTLY_CHECKS

    def batch_started(self, rt: Runtime, fleet: Any, batch_id: str, deployment_ids: list[str]) -> list[str]:
        return []  # nothing billed by bgqueue

    def batch_ended(self, rt: Runtime, batch_id: str, rows: list) -> dict:
        return {}

    def real_costs(self, rows: list) -> tuple[dict[str, float], list[str]]:
        return {}, []


MYSQL = MysqlProvider()
