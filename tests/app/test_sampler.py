"""The sampler process loop against real pairs, a real redis-server and a real store."""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import select

from bgqueue.adapters.metrics.samples import MetricsStore
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import MetricSummary
from bgqueue.app.sampler import Sampler, run_sampler
from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import Phase
from bgqueue.sandbox import MONITOR_PASSWORD_ENV
from tests.adapters.metrics.test_probe import switch_to_green
from tests.fixtures.bgq import REPO
from tests.fixtures.servers import both_flavours


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield s
    s.dispose()


@contextmanager
def running(sampler: Sampler):
    stop = threading.Event()
    t = threading.Thread(target=sampler.run_forever, args=(stop,))
    t.start()
    try:
        yield sampler
    finally:
        stop.set()
        t.join(timeout=10)
        assert not t.is_alive()


def wait_for(predicate, timeout: float = 5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


def spec_of(pair) -> ClusterSpec:
    return ClusterSpec.model_validate(pair.spec_dict())


@both_flavours
def test_samples_land_in_redis_at_4_hz(cluster_pair_factory, unique_name, r):
    pair = cluster_pair_factory(unique_name("hz"))
    sampler = Sampler(r, clusters=[spec_of(pair)])
    with running(sampler):
        time.sleep(2.6)
        samples = sampler.metrics.window(pair.name, 2.0)
    assert 5 <= len(samples) <= 9  # 8 alone; a loaded machine skips a tick now and then
    gaps = [b.ts - a.ts for a, b in zip(samples, samples[1:], strict=False)]
    # a fixed 0.25 s grid (a loaded machine delays a sample or skips a tick, never queues them)
    assert all(0.1 < g < 0.8 for g in gaps) and 0.2 < sum(gaps) / len(gaps) < 0.4, gaps
    last = samples[-1].values
    assert last["lag_ms"] == 0 and last["primary_port"] == pair.blue.port and last["qps"] > 0
    stats = sampler.stats.as_dict()
    assert stats["sample_errors"] == 0 and stats["cluster_skips"] == 0 and stats["cpu_s"] > 0
    assert 2.5 < stats["samples_per_s"] <= 4.5  # the first tick is at t=0: 11 samples in ~2.6 s (alone)


def test_roles_follow_a_route_flip(cluster_pair_factory, unique_name, r):
    pair = cluster_pair_factory(unique_name("rf"))
    spec = spec_of(pair)
    routing = RoutingRegistry(r)
    route = routing.init(pair.name, spec.blue.host, spec.blue.port)
    sampler = Sampler(r, clusters=[spec], routing=routing, route_refresh_s=0.25)
    with running(sampler):
        wait_for(lambda: sampler.metrics.latest(pair.name))
        assert sampler.metrics.latest(pair.name).values["primary_port"] == pair.blue.port
        switch_to_green(spec)
        flipped = time.time()
        routing.flip(pair.name, spec.green.host, spec.green.port, route.version, "test")
        wait_for(lambda: sampler.metrics.latest(pair.name).values.get("lag_ms") == 0
                 and sampler.metrics.latest(pair.name).values["primary_port"] == pair.green.port, 3)
        time.sleep(1.5)
    after = [s.values for s in sampler.metrics.range(pair.name, flipped + 1.0, time.time())]
    assert after and all(v["primary_port"] == pair.green.port and v["heartbeat_written"] == 1 for v in after)


def test_a_hung_server_does_not_hold_back_the_others(cluster_pair_factory, unique_name, r):
    pair = cluster_pair_factory(unique_name("ok"))
    # Accepts TCP connections but never says a word: pymysql waits for the greeting until its timeout.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    port = mute.getsockname()[1]
    hung = ClusterSpec.model_validate(dict(pair.spec_dict(), name=unique_name("hung"),
                                           blue={"host": "127.0.0.1", "port": port},
                                           green={"host": "127.0.0.1", "port": port + 1 if port < 65535 else 1}))
    sampler = Sampler(r, clusters=[spec_of(pair), hung], timeout_s=1.0)
    try:
        with running(sampler):
            time.sleep(2.6)
            healthy = sampler.metrics.window(pair.name, 2.0)
    finally:
        mute.close()
    assert len(healthy) >= 7  # the healthy cluster keeps its 4 Hz
    assert sampler.stats.cluster_skips >= 3  # the hung one was skipped, not queued up
    hung_last = sampler.metrics.latest(hung.name)
    assert hung_last is not None and hung_last.values["primary_up"] == 0 and hung_last.values["probe_errors"] >= 1


def test_targets_from_the_store_and_per_phase_summaries(cluster_pair_factory, unique_name, r, store):
    pair = cluster_pair_factory(unique_name("st"))
    spec = pair.spec_dict()
    _, ids = deps.create_batch(store, fleet_name="t", fleet_path="/f", fleet_text="x", clusters=[spec])
    dep_id = ids[pair.name]
    sampler = Sampler(r, store, refresh_s=0.25, route_refresh_s=0.25)
    with running(sampler):
        wait_for(lambda: len(sampler.metrics.window(pair.name, 5)) >= 4)
        claim = deps.claim(store, dep_id, "test", [Phase.PENDING])
        claim = deps.transition(store, claim, Phase.PREPARING)
        time.sleep(1.0)
        deps.transition(store, claim, Phase.NO_GO, reason="test")  # terminal: sampling stops
        wait_for(lambda: sampler.stats.summary_rows >= 2 * 10)
        time.sleep(0.5)  # the tick loop drops the cluster at its next tick; one sample may be in flight
        stopped = sampler.metrics.latest(pair.name).ts
        time.sleep(0.8)
        assert sampler.metrics.latest(pair.name).ts == stopped  # a terminal deployment is not sampled
    history = deps.phase_history(store, dep_id)
    with store.session() as s:
        rows = {(m.phase, m.metric): m for m in s.execute(select(MetricSummary)).scalars()}
    assert {p for p, _ in rows} == {"PENDING", "PREPARING"}
    for phase, (t0, t1) in {"PENDING": (None, history[0].at), "PREPARING": (history[0].at, history[1].at)}.items():
        lag = rows[(phase, "lag_ms")]
        t0 = deps.as_aware(t0 or deps.get_deployment(store, dep_id).created_at).timestamp()
        t1 = deps.as_aware(t1).timestamp()
        values = [v for _, v in sampler.metrics.series(pair.name, "lag_ms", t0, t1)]
        assert lag.count == len(values) and lag.count >= 3 and lag.max == max(values) == 0
        port = rows[(phase, "primary_port")]
        assert port.min == port.max == port.p99 == pair.blue.port
        assert deps.as_aware(lag.started_at).timestamp() == pytest.approx(t0, abs=1e-3)
        assert deps.as_aware(lag.ended_at).timestamp() == pytest.approx(t1, abs=1e-3)
    assert rows[("PREPARING", "lag_ms")].count >= 3  # ~1 s in PREPARING at 4 Hz


def test_run_sampler_reads_a_fleet_file_and_stops_on_its_event(cluster_pair_factory, unique_name, fleet_file,
                                                               bgq_env):
    from config.settings import Settings

    pair = cluster_pair_factory(unique_name("rs"))
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(run_sampler(Runtime.build(Settings()), str(fleet_file([pair])),
                                                                  stop_event=stop)))
    t.start()
    time.sleep(1.2)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive() and 3 <= result["samples"] <= 6 and result["sample_errors"] == 0


def test_run_sampler_stops_cleanly_on_sigterm(cluster_pair_factory, unique_name, fleet_file, bgq_env, r):
    pair = cluster_pair_factory(unique_name("sig"))
    code = ("import json, sys; from config.settings import Settings; from bgqueue.app.sampler import run_sampler; "
            "from bgqueue.adapters.runtime import Runtime; "
            "print(json.dumps(run_sampler(Runtime.build(Settings()), sys.argv[1])))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(fleet_file([pair]))], env=bgq_env, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: MetricsStore(r).latest(pair.name), 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["samples"] >= 1


def test_run_sampler_refuses_a_fleet_whose_password_variable_is_unset(cluster_pair_factory, unique_name,
                                                                      fleet_file, bgq_env, monkeypatch):
    from config.settings import Settings

    path = fleet_file([cluster_pair_factory(unique_name("pw"))])
    monkeypatch.delenv(MONITOR_PASSWORD_ENV)
    with pytest.raises(BadInput, match=MONITOR_PASSWORD_ENV):
        run_sampler(Runtime.build(Settings()), str(path), stop_event=threading.Event())
