"""Prometheus metrics, computed from the store at scrape time.

The store is the authority and is shared by every worker process, so the exporter needs no
multi-process counter plumbing: one `bgqueue exporter` process serves the whole fleet.

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

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.figures import exporter_figures

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _histogram(name: str, doc: str, samples: dict[tuple, list[float]], labels: list[str]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in samples.items():
        buckets = [(str(b), sum(v <= b for v in values)) for b in SECONDS_BUCKETS] + [("+Inf", len(values))]
        h.add_metric(list(key), buckets, sum(values))
    return h


class StoreCollector(Collector):
    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterable:
        f = exporter_figures(self.store)
        by_phase, durations, blocked_sw = f.by_phase, f.switch_durations_s, f.switch_writes_blocked_s
        rolled = [(d,) for d in f.rollback_details]
        checks, verdicts = f.checks, f.verdicts
        reasons = [(r,) for r in f.rolled_back_reasons]
        cdc = [(d,) for d in f.cdc_resume_details]
        night = f.latest_nightly_findings

        g = GaugeMetricFamily("bgqueue_deployments", "Deployments currently in each phase", labels=["phase"])
        for phase, n in by_phase:
            g.add_metric([phase], n)
        yield g
        yield _histogram("bgqueue_switchover_duration_seconds", "Switchover procedure duration",
                         {(): durations}, [])
        blocked_rb = [d[0]["writes_blocked_ms"] / 1000 for d in rolled if d[0] and d[0].get("writes_blocked_ms")]
        yield _histogram("bgqueue_write_block_seconds", "Writes refused: fence to routing flip",
                         {("switchover",): blocked_sw, ("rollback",): blocked_rb}, ["procedure"])
        c = CounterMetricFamily("bgqueue_check_results", "Pre-switchover check outcomes", labels=["check", "status"])
        for name, status, n in checks:
            c.add_metric([name, status], n)
        yield c
        d = CounterMetricFamily("bgqueue_decisions", "Decision engine verdicts", labels=["kind", "verdict"])
        for kind, verdict, n in verdicts:
            d.add_metric([kind, verdict], n)
        yield d
        r = CounterMetricFamily("bgqueue_rollbacks", "Rollbacks", labels=["trigger"])
        auto = sum(1 for (reason,) in reasons if (reason or "").startswith("automatic"))
        r.add_metric(["automatic"], auto)
        r.add_metric(["manual"], len(reasons) - auto)
        yield r
        downs = [x[0]["down_ms"] / 1000 for x in cdc if x[0] and x[0].get("down_ms") is not None]
        yield _histogram("bgqueue_cdc_downtime_seconds", "CDC pipeline downtime per move", {(): downs}, [])
        yield GaugeMetricFamily("bgqueue_nightly_findings", "Findings of the latest nightly run", value=night or 0)


def registry_for(store: Store) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store))
    return reg


def serve(store: Store, port: int, addr: str = "127.0.0.1"):
    """Start the HTTP endpoint (/metrics) in a background thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=registry_for(store))
