"""Metrics of the clusters under switchover: a sampler process writes samples to Redis streams,
per-phase summaries to the store.

Readers (checks, post-switchover monitoring, the report) use ``MetricsStore`` (``window``,
``range``, ``series``, ``latest``); the sampler is ``bgqueue sampler run`` (``run_sampler``).
"""
from bgqueue.adapters.metrics.samples import (
    LAG_SOURCE_HEARTBEAT,
    LAG_SOURCE_SECONDS_BEHIND,
    METRICS,
    MetricsStore,
    Sample,
)

__all__ = ["LAG_SOURCE_HEARTBEAT", "LAG_SOURCE_SECONDS_BEHIND", "METRICS", "MetricsStore", "Sample"]
