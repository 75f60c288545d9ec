"""The monitoring window after a switchover: watch green against blue's baseline, roll back on a
breach, finish (COMPLETED, retention starts) when the window ends. Driven by re-enqueued ticks."""
from __future__ import annotations

import time
from datetime import timedelta

from bgqueue.adapters.cdc.migration import pipeline_health
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store import validation as records
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine import claims, rollback
from bgqueue.engine.decision import HOLD, ROLLBACK, decide_monitoring
from bgqueue.engine.providers import provider_for
from bgqueue.model.fleet import cluster_spec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase

AUTOMATIC = "automatic rollback: "


def _unhealthy_pipelines(rt: Runtime, spec) -> tuple[str, ...]:
    if not spec.pipelines:
        return ()
    return tuple(h.pipeline for h in pipeline_health(spec, rt.redis, routing=rt.routing) if not h.healthy)


def _record(rt: Runtime, deployment_id: str, verdict: str, reasons: list[str]) -> None:
    records.record_round(rt.store, deployment_id, records.next_round(rt.store, deployment_id, "monitor"), [],
                         verdict, reasons, kind="monitor")


def monitor(rt: Runtime, deployment_id: str) -> Next:
    """One tick of the window (MONITORING): HOLD and tick again, roll back, or complete.
    A rollback this window started goes on here while its CDC pipelines move back."""
    current = deps.get_deployment(rt.store, deployment_id)
    if current.phase == Phase.ROLLING_BACK:
        if (current.reason or "").startswith(AUTOMATIC):
            return rollback.roll_back(rt, deployment_id, current.reason or AUTOMATIC)
        return DONE  # an operator's rollback: its own task carries it (two runners would fence each other)
    if current.phase != Phase.MONITORING:
        return DONE
    # Observe first, claim only to act: a tick that HOLDs writes nothing, so it never fences out
    # an operator's rollback of the same deployment.
    dep = current
    spec = cluster_spec(dep.spec)
    provider = provider_for(dep)
    t = spec.thresholds
    claims.refresh_lock(rt, dep)
    from bgqueue.engine.validation import metrics_store

    metrics = metrics_store(rt)
    switched_at = (deps.as_aware(dep.switch_ended_at) or utcnow()).timestamp()
    base = dep.baseline
    if base is None:
        started = (deps.as_aware(dep.switch_started_at) or utcnow()).timestamp()
        base = provider.monitor_baseline(metrics, spec, started)
        claim = claims.claim_in(rt, deployment_id, [Phase.MONITORING])
        if claim is None:
            return DONE
        deps.update_fenced(rt.store, claim, baseline=base)
    fig = provider.monitor_figures(rt, metrics, spec, since=switched_at, now=time.time(),
                                   unhealthy_pipelines=_unhealthy_pipelines(rt, spec))
    decision = decide_monitoring(fig, base, error_rate=t.rollback_error_rate, p99_ratio=t.rollback_p99_ratio,
                                 p99_floor_ms=t.rollback_p99_floor_ms)
    if decision.verdict == ROLLBACK:
        claim = claims.claim_in(rt, deployment_id, [Phase.MONITORING])
        if claim is None:
            return DONE
        _record(rt, deployment_id, ROLLBACK, decision.reasons)
        Journal(rt.store, claim, "monitor").note("breach", "failed", figures=fig.as_dict(), baseline=base,
                                                 reasons=decision.reasons, auto_rollback=t.auto_rollback)
        aborted = [s for s in journal.steps(rt.store, deployment_id, "rollback") if s.name == "aborted"]
        if t.auto_rollback and not aborted:
            problems = rollback.preconditions(rt, dep)
            if problems:
                claims.end(rt, claim, Phase.FAILED, "breach: " + "; ".join(decision.reasons) +
                              " — and rollback is not possible: " + "; ".join(problems))
                return DONE
            nxt = rollback.roll_back(rt, deployment_id, AUTOMATIC + "; ".join(decision.reasons))
            if nxt.wait_s or deps.get_deployment(rt.store, deployment_id).phase != Phase.MONITORING:
                return nxt
            # The rollback was refused or undone: green serves on, the window goes on (and an
            # operator decides: an undone automatic rollback is not retried by itself).
            return Next(wait_s=t.monitor_tick_s)
    deadline = deps.as_aware(dep.phase_deadline)
    if deadline is not None and utcnow() < deadline:
        return Next(wait_s=min(t.monitor_tick_s, max(0.05, (deadline - utcnow()).total_seconds())))
    claim = claims.claim_in(rt, deployment_id, [Phase.MONITORING])
    if claim is None:
        return DONE
    return _complete(rt, claim, spec, fig.as_dict(), base)


def _complete(rt: Runtime, claim, spec, figures: dict, base: dict) -> Next:
    state, reasons = provider_for(spec).window_end_findings(spec, figures)
    _record(rt, claim.deployment_id, HOLD, reasons)
    Journal(rt.store, claim, "monitor").note("window_ended", "done" if not reasons else "failed",
                                             figures=figures, baseline=base, reverse_replication=state)
    until = utcnow() + timedelta(seconds=spec.thresholds.retention_s)
    claims.end(rt, claim, Phase.COMPLETED, "; ".join(reasons) or None, retention_until=until)
    return DONE
