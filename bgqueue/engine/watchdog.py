"""Stalled procedures: a deployment left in SWITCHING or ROLLING_BACK by a worker that vanished.

Celery gives a late-acked task back only after the broker's visibility timeout (an hour by
default) when a whole worker host is lost, and a hard time limit acknowledges the task it kills:
meanwhile the old primary may sit fenced. Each step journals as it goes, so a procedure whose row
has not moved for longer than its longest bounded wait is stalled; the watchdog names it, and the
task layer resumes it (the resume observes the servers first, and fencing stops a duplicate).
"""
from __future__ import annotations

from dataclasses import dataclass

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.figures import in_phases
from bgqueue.adapters.store.models import utcnow
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.phases import Phase

# Beyond the procedure's own bounded wait (catch-up) a step is never this quiet.
QUIET_MARGIN_S = 60.0


@dataclass(frozen=True)
class Stalled:
    deployment_id: str
    batch_id: str
    phase: Phase
    reason: str | None
    quiet_s: float


def stalled(rt: Runtime, margin_s: float = QUIET_MARGIN_S) -> list[Stalled]:
    now = utcnow()
    rows = in_phases(rt.store, [Phase.SWITCHING, Phase.ROLLING_BACK])
    out = []
    for r in rows:
        quiet = (now - (deps.as_aware(r.updated_at) or now)).total_seconds()
        bound = cluster_spec(r.spec).thresholds.catchup_timeout_s + margin_s
        if quiet > bound:
            out.append(Stalled(r.id, r.batch_id, Phase(r.phase), r.reason, round(quiet, 1)))
    return out
