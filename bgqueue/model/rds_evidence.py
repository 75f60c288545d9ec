"""Fleet-file sections of the rds provider's evidence: CloudWatch metrics compared green vs blue
(``evidence:`` of an rds cluster) and the batch's AWS cost controls (``aws_cost:`` of the fleet).

A metric rule is the mysql provider's p99 rule generalised: for a metric where higher is worse,
green breaches when its value is above ``max(blue × ratio, blue + floor)`` (both the ratio and the
absolute floor must be exceeded, so a near-zero baseline does not make noise a breach); where
lower is worse (FreeableMemory), below ``min(blue / ratio, blue − floor)``. ``required`` metrics
without datapoints on either side are "no evidence yet" (validation WAITs, then NO_GO at its
deadline), never a pass; optional ones (replica lag, absent on a primary without replicas) are
compared when green has them, against 0 when blue has none.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from bgqueue.model.schema_base import StrictModel

Stat = Literal["Average", "Maximum", "Minimum", "Sum"]
# CloudWatch keeps 1-minute datapoints for 15 days; a comparison window past a day means nothing here.
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
WindowS = Annotated[float, Field(ge=60, le=86_400)]


class MetricRule(StrictModel):
    """How one CloudWatch metric (namespace AWS/RDS) of green is held to blue's."""

    stat: Stat = "Average"
    worse: Literal["higher", "lower"] = "higher"
    ratio: float = Field(default=2.0, gt=1, le=1000)
    floor: float = Field(default=0.0, ge=0, le=1e15, description="absolute margin, in the metric's unit")
    required: bool = True
    level: Literal["any", "instance", "cluster"] = Field(
        default="any", description="instance: DB instances only; cluster: Aurora clusters only")


def _default_metrics() -> dict[str, MetricRule]:
    return {
        "CPUUtilization": MetricRule(ratio=1.5, floor=20.0),  # percent
        "FreeableMemory": MetricRule(stat="Minimum", worse="lower", ratio=2.0, floor=512 * 1024 ** 2),  # bytes
        "DatabaseConnections": MetricRule(ratio=3.0, floor=50.0),
        "ReadLatency": MetricRule(ratio=2.0, floor=0.005),  # seconds
        "WriteLatency": MetricRule(ratio=2.0, floor=0.005),
        "ReadIOPS": MetricRule(ratio=3.0, floor=500.0),
        "WriteIOPS": MetricRule(ratio=3.0, floor=500.0),
        "Deadlocks": MetricRule(ratio=3.0, floor=1.0),  # per second
        "ReplicaLag": MetricRule(stat="Maximum", ratio=2.0, floor=30.0, required=False, level="instance"),
        "AuroraReplicaLag": MetricRule(stat="Maximum", ratio=2.0, floor=0.1 * 1000, required=False,
                                       level="cluster"),  # milliseconds
    }


class RdsEvidence(StrictModel):
    """CloudWatch metrics as evidence: before the switchover (green vs blue over ``window_s``) and in
    the monitoring window (the new primary vs blue's ``baseline_s`` before the switchover)."""

    enabled: bool = True
    window_s: WindowS = Field(default=300.0, description="validation: both sides compared over the last window_s")
    baseline_s: WindowS = Field(default=900.0, description="monitoring: blue's baseline, the span before the switchover")
    period_s: int = Field(default=60, ge=60, le=3600, multiple_of=60, description="CloudWatch period of the datapoints")
    metrics: dict[str, MetricRule] = Field(
        default_factory=_default_metrics, min_length=1, max_length=100,
        description="merged over the defaults: a metric named here replaces its default rule, null drops it")

    @field_validator("metrics", mode="before")
    @classmethod
    def _over_defaults(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        merged: dict = {k: r.model_dump() for k, r in _default_metrics().items()}
        for k, v in value.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) else v
        return merged


class BatchBudget(StrictModel):
    """A per-batch AWS Budgets budget (cost, filtered by the batch's tag), created when the batch
    starts and deleted when it ends."""

    limit: float = Field(gt=0, le=10_000_000, description="amount for the budget's period, in unit")
    unit: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    threshold_percent: float = Field(default=80.0, gt=0, le=1000, description="notify above this % of the limit")
    notify: list[Email] = Field(min_length=1, max_length=10, description="e-mail subscribers of the notification")


class AwsCost(StrictModel):
    """What the fleet's AWS cost controls are (the estimate from the price table is always made)."""

    budget: BatchBudget | None = None
    explorer: bool = Field(default=True, description="read Cost Explorer (GetCostAndUsage) for the real cost")
