"""Thresholds of a cluster (times in seconds), each with a finite bound.

Every value ends up in a timedelta, a countdown, a sample window or a comparison: infinity or a
huge number passes a lower bound and then overflows in a worker after the switchover (a
monitoring window of ``.inf`` never runs). So every threshold has an upper bound chosen for
what it means, and the models refuse infinity and NaN (``StrictModel``). The bounds are declared
once, as types, and shared by the resolved ``Thresholds`` and by ``ThresholdOverrides`` (a
defaults, tier or cluster layer), so an error points at the layer where the value is written.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bgqueue.model.schema_base import StrictModel

MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0
WEEK = 7 * DAY
# The sampler keeps one hour of samples (adapters.metrics.samples.DEFAULT_RETENTION_S); a window
# read from them must fit inside with room for sampling gaps, or the check waits for ever.
SAMPLE_WINDOW_MAX_S = 3000.0

# A re-check interval or a bound held inside one task: the design keeps countdowns at minutes.
Poll = Annotated[float, Field(gt=0, le=5 * MINUTE)]
# Replication lag that still counts as "in sync": past an hour the gate means nothing.
LagGate = Annotated[float, Field(gt=0, le=HOUR)]
# Waiting for something outside bgqueue (an RDS green being provisioned, sign-offs, a staging
# twin): hours to days; a week is the longest a batch may sit in one phase.
LongWait = Annotated[float, Field(gt=0, le=WEEK)]
# The monitoring window after a switchover: it holds the cluster; a week at most.
MonitorWindow = Annotated[float, Field(ge=0, le=WEEK)]
# Windows computed from the sampler's samples.
SampleWindow = Annotated[float, Field(ge=0, le=SAMPLE_WINDOW_MAX_S)]
SampleSpan = Annotated[float, Field(gt=0, le=SAMPLE_WINDOW_MAX_S)]
# A transaction open on blue for longer than a day is an incident, not a threshold.
TrxAge = Annotated[float, Field(gt=0, le=DAY)]
# Reverse-replication lag that still allows a rollback: a rollback waits for it to drain.
RollbackLag = Annotated[float, Field(gt=0, le=DAY)]
# How long the old primary stays a reverse replica: green must keep its binlogs that long.
Retention = Annotated[float, Field(ge=0, le=30 * DAY)]
ConnectTimeout = Annotated[float, Field(gt=0, le=MINUTE)]
# Errors per second on green that trigger a rollback; a million means "never", finitely.
ErrorRate = Annotated[float, Field(ge=0, le=1_000_000)]
P99Ratio = Annotated[float, Field(gt=1, le=1000)]
# Milliseconds above blue's p99 baseline: ten minutes of extra latency is past any meaning.
P99FloorMs = Annotated[float, Field(ge=0, le=10 * MINUTE * 1000)]


class ThresholdOverrides(StrictModel):
    """Any subset of thresholds; merged defaults → tier → cluster."""

    max_lag_s: LagGate | None = None
    sync_timeout_s: LongWait | None = None
    sync_poll_s: Poll | None = None
    catchup_timeout_s: Poll | None = None
    monitor_window_s: MonitorWindow | None = None
    connect_timeout_s: ConnectTimeout | None = None
    lag_window_s: SampleWindow | None = None
    validation_timeout_s: LongWait | None = None
    validation_poll_s: Poll | None = None
    max_trx_age_s: TrxAge | None = None
    monitor_tick_s: Poll | None = None
    monitor_eval_s: SampleSpan | None = None
    rollback_error_rate: ErrorRate | None = None
    rollback_p99_ratio: P99Ratio | None = None
    rollback_p99_floor_ms: P99FloorMs | None = None
    rollback_max_lag_s: RollbackLag | None = None
    auto_rollback: bool | None = None
    retention_s: Retention | None = None


class Thresholds(StrictModel):
    """Resolved thresholds of one cluster. Times in seconds."""

    max_lag_s: LagGate = Field(default=1.0, description="gate: replication lag must be below this")
    sync_timeout_s: LongWait = Field(default=600.0, description="how long green may take to get in sync before NO_GO")
    sync_poll_s: Poll = Field(default=2.0, description="re-check interval while waiting for sync")
    catchup_timeout_s: Poll = Field(
        default=5.0, description="switchover: bound for green to reach blue's fenced position, else the fence is lifted",
    )
    monitor_window_s: MonitorWindow = Field(default=1800.0, description="watch period after the switchover")
    connect_timeout_s: ConnectTimeout = 5.0
    lag_window_s: SampleWindow = Field(default=120.0, description="gate: lag must stay below max_lag_s this long")
    validation_timeout_s: LongWait = Field(default=600.0, description="a WAIT verdict turns NO_GO after this")
    validation_poll_s: Poll = Field(default=5.0, description="re-check interval after WAIT")
    max_trx_age_s: TrxAge = Field(default=60.0, description="gate: no transaction on blue open longer")
    monitor_tick_s: Poll = Field(default=5.0, description="monitoring: evaluation interval")
    monitor_eval_s: SampleSpan = Field(default=15.0, description="monitoring: figures are averaged over this")
    rollback_error_rate: ErrorRate = Field(default=1.0, description="rollback when errors/s on green exceed this")
    rollback_p99_ratio: P99Ratio = Field(default=3.0, description="rollback when p99 exceeds blue's baseline × this")
    rollback_p99_floor_ms: P99FloorMs = Field(default=50.0, description="… and exceeds the baseline by at least this")
    rollback_max_lag_s: RollbackLag = Field(default=30.0, description="rollback refused when reverse lag is above")
    auto_rollback: bool = Field(default=True, description="roll back by itself on a breach in the window")
    retention_s: Retention = Field(default=86400.0, description="old primary kept as reverse replica after COMPLETED")
