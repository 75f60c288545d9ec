"""Per-phase summaries: exact statistics, replace-not-duplicate, phase windows from the history."""
import time

import pytest
import redis
from sqlalchemy import select

from bgqueue.metrics.samples import MetricsStore
from bgqueue.metrics.summary import PhaseTracker, phase_windows, summarize_phase
from bgqueue.phases import Phase
from bgqueue.store import deployments as deps
from bgqueue.store.db import Store
from bgqueue.store.models import MetricSummary

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
