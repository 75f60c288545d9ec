"""The go/no-go decision engine: a pure function from check results to a verdict with reasons.

    GO     every check passed
    NO_GO  a check failed in a way that will not clear by itself (drift, checksum mismatch,
           failed staging twin) — or anything still not passing at the validation deadline
    WAIT   only retryable problems (lag, a long transaction, a missing sign-off, a check
           that errored or lacks evidence yet): re-check after ``retry_in_s``

NO_GO lists every failed reason, not only the first: the operator fixes them all in one go; a
check that was only waiting is listed only when the deadline is what turned it NO_GO.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bgqueue.model.outcomes import MonitorFigures
from bgqueue.model.results import FAIL, PASS, CheckResult
from bgqueue.model.results import WAIT as WAITING

GO, NO_GO, WAIT = "GO", "NO_GO", "WAIT"


@dataclass(frozen=True)
class Decision:
    verdict: str
    reasons: list[str] = field(default_factory=list)
    retry_in_s: float | None = None

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons), "retry_in_s": self.retry_in_s}


def _reason(r: CheckResult) -> str:
    return f"{r.name}: {r.reason}" if r.reason else f"{r.name}: {r.status}"


def decide(results: list[CheckResult], *, now: float, deadline: float, poll_s: float) -> Decision:
    """Pure: the same results, time and deadline always give the same decision."""
    if not results:
        return Decision(NO_GO, ["no checks ran"])
    not_passing = [r for r in results if r.status != PASS]
    if not not_passing:
        return Decision(GO, [])
    reasons = [_reason(r) for r in not_passing]
    if any(r.status == FAIL and not r.retryable for r in not_passing):
        # A check that was only waiting (no evidence yet) is not why it is NO_GO: left out.
        return Decision(NO_GO, [_reason(r) for r in not_passing if r.status != WAITING])
    if now >= deadline:
        return Decision(NO_GO, [f"still not passing at the validation deadline: {x}" for x in reasons])
    return Decision(WAIT, reasons, retry_in_s=min(poll_s, max(0.0, deadline - now)) or poll_s)


HOLD, ROLLBACK = "HOLD", "ROLLBACK"


MIN_SAMPLES = 3  # one noisy sample never rolls a cluster back


def decide_monitoring(fig: MonitorFigures, baseline: dict, *, error_rate: float, p99_ratio: float,
                      p99_floor_ms: float) -> Decision:
    """HOLD, or ROLLBACK with the breaching figures as reasons. Pure.

    Reverse replication trouble is a finding, not a trigger: with it broken a rollback would
    lose green's writes, so it is reported (and blocks rollback) instead.
    """
    reasons: list[str] = []
    if fig.samples >= MIN_SAMPLES:
        if fig.errors_per_s is not None and fig.errors_per_s > error_rate:
            reasons.append(f"error rate {fig.errors_per_s:.2f}/s on the new primary is above {error_rate:g}/s "
                           f"(blue's baseline {baseline.get('errors_per_s', 0.0):.2f}/s)")
        base = baseline.get("probe_p99_ms")
        if fig.probe_p99_ms is not None and base is not None:
            limit = max(base * p99_ratio, base + p99_floor_ms)
            if fig.probe_p99_ms > limit:
                reasons.append(f"p99 latency {fig.probe_p99_ms:.1f} ms is above {limit:.1f} ms "
                               f"(blue's baseline {base:.1f} ms × {p99_ratio:g}, at least +{p99_floor_ms:g} ms)")
    reasons += [f"CDC pipeline {p} is unhealthy" for p in fig.unhealthy_pipelines]
    reasons += [f"alarm {a} is in ALARM" for a in fig.alarms]
    reasons += list(fig.breaches)
    return Decision(ROLLBACK, reasons) if reasons else Decision(HOLD, [])
