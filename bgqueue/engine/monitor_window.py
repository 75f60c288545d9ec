"""The monitoring window after a switchover: watch green against blue's baseline, roll back on a
breach, finish (COMPLETED, retention starts) when the window ends. Driven by re-enqueued ticks."""
from __future__ import annotations

import time
from datetime import timedelta

from bgqueue.engine import lifecycle

from bgqueue.engine import monitoring

from bgqueue.engine import rollback
from bgqueue.engine.decision import HOLD, ROLLBACK, MonitorFigures, decide_monitoring
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec, cluster_spec
from bgqueue.engine.lifecycle import DONE, Next
from bgqueue.model.phases import Phase
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import validation as records
from bgqueue.adapters.store import journal
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow


AUTOMATIC = "automatic rollback: "


def _unhealthy_pipelines(rt: Runtime, spec) -> tuple[str, ...]:
    if not spec.pipelines:
        return ()
    try:
        from bgqueue.adapters.cdc.pipeline import pipeline_health
    except ImportError:
        return ()
    return tuple(h.name for h in pipeline_health(spec, rt.redis) if not h.healthy)


def _record(rt: Runtime, deployment_id: str, verdict: str, reasons: list[str]) -> None:
    records.record_round(rt.store, deployment_id, records.next_round(rt.store, deployment_id, "monitor"), [],
                         verdict, reasons, kind="monitor")


def monitor(rt: Runtime, deployment_id: str) -> Next:
    """One tick of the window (MONITORING): HOLD and tick again, roll back, or complete.
    A rollback this window started goes on here while its CDC pipelines move back."""
    current = deps.get_deployment(rt.store, deployment_id)
    if current.phase == Phase.ROLLING_BACK:
        if (current.reason or "").startswith(AUTOMATIC):
            return rollback.roll_back(rt, deployment_id, current.reason)
        return DONE  # an operator's rollback: its own task carries it (two runners would fence each other)
    if current.phase != Phase.MONITORING:
        return DONE
    # Observe first, claim only to act: a tick that HOLDs writes nothing, so it never fences out
    # an operator's rollback of the same deployment.
    dep = current
    spec = cluster_spec(dep.spec)
    t = spec.thresholds
    lifecycle.refresh_lock(rt, dep)
    from bgqueue.engine.validation import metrics_store

    metrics = metrics_store(rt)
    switched_at = (deps.as_aware(dep.switch_ended_at) or utcnow()).timestamp()
    base = dep.baseline
    if base is None:
        started = (deps.as_aware(dep.switch_started_at) or utcnow()).timestamp()
        # rds: no SQL sampling of blue, so no baseline (its CloudWatch alarms are the figure)
        base = {} if dep.provider == "rds" else monitoring.baseline(metrics, spec, started)
        claim = lifecycle.claim_in(rt, deployment_id, [Phase.MONITORING])
        if claim is None:
            return DONE
        deps.update_fenced(rt.store, claim, baseline=base)
    if dep.provider == "rds":  # no SQL sampling: the cluster's CloudWatch alarms speak for it
        from bgqueue.checks.rds import alarms_in_alarm

        fig = MonitorFigures(0, unhealthy_pipelines=_unhealthy_pipelines(rt, spec), alarms=alarms_in_alarm(spec))
    else:
        fig = monitoring.figures(metrics, spec, spec.green, since=switched_at, now=time.time(),
                                 eval_s=t.monitor_eval_s, unhealthy_pipelines=_unhealthy_pipelines(rt, spec))
    decision = decide_monitoring(fig, base, error_rate=t.rollback_error_rate, p99_ratio=t.rollback_p99_ratio,
                                 p99_floor_ms=t.rollback_p99_floor_ms)
    if decision.verdict == ROLLBACK:
        claim = lifecycle.claim_in(rt, deployment_id, [Phase.MONITORING])
        if claim is None:
            return DONE
        _record(rt, deployment_id, ROLLBACK, decision.reasons)
        Journal(rt.store, claim, "monitor").note("breach", "failed", figures=fig.as_dict(), baseline=base,
                                                 reasons=decision.reasons, auto_rollback=t.auto_rollback)
        aborted = [s for s in journal.steps(rt.store, deployment_id, "rollback") if s.name == "aborted"]
        if t.auto_rollback and not aborted:
            problems = rollback.preconditions(rt, dep)
            if problems:
                lifecycle.end(rt, claim, Phase.FAILED, "breach: " + "; ".join(decision.reasons) +
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
    claim = lifecycle.claim_in(rt, deployment_id, [Phase.MONITORING])
    if claim is None:
        return DONE
    return _complete(rt, claim, spec, fig.as_dict(), base)


def _complete(rt: Runtime, claim, spec, figures: dict, base: dict) -> Next:
    from bgqueue.checks import sync

    if isinstance(spec, ClusterSpec):
        blue, green = lifecycle.servers(spec)
        try:
            state = sync.assess(green, blue, spec.green).as_dict()
        except BgqueueError as e:
            state = {"replicating": False, "problems": [str(e)]}
        finally:
            blue.close()
            green.close()
    else:  # rds: the old environment is kept (renamed -oldN) but does not replicate
        state = {"replicating": True, "problems": [], "note": "rds: no reverse replication"}
    reasons = [] if state.get("replicating") else ["reverse replication is not healthy: " +
                                                   "; ".join(state.get("problems", []))]
    if spec.provider == "mysql" and not figures.get("samples"):
        # Nothing measured is not a clean pass: say so (the sampler was down, or lost the cluster).
        reasons.append(f"the monitoring window ended unobserved: no samples of the new primary in the last "
                       f"{spec.thresholds.monitor_eval_s:g}s (is `bgqueue sampler run` running?)")
    _record(rt, claim.deployment_id, HOLD, reasons)
    Journal(rt.store, claim, "monitor").note("window_ended", "done" if not reasons else "failed",
                                             figures=figures, baseline=base, reverse_replication=state)
    until = utcnow() + timedelta(seconds=spec.thresholds.retention_s)
    lifecycle.end(rt, claim, Phase.COMPLETED, "; ".join(reasons) or None, retention_until=until)
    return DONE
