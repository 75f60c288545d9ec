"""Are the cluster's application paths ready to be flipped? (HAProxy, Route 53, SSM; the registry
always is.) A DNS TTL above its bound is a NO_GO with the figure; an unreachable or unhealthy
path is retried until the validation deadline."""
from __future__ import annotations

from bgqueue.adapters.routing import targets as routing_targets
from bgqueue.checks.context import CheckContext
from bgqueue.model.results import CheckResult, failed, passed


def routing_readiness(ctx: CheckContext) -> CheckResult:
    targets = [t for t in ctx.spec.routing_targets() if t.kind != "registry"]
    if not targets:
        return passed("routing", "the registry only (no other application path declared)")
    problems = [p for t in targets for p in routing_targets.readiness(ctx.spec, t)]
    evidence = {"targets": [t.label for t in targets], "problems": problems}
    if problems:
        # A TTL is configuration: it will not fix itself. Anything else (a health check, a
        # briefly unreachable admin socket) may.
        ttl = any("TTL" in p for p in problems)
        return failed("routing", "; ".join(problems), retryable=not ttl, value=len(problems), threshold=0,
                      evidence=evidence)
    return passed("routing", f"{len(targets)} path(s) ready: " + ", ".join(t.label for t in targets),
                  evidence=evidence)
