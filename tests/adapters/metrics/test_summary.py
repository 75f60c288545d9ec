"""Per-phase summaries and points: exact statistics, per-second means, replace-not-duplicate, phase
windows from the history."""
import time

import pytest
import redis
from sqlalchemy import select

from bgqueue.adapters.metrics.samples import MetricsStore, Sample
from bgqueue.adapters.metrics.summary import (
    POINT_METRICS,
    PhaseTracker,
    downsample,
    metric_points,
    phase_windows,
    summarize_phase,
)
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import MetricPoint, MetricSummary
from bgqueue.model.phases import Phase

SPEC = {"name": "x", "provider": "mysql", "blue": {"host": "h", "port": 1}, "green": {"host": "h", "port": 2}}


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield s
    s.dispose()


@pytest.fixture
def metrics(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield MetricsStore(client)
    client.close()


def new_deployment(store, cluster: str) -> str:
    _, ids = deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x",
                               clusters=[dict(SPEC, name=cluster)])
    return ids[cluster]


def rows(store, dep_id: str) -> dict[tuple[str, str], MetricSummary]:
    with store.session() as s:
        found = list(s.execute(select(MetricSummary).where(MetricSummary.deployment_id == dep_id)).scalars())
    return {(r.phase, r.metric): r for r in found}


def test_summary_statistics_are_exact_and_rerun_replaces(store, metrics, unique_name):
    cluster = unique_name("sum")
    dep_id = new_deployment(store, cluster)
    t0 = 1_700_000_000.0
    for i in range(1, 101):  # lag 1..100 inside the phase; "other" only in 10 samples
        metrics.append(cluster, t0 + i * 0.25, {"lag_ms": float(i), **({"other": 7.0} if i % 10 == 0 else {})})
    metrics.append(cluster, t0 + 200, {"lag_ms": 1e9})  # after the phase: not counted
    t1 = t0 + 100 * 0.25
    assert summarize_phase(store, metrics, dep_id, cluster, "SYNCING", t0, t1) == 2
    got = rows(store, dep_id)
    lag = got[("SYNCING", "lag_ms")]
    assert (lag.count, lag.min, lag.max, lag.mean) == (100, 1.0, 100.0, 50.5)
    assert (lag.p50, lag.p95, lag.p99) == (50.0, 95.0, 99.0)
    assert deps.as_aware(lag.started_at).timestamp() == pytest.approx(t0)
    assert deps.as_aware(lag.ended_at).timestamp() == pytest.approx(t1)
    assert got[("SYNCING", "other")].count == 10 and got[("SYNCING", "other")].mean == 7.0
    # Again (a restarted sampler): the phase's rows are replaced, never duplicated.
    assert summarize_phase(store, metrics, dep_id, cluster, "SYNCING", t0, t1 - 0.25) == 2
    again = rows(store, dep_id)
    assert len(again) == 2 and again[("SYNCING", "lag_ms")].count == 99
    # No sample in the window: nothing written, what was there stays.
    assert summarize_phase(store, metrics, dep_id, cluster, "READY", t0 - 100, t0 - 50) == 0
    assert len(rows(store, dep_id)) == 2


def test_phase_windows_follow_the_history(store):
    dep_id = new_deployment(store, "w")
    created = deps.as_aware(deps.get_deployment(store, dep_id).created_at).timestamp()
    claim = deps.claim(store, dep_id, "t", [Phase.PENDING])
    claim = deps.transition(store, claim, Phase.PREPARING)
    deps.transition(store, claim, Phase.SYNCING)
    h = [deps.as_aware(c.at).timestamp() for c in deps.phase_history(store, dep_id)]
    assert phase_windows(store, dep_id) == [("PENDING", created, h[0]), ("PREPARING", h[0], h[1]),
                                            ("SYNCING", h[1], None)]


def test_tracker_summarises_each_ended_phase_once(store, metrics, unique_name):
    cluster = unique_name("trk")
    dep_id = new_deployment(store, cluster)
    tracker = PhaseTracker(store, metrics)
    assert tracker.observe({dep_id: (cluster, "PENDING")}) == 0
    claim = deps.claim(store, dep_id, "t", [Phase.PENDING])
    metrics.append(cluster, time.time(), {"lag_ms": 3.0})
    time.sleep(0.01)
    claim = deps.transition(store, claim, Phase.PREPARING)
    time.sleep(0.01)
    metrics.append(cluster, time.time(), {"lag_ms": 5.0})
    time.sleep(0.01)
    claim = deps.transition(store, claim, Phase.SYNCING)  # PREPARING was shorter than a refresh
    assert tracker.observe({dep_id: (cluster, "SYNCING")}) == 2
    got = rows(store, dep_id)
    assert got[("PENDING", "lag_ms")].mean == 3.0 and got[("PREPARING", "lag_ms")].mean == 5.0
    assert tracker.observe({dep_id: (cluster, "SYNCING")}) == 0  # nothing new
    metrics.append(cluster, time.time(), {"lag_ms": 8.0})
    time.sleep(0.01)
    deps.transition(store, claim, Phase.NO_GO, reason="test")
    assert tracker.observe({}) == 1  # it ended: its last phase is summarised, once
    assert rows(store, dep_id)[("SYNCING", "lag_ms")].mean == 8.0
    assert tracker.observe({}) == 0 and len(rows(store, dep_id)) == 3


