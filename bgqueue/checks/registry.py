"""Every pre-switchover check by name: a validation chord runs one task per entry; a round of light
checks only runs them one after the other in the validate task (``tasks.validation.HEAVY``)."""
from __future__ import annotations

from bgqueue.checks.activity import blue_activity
from bgqueue.checks.context import Check, CheckContext
from bgqueue.checks.drift import parameter_drift
from bgqueue.checks.governance import signoffs, staging_gate
from bgqueue.checks.rds import RDS_CHECKS
from bgqueue.checks.readiness import event_scheduler, reverse_readiness
from bgqueue.checks.replay.check import query_replay
from bgqueue.checks.replication import replication_health, replication_lag
from bgqueue.checks.routing import routing_readiness
from bgqueue.model.results import CheckResult, passed


def checksum(ctx: CheckContext) -> CheckResult:
    """Critical tables compared chunk by chunk at one point of the replication stream."""
    if not ctx.spec.critical_tables:
        return passed("checksum", "no critical tables named")
    from bgqueue.checks.checksum import check_checksums

    return check_checksums(ctx.blue, ctx.green, ctx.spec.critical_tables,
                           catchup_timeout_s=max(30.0, ctx.spec.thresholds.catchup_timeout_s))


# The checks of a cluster reached by SQL sessions (the mysql provider's validation).
SQL_CHECKS: dict[str, Check] = {
    "replication_health": replication_health,
    "replication_lag": replication_lag,
    "checksum": checksum,
    "parameter_drift": parameter_drift,
    "blue_activity": blue_activity,
    "event_scheduler": event_scheduler,
    "reverse_readiness": reverse_readiness,
    "signoffs": signoffs,
    "staging": staging_gate,
    "routing": routing_readiness,
    "query_replay": query_replay,
}

# Checks that need no SQL session: they serve every provider.
COMMON = ("signoffs", "staging")

CHECKS: dict[str, Check] = {**SQL_CHECKS, **RDS_CHECKS}


def check_named(name: str) -> Check:
    """The check function of that name (which checks a cluster runs is its provider's choice)."""
    return CHECKS[name]
