"""Pre-switchover validation: run the checks, decide, record, move the deployment on.

The Celery layer runs ``run_named_check`` once per check in a chord header and ``conclude`` as
the chord body, or, for a round of light checks only, ``run_named_checks`` and ``conclude`` in
one task; on WAIT it starts another round after ``retry_in_s``.
Validation changes nothing on any server except the checksum bookkeeping table; a NO_GO
releases the cluster.
"""
from __future__ import annotations

import json
import time
from datetime import timedelta

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import validation as records
from bgqueue.adapters.store.models import utcnow
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.registry import check_named
from bgqueue.engine import claims, lifecycle
from bgqueue.engine.decision import GO, NO_GO, Decision, decide
from bgqueue.engine.providers import provider_for
from bgqueue.model.fleet import ClusterSpec, cluster_spec
from bgqueue.model.phases import Phase
from bgqueue.model.results import ERROR, CheckResult, errored


def metrics_store(rt: Runtime):
    """The sampler's samples in Redis, or None when the metrics package is unavailable."""
    try:
        from bgqueue.adapters.metrics.samples import MetricsStore
    except ImportError:
        return None
    return MetricsStore(rt.redis)


def begin(rt: Runtime, deployment_id: str) -> list[str] | None:
    """The checks to run, or None when the deployment is not VALIDATING (nothing to do)."""
    dep = deps.get_deployment(rt.store, deployment_id)
    if dep.phase != Phase.VALIDATING:
        return None
    return provider_for(dep).check_names(cluster_spec(dep.spec))


def run_named_check(rt: Runtime, deployment_id: str, name: str) -> dict:
    """One check against the deployment's servers; always returns a JSON-safe result dict."""
    return run_named_checks(rt, deployment_id, [name])[0]


def run_named_checks(rt: Runtime, deployment_id: str, names: list[str], deadline: float | None = None) -> list[dict]:
    """Checks one after the other (the deployment read once); a JSON-safe result dict for each.
    ``deadline`` (``time.monotonic()``): a check not started by then is not run; its result is a
    retryable error, so the round is decided (WAIT, or NO_GO at the validation deadline) instead
    of outliving its task."""
    try:
        dep = deps.get_deployment(rt.store, deployment_id)
        spec = cluster_spec(dep.spec)
    except Exception as e:  # unknown deployment, bad spec: still a result per check
        return [_json(errored(n, e)) for n in names]
    metrics = metrics_store(rt)
    out = []
    for name in names:
        if deadline is not None and time.monotonic() >= deadline:
            out.append(_json(CheckResult(name, ERROR, "not run: the round's time ran out on the checks before it",
                                         retryable=True)))
            continue
        try:
            blue, green = servers(spec) if isinstance(spec, ClusterSpec) else (None, None)
            ctx = CheckContext(spec=spec, blue=blue, green=green, store=rt.store, deployment_id=deployment_id,
                               metrics=metrics, extra={"facts": dep.facts or {}})
            try:
                result = run_check(name, check_named(name), ctx)
            finally:
                ctx.close()
        except Exception as e:  # unreachable server: still a result
            result = errored(name, e)
        out.append(_json(result))
    return out


def _json(result: CheckResult) -> dict:
    # Evidence travels through the result backend: keep it JSON (datetimes become strings).
    return json.loads(json.dumps(result.as_dict(), default=str))


def conclude(rt: Runtime, deployment_id: str, results: list[dict]) -> Decision | None:
    """Decide on one round, record it, and move the deployment: READY (GO), NO_GO, or stay (WAIT).
    None when the deployment is no longer VALIDATING."""
    claim = deps.claim(rt.store, deployment_id, claims.OWNER, [Phase.VALIDATING])
    if claim is None:
        return None
    dep = deps.claimed(rt.store, claim)
    spec = cluster_spec(dep.spec)
    checks = [CheckResult.from_dict(r) for r in results]
    deadline_dt = deps.as_aware(dep.phase_deadline) or (utcnow() + timedelta(seconds=spec.thresholds.validation_timeout_s))
    decision = decide(checks, now=time.time(), deadline=deadline_dt.timestamp(), poll_s=spec.thresholds.validation_poll_s)
    round_ = records.next_round(rt.store, deployment_id)
    records.record_round(rt.store, deployment_id, round_, checks, decision.verdict, decision.reasons)
    if decision.verdict == GO:
        deps.transition(rt.store, claim, Phase.READY, reason=f"GO after {round_} round(s): every check passed")
    elif decision.verdict == NO_GO:
        lifecycle.end(rt, claim, Phase.NO_GO, "; ".join(decision.reasons))
    return decision
