"""The go/no-go decision engine: a pure function from check results to a verdict with reasons.

    GO     every check passed
    NO_GO  a check failed in a way that will not clear by itself (drift, checksum mismatch,
           failed staging twin) — or anything still not passing at the validation deadline
    WAIT   only retryable problems (lag, a long transaction, a missing sign-off, a check
           that errored or lacks evidence yet): re-check after ``retry_in_s``

NO_GO lists every failed reason, not only the first: the operator fixes them all in one go.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bgqueue.checks.result import FAIL, PASS, CheckResult

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
        return Decision(NO_GO, reasons)
    if now >= deadline:
        return Decision(NO_GO, [f"still not passing at the validation deadline: {x}" for x in reasons])
    return Decision(WAIT, reasons, retry_in_s=min(poll_s, max(0.0, deadline - now)) or poll_s)
