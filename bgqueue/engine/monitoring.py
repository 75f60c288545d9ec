"""The monitoring window's figures, computed from the sampler's samples in Redis.

Roles are told apart by ``primary_port`` in each sample: the baseline is blue serving as
primary before the switchover, the figures are green serving as primary after it.
"""
from __future__ import annotations

import statistics
from typing import Any

from bgqueue.model.fleet import ClusterSpec, Endpoint
from bgqueue.model.outcomes import MonitorFigures

BASELINE_SPAN_S = 60.0


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def _as_primary(samples: list, endpoint: Endpoint) -> list:
    return [s for s in samples if s.values.get("primary_port") == float(endpoint.port)]


def baseline(metrics: Any, spec: ClusterSpec, switch_at: float) -> dict:
    """Blue's figures in the minute before the switchover (what green is held to)."""
    if metrics is None:
        return {}
    span = [s for s in _as_primary(metrics.window(spec.name, BASELINE_SPAN_S + 30, now=switch_at), spec.blue)
            if s.ts <= switch_at]
    probes = [s.values["probe_ms"] for s in span if s.values.get("probe_ms") is not None]
    errors = [s.values["errors_per_s"] for s in span if s.values.get("errors_per_s") is not None]
    return {"samples": len(span), "probe_p99_ms": _p99(probes),
            "errors_per_s": statistics.fmean(errors) if errors else None}


def figures(metrics: Any, spec: ClusterSpec, new_primary: Endpoint, *, since: float, now: float,
            eval_s: float, unhealthy_pipelines: tuple[str, ...] = (), alarms: tuple[str, ...] = ()) -> MonitorFigures:
    """The new primary's figures over the last ``eval_s`` seconds (never before ``since``)."""
    if metrics is None:
        return MonitorFigures(0, unhealthy_pipelines=unhealthy_pipelines, alarms=alarms)
    span = [s for s in _as_primary(metrics.window(spec.name, eval_s, now=now), new_primary) if s.ts >= since]
    probes = [s.values["probe_ms"] for s in span if s.values.get("probe_ms") is not None]
    errors = [s.values["errors_per_s"] for s in span if s.values.get("errors_per_s") is not None]
    last = span[-1].values if span else {}
    running = None
    if "replica_io_running" in last:
        running = bool(last.get("replica_io_running")) and bool(last.get("replica_sql_running"))
    lag = last.get("lag_ms")
    return MonitorFigures(samples=len(span), errors_per_s=statistics.fmean(errors) if errors else None,
                          probe_p99_ms=_p99(probes), reverse_running=running,
                          reverse_lag_s=None if lag is None else lag / 1000.0,
                          unhealthy_pipelines=unhealthy_pipelines, alarms=alarms)
