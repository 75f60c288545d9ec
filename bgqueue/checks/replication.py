"""Replication health (threads, errors, source) and lag held under a threshold for a window."""
from __future__ import annotations

from bgqueue.checks import sync
from bgqueue.checks.context import CheckContext
from bgqueue.model.results import CheckResult, failed, passed, waiting

# Samples further apart than this leave a hole in the evidence (the sampler runs at 4 Hz).
MAX_SAMPLE_GAP_S = 2.0


def replication_health(ctx: CheckContext) -> CheckResult:
    """Green replicates from blue with both threads running, GTID positioning and no error."""
    state = sync.assess(ctx.blue, ctx.green, ctx.spec.blue)
    if state.problems:
        # A stopped thread or an error does not heal itself: NO_GO, a human must look.
        return failed("replication_health", "; ".join(state.problems), evidence=state.as_dict())
    return passed("replication_health", "IO and SQL threads running, no error", evidence=state.as_dict())


def replication_lag(ctx: CheckContext) -> CheckResult:
    """Heartbeat lag below max_lag_s in every sample of the last lag_window_s seconds."""
    t = ctx.spec.thresholds
    limit_ms = t.max_lag_s * 1000
    if ctx.metrics is None:
        return waiting("replication_lag", "no metrics samples available (is `bgqueue sampler run` running?)",
                       threshold=f"< {t.max_lag_s:g}s for {t.lag_window_s:g}s")
    now = ctx.now()
    samples = [s for s in ctx.metrics.window(ctx.spec.name, t.lag_window_s + MAX_SAMPLE_GAP_S, now=now)
               if s.values.get("primary_port") in (None, float(ctx.spec.blue.port))]
    lags = [(s.ts, s.values.get("lag_ms")) for s in samples if s.values.get("lag_ms") is not None]
    threshold = f"< {t.max_lag_s:g}s for {t.lag_window_s:g}s"
    if not lags:
        return waiting("replication_lag", "no lag samples yet (is `bgqueue sampler run` running?)",
                       threshold=threshold)
    covered = now - lags[0][0]
    worst_ts, worst = max(lags, key=lambda x: x[1])
    evidence = {"samples": len(lags), "covered_s": round(covered, 2), "max_lag_ms": round(worst, 1),
                "last_lag_ms": round(lags[-1][1], 1)}
    if worst >= limit_ms:
        return failed("replication_lag", f"lag {worst / 1000:.2f}s at {worst_ts:.0f} is not below {t.max_lag_s:g}s "
                      f"(window {t.lag_window_s:g}s)", retryable=True, value=round(worst / 1000, 3),
                      threshold=threshold, evidence=evidence)
    gaps = [b - a for (a, _), (b, _) in zip(lags, lags[1:], strict=False)] + [now - lags[-1][0]]
    if covered < t.lag_window_s or max(gaps) > MAX_SAMPLE_GAP_S:
        return waiting("replication_lag", f"{covered:.1f}s of {t.lag_window_s:g}s covered by samples "
                       f"(largest gap {max(gaps):.1f}s)", value=round(worst / 1000, 3), threshold=threshold,
                       evidence=evidence)
    return passed("replication_lag", f"max lag {worst:.0f} ms over {t.lag_window_s:g}s",
                  value=round(worst / 1000, 3), threshold=threshold, evidence=evidence)
