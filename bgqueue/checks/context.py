"""What a check may look at: the cluster spec, admin sessions on blue and green, the store,
the metrics samples, and the time (injected, so tests control it)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.store.db import Store
from bgqueue.model.results import CheckResult, errored


@dataclass
class CheckContext:
    spec: Any  # ClusterSpec (mysql) or RdsClusterSpec
    blue: Server | None  # admin sessions: mysql provider only
    green: Server | None
    store: Store
    deployment_id: str | None = None
    metrics: Any = None  # bgqueue.adapters.metrics.samples.MetricsStore (None: no samples available)
    now: Callable[[], float] = time.time
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for s in (self.blue, self.green):
            if s is not None:
                s.close()


Check = Callable[[CheckContext], CheckResult]


def run_check(name: str, check: Check, ctx: CheckContext) -> CheckResult:
    """Run one check; a crash becomes an ``error`` result. Adds the duration."""
    t0 = time.perf_counter()
    try:
        result = check(ctx)
    except Exception as e:  # a check never breaks the chord
        result = errored(name, e)
    result.name = name
    result.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
    return result
