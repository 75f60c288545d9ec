"""Owner liveness: every live deployment has a worker working on it, or it is re-driven from the store.

Celery gives a late-acked task back only after the broker's visibility timeout (an hour) when a
worker parent or a whole host is lost; a Redis that restarts empty loses every queued re-enqueue;
a hard time limit acknowledges the task it kills. The store is the authority, so the watchdog
judges each deployment that is not terminal by when a task last worked on it:

  SWITCHING, ROLLING_BACK  blue (or green) may sit fenced: the running procedure renews a short
                           lease with every journal write and every slice of its bounded waits;
                           a lease older than ``procedure_lease_s`` is taken over (the resume
                           observes the servers first, fencing and the server-side lock stop the
                           old worker);
  PENDING                  quiet for ``pending_stall_s`` (a deep queue at a batch's start is normal);
  any other live phase     quiet for ``stall_s`` beyond the phase's own poll interval.

"Worked on" is the later of ``updated_at`` (claims, transitions, journal writes) and
``heartbeat_at`` (every task execution, also ticks that only observe). A re-drive enqueues the
phase's step with the rest of the cluster's chain; a duplicate of a live chain is harmless, since
every step claims its phase first.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.figures import in_phases
from bgqueue.adapters.store.journal import note_unfenced
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine.providers import provider_for
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.phases import SERVER_CHANGING, TERMINAL, Phase

log = logging.getLogger("bgqueue.watchdog")

LIVE = [p for p in Phase if p not in TERMINAL]


@dataclass(frozen=True)
class Stalled:
    deployment_id: str
    batch_id: str
    phase: Phase
    reason: str | None
    quiet_s: float
    bound_s: float = 0.0


def _poll_s(phase: Phase, thresholds) -> float:
    """How long a healthy chain may itself leave the phase untouched between two ticks."""
    return {Phase.SYNCING: thresholds.sync_poll_s, Phase.VALIDATING: thresholds.sync_poll_s,
            Phase.MONITORING: thresholds.monitor_tick_s}.get(phase, 0.0)


def bound_s(rt: Runtime, phase: Phase, spec) -> float:
    s = rt.settings
    if phase in SERVER_CHANGING:
        # A provider that follows its switchover by polling (rds) is quiet between two polls.
        return s.procedure_lease_s + provider_for(spec).procedure_poll_s(spec)
    if phase == Phase.PENDING:
        return s.pending_stall_s
    return s.stall_s + _poll_s(phase, spec.thresholds)


def _plain_bound(rt: Runtime, phase: Phase) -> float:
    s = rt.settings
    if phase in SERVER_CHANGING:
        return s.procedure_lease_s
    return s.pending_stall_s if phase == Phase.PENDING else s.stall_s


def stalled(rt: Runtime, now: datetime | None = None) -> list[Stalled]:
    """Live deployments that no task has worked on for longer than their phase allows."""
    now = now or utcnow()
    out = []
    for r in in_phases(rt.store, LIVE):
        updated = deps.as_aware(r.updated_at) or now
        last = max(updated, deps.as_aware(r.heartbeat_at) or updated)
        quiet = (now - last).total_seconds()
        phase = Phase(r.phase)
        try:
            bound = bound_s(rt, phase, cluster_spec(r.spec))
        except ValueError as e:  # a stored spec this version cannot read: judged by the plain bounds
            log.warning("watchdog: deployment %s: its stored spec does not parse (%s); plain bounds apply",
                        r.id, str(e).splitlines()[0])
            bound = _plain_bound(rt, phase)
        if quiet > bound:
            out.append(Stalled(r.id, r.batch_id, phase, r.reason, round(quiet, 1), bound))
    return out


def mark_redriven(rt: Runtime, s: Stalled) -> None:
    """Record the re-drive (without claiming: it must not fence out a live owner) and reset the
    liveness mark, so that the next watchdog run gives the re-driven task time to start."""
    deps.heartbeat(rt.store, s.deployment_id)
    note_unfenced(rt.store, s.deployment_id, "watchdog", "redrive", "done",
                  {"phase": s.phase.value, "quiet_s": s.quiet_s, "bound_s": s.bound_s})