def all_points(store, dep_id: str) -> list[tuple[str, float, float]]:
    with store.session() as s:
        return [(m, ts, v) for m, ts, v in s.execute(
            select(MetricPoint.metric, MetricPoint.ts, MetricPoint.value)
            .where(MetricPoint.deployment_id == dep_id).order_by(MetricPoint.metric, MetricPoint.ts))]


def test_downsample_is_the_mean_of_each_second_and_keeps_only_plotted_metrics():
    t0 = 1_700_000_000.0
    samples = [Sample(t0 + i * 0.25, {"lag_ms": float(i), "bp_hit_ratio": 1.0, **({"qps": 10.0} if i < 2 else {})})
               for i in range(8)]
    samples.append(Sample(t0 + 5.5, {"lag_ms": float("nan"), "qps": 4.0}))  # a gap of 3 s, then a NaN lag
    assert downsample(samples) == [
        ("lag_ms", t0 + 0.375, 1.5), ("lag_ms", t0 + 1.375, 5.5),
        ("qps", t0 + 0.125, 10.0), ("qps", t0 + 5.5, 4.0),
    ]
    assert downsample(samples, ("lag_ms",), bucket_s=2.0) == [("lag_ms", t0 + 0.875, 3.5)]


def test_points_are_stored_per_phase_half_open_and_rerun_replaces(store, metrics, unique_name):
    cluster = unique_name("pts")
    dep_id = new_deployment(store, cluster)
    t0 = 1_700_000_000.0
    for i in range(80):  # 20 s at 4 Hz: lag_ms = i, qps 100, writes only in the second phase
        metrics.append(cluster, t0 + i * 0.25, {"lag_ms": float(i), "qps": 100.0, "bp_hit_ratio": 0.5,
                                                **({"writes_per_s": 7.0} if i >= 40 else {})})
    t1, t2 = t0 + 10, t0 + 20
    # The summaries count the sample at t1 (closed window: writes_per_s has 1 sample), the points do not.
    assert summarize_phase(store, metrics, dep_id, cluster, "SYNCING", t0, t1) == 4
    first = all_points(store, dep_id)
    lag = [(ts, v) for m, ts, v in first if m == "lag_ms"]
    # One point per second, the mean of its 4 samples; the sample at t1 belongs to the next phase.
    assert lag == [(pytest.approx(t0 + k + 0.375), 4 * k + 1.5) for k in range(10)]
    assert {m for m, _, _ in first} == {"lag_ms", "qps"}  # bp_hit_ratio is not plotted; writes start at t1
    assert summarize_phase(store, metrics, dep_id, cluster, "READY", t1, t2) == 4
    both = all_points(store, dep_id)
    assert len([p for p in both if p[0] == "lag_ms"]) == 20 and len([p for p in both if p[0] == "writes_per_s"]) == 10
    assert min(ts for m, ts, _ in both if m == "writes_per_s") >= t1
    # Again (another sampler, a restart): the same rows, never duplicated; the other phase untouched.
    summarize_phase(store, metrics, dep_id, cluster, "SYNCING", t0, t1)
    summarize_phase(store, metrics, dep_id, cluster, "READY", t1, t2)
    assert all_points(store, dep_id) == both
    assert metric_points(store, dep_id, "lag_ms") == [(ts, v) for m, ts, v in both if m == "lag_ms"]
    assert set(POINT_METRICS) >= {m for m, _, _ in both}


def test_tracker_writes_the_points_of_ended_phases(store, metrics, unique_name):
    cluster = unique_name("tpt")
    dep_id = new_deployment(store, cluster)
    tracker = PhaseTracker(store, metrics)
    tracker.observe({dep_id: (cluster, "PENDING")})
    claim = deps.claim(store, dep_id, "t", [Phase.PENDING])
    start = time.time()
    for i in range(6):
        metrics.append(cluster, start + i * 0.01, {"probe_p99_ms": 2.0 + i, "errors_per_s": 0.0})
    time.sleep(0.1)
    deps.transition(store, claim, Phase.PREPARING)
    assert tracker.observe({dep_id: (cluster, "PREPARING")}) == 2
    got = all_points(store, dep_id)
    assert [m for m, _, _ in got].count("probe_p99_ms") in (1, 2)  # the 6 samples span at most 2 seconds
    assert sum(v for m, _, v in got if m == "errors_per_s") == 0.0 and ("probe_p99_ms" in {m for m, _, _ in got})
