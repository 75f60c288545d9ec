"""The structured result every check returns (a crash becomes an ``error`` result, never an exception)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, ERROR, WAIT = "pass", "fail", "error", "wait"


@dataclass
class CheckResult:
    """One check's outcome.

    status: pass | fail | error | wait (not enough evidence yet, e.g. a window not yet covered).
    retryable: a failure that may clear by itself (lag, a long transaction, a missing sign-off):
    the decision engine WAITs on it until the validation deadline instead of saying NO_GO at once.
    """

    name: str
    status: str
    reason: str = ""
    value: Any = None
    threshold: Any = None
    retryable: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)
    duration_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == PASS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


def passed(name: str, reason: str = "", **kw: Any) -> CheckResult:
    return CheckResult(name, PASS, reason, **kw)


def failed(name: str, reason: str, *, retryable: bool = False, **kw: Any) -> CheckResult:
    return CheckResult(name, FAIL, reason, retryable=retryable, **kw)


def waiting(name: str, reason: str, **kw: Any) -> CheckResult:
    return CheckResult(name, WAIT, reason, retryable=True, **kw)


def errored(name: str, exc: BaseException) -> CheckResult:
    return CheckResult(name, ERROR, f"{type(exc).__name__}: {exc}", retryable=True)
