"""Prometheus metrics, computed from the store at scrape time.

The store is the authority and is shared by every worker process, so the exporter needs no
multi-process counter plumbing: one `bgqueue exporter` process serves the whole fleet. A scrape
costs a fixed number of aggregate queries whatever the history's length (the database counts;
no row comes to Python; the append-only tables are aggregated incrementally: see
``adapters.store.figures``), and at most one computation per ``CACHE_TTL_S`` however many scrape.

Metric names (all prefixed ``bgqueue_``):
  deployments{phase}                         gauge      deployments currently in each phase
  switchover_duration_seconds                histogram  fence → routing flip → reverse replication, per switchover
  write_block_seconds{procedure}             histogram  fence → routing flip (writes refused), switchover and rollback
  check_results_total{check,status}          counter    pre-switchover check outcomes
  decisions_total{kind,verdict}              counter    go/no-go (pre_switch) and monitoring verdicts
  rollbacks_total{trigger}                   counter    automatic | manual
  cdc_downtime_seconds                       histogram  per pipeline move (CDC phase)
  nightly_findings                           gauge      findings of the latest nightly run
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.figures import ExporterFigures, Histogram, StoreFigures

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


# Prometheus scrapes every 15-60 s, often from two replicas: figures computed at most this often
# are shared by every scrape in between, so a scrape's cost does not grow with their number.
CACHE_TTL_S = 10.0


def _histogram(name: str, doc: str, samples: dict[tuple, Histogram], labels: list[str]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, agg in samples.items():
        buckets = [(str(b), n) for b, n in agg.buckets] + [("+Inf", agg.count)]
        h.add_metric(list(key), buckets, agg.total_s)
    return h


class StoreCollector(Collector):
    """Collects from the store's aggregates (see ``ExporterFigures``), cached for ``ttl_s``."""

    def __init__(self, store: Store, ttl_s: float = CACHE_TTL_S):
        self.store, self.ttl_s = store, ttl_s
        self._figures = ExporterFigures(store, SECONDS_BUCKETS)
        self._lock = threading.Lock()
        self._cached: tuple[float, StoreFigures] | None = None

    def figures(self) -> StoreFigures:
        # One computation at a time: concurrent scrapes wait for it instead of each starting one.
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.ttl_s:
                self._cached = (now, self._figures.compute())
            return self._cached[1]

    def collect(self) -> Iterable:
        f = self.figures()
        g = GaugeMetricFamily("bgqueue_deployments", "Deployments currently in each phase", labels=["phase"])
        for phase, n in f.by_phase:
            g.add_metric([phase], n)
        yield g
        yield _histogram("bgqueue_switchover_duration_seconds", "Switchover procedure duration",
                         {(): f.switch_durations}, [])
        yield _histogram("bgqueue_write_block_seconds", "Writes refused: fence to routing flip",
                         {("switchover",): f.switch_writes_blocked, ("rollback",): f.rollback_writes_blocked},
                         ["procedure"])
        c = CounterMetricFamily("bgqueue_check_results", "Pre-switchover check outcomes", labels=["check", "status"])
        for name, status, n in f.checks:
            c.add_metric([name, status], n)
        yield c
        d = CounterMetricFamily("bgqueue_decisions", "Decision engine verdicts", labels=["kind", "verdict"])
        for kind, verdict, n in f.verdicts:
            d.add_metric([kind, verdict], n)
        yield d
        r = CounterMetricFamily("bgqueue_rollbacks", "Rollbacks", labels=["trigger"])
        r.add_metric(["automatic"], f.rollbacks_automatic)
        r.add_metric(["manual"], f.rollbacks_total - f.rollbacks_automatic)
        yield r
        yield _histogram("bgqueue_cdc_downtime_seconds", "CDC pipeline downtime per move", {(): f.cdc_downtime}, [])
        yield GaugeMetricFamily("bgqueue_nightly_findings", "Findings of the latest nightly run",
                                value=f.latest_nightly_findings or 0)


def registry_for(store: Store, ttl_s: float = CACHE_TTL_S) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store, ttl_s))
    return reg


def serve(store: Store, port: int, addr: str = "127.0.0.1"):
    """Start the HTTP endpoint (/metrics) in a background thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=registry_for(store))
