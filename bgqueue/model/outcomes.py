"""What a step tells its caller: go on, or run me again later. Plain values, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Next:
    """What the task layer does after a step: continue the chain, or run this step again later."""

    wait_s: float | None = None
    detail: str = ""


DONE = Next()


@dataclass(frozen=True)
class MonitorFigures:
    """What the monitoring window sees of the new primary (averaged over the evaluation span)."""

    samples: int
    errors_per_s: float | None = None
    probe_p99_ms: float | None = None
    reverse_running: bool | None = None
    reverse_lag_s: float | None = None
    unhealthy_pipelines: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()
    breaches: tuple[str, ...] = ()  # a provider's own figures past their limits (rds: CloudWatch metrics)
    evidence: dict | None = None  # a provider's own figures (rds: CloudWatch vs blue's baseline, replica findings)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class ClusterCheck:
    cluster: str
    problems: list[tuple[str, str]] = field(default_factory=list)  # (field, message): bad input
    facts: dict = field(default_factory=dict)
    # (field, message): the servers' state, not the input (replication stopped, a server down):
    # ``fleet run`` records such a cluster NO_GO at once and runs the rest (``--strict``: refuses).
    state_problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.state_problems

    def summary(self) -> str:
        """One line of what was found, for `fleet check`."""
        if "blue" in self.facts and "green" in self.facts:
            lag = self.facts.get("replication", {}).get("lag_s")
            return f"blue {self.facts['blue']['version']}, green {self.facts['green']['version']}, lag {lag}s"
        return ", ".join(f"{k} {v}" for k, v in self.facts.items() if isinstance(v, (str, int, float)))


@dataclass
class SwitchResult:
    """What one run of the writer-moving procedure (switchover or rollback) achieved."""

    switched: bool  # True: new is the writer and routing names it
    reason: str = ""
    undone: bool = False  # False with switched=False: state needs a human (see reason)
    writes_blocked_ms: float | None = None
    duration_ms: float = 0.0
    reverse_replication: bool = False
    checkpoint_id: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
