"""Durable routes (issue 19, "Routes are durable"): the store holds each cluster's route, Redis its
published copy, rebuilt from the store; a flip never fails because Redis lost the key.

Each test has a redis-server of its own: it flushes it, stops it, starts it again empty.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.routing.registry import Route, RouteConflict, RoutingRegistry
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import routes as stored
from bgqueue.adapters.store.journal import Journal
from bgqueue.client import NoRoute, RoutedClient, WriteUnavailable
from bgqueue.engine.mysql import steps
from bgqueue.engine.mysql.switchover import SwitchPlan, switch_writer
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from bgqueue.sandbox import APP_DATABASE, APP_USER, RedisServer
from config.celery import celery_config
from config.settings import Settings


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def rt(own_redis, tmp_path) -> Runtime:
    """A worker's runtime on the test's own redis-server and store."""
    return Runtime.build(Settings(home=tmp_path, redis_url=own_redis.url,
                                  store_url=f"sqlite:///{tmp_path / 'store.sqlite'}"))


@pytest.fixture
def cluster() -> str:
    return f"dur-{uuid.uuid4().hex[:10]}"


def copy_of(rt: Runtime, cluster: str) -> dict:
    return rt.redis.hgetall(rt.routing.key(cluster))


def agree(rt: Runtime, cluster: str) -> Route:
    """The store's route and its Redis copy say the same, field by field; the route."""
    held = stored.get(rt.store, rt.routing.namespace, cluster)
    copy = Route.from_hash(cluster, copy_of(rt, cluster))
    assert (copy.host, copy.port, copy.version, copy.updated_at, copy.reason) == (
        held.host, held.port, held.version, held.updated_at, held.reason)
    return copy


def test_a_flip_after_redis_lost_every_key_between_prepare_and_flip_succeeds_and_republishes(
        rt, cluster_pair_factory, fleet_file, unique_name):
    pair = cluster_pair_factory(unique_name("dur"))
    spec = load_fleet(fleet_file([pair])).clusters[0]
    _, ids = deps.create_batch(rt.store, fleet_name="t", fleet_path="-", fleet_text="",
                               clusters=[spec.model_dump(mode="json")])
    steps.prepare(rt, ids[spec.name])  # the route at v1 naming blue, and the cluster's allow-list
    assert deps.get_deployment(rt.store, ids[spec.name]).phase == Phase.SYNCING
    assert agree(rt, spec.name).version == 1

    rt.redis.flushall()  # a Redis that restarted without persistence
    sub = redis.Redis.from_url(rt.settings.redis_url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    sub.subscribe(rt.routing.channel(spec.name))
    claim = deps.claim(rt.store, ids[spec.name], "test", [Phase.SYNCING])
    old, new = servers(spec)
    try:
        result = switch_writer(SwitchPlan(cluster=spec, old=old, new=new, repl=spec.replication), rt.store,
                               Journal(rt.store, claim, "switchover"), rt.routing, spec.thresholds.catchup_timeout_s)
    finally:
        old.close()
        new.close()
    assert result.switched, result.reason
    route = agree(rt, spec.name)
    assert (route.endpoint, route.version) == ((spec.green.host, spec.green.port), 2)
    assert rt.redis.smembers(rt.routing.endpoints_key(spec.name)) == {str(spec.blue), str(spec.green)}
    published = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not any('"version":2' in m["data"] for m in published):
        m = sub.get_message(timeout=0.1)
        if m:
            published.append(m)
    sub.close()
    assert any('"version":2' in m["data"] for m in published), published


def test_a_client_that_finds_no_route_gets_it_back_once_bgqueue_republishes(
        rt, own_redis, cluster_pair, sandbox_passwords, cluster):
    rt.routing.init(cluster, cluster_pair.blue.host, cluster_pair.blue.port)
    endpoints = [(cluster_pair.blue.host, cluster_pair.blue.port), (cluster_pair.green.host, cluster_pair.green.port)]
    rt.redis.flushall()
    client = RoutedClient(cluster, own_redis.url, APP_USER, sandbox_passwords.app, APP_DATABASE, endpoints=endpoints,
                          deadline_s=1.0, max_backoff_s=0.05)
    try:
        with pytest.raises(WriteUnavailable) as e:
            client.transaction(lambda cur: cur.execute("SELECT 1"))
        assert isinstance(e.value.last_error, NoRoute)
        assert rt.routing.republish() == [cluster]  # what the beat job runs every few seconds
        assert rt.routing.republish() == []  # nothing left to rewrite
        client.transaction(lambda cur: cur.execute("SELECT 1"))
        assert client.route.endpoint == (cluster_pair.blue.host, cluster_pair.blue.port)
    finally:
        client.close()
    schedule = celery_config(rt.settings)["beat_schedule"]["republish-routes"]
    assert schedule["task"] == "bgqueue.maintenance.republish_routes" and schedule["schedule"] <= 10


def test_stored_version_and_redis_copy_agree_after_each_flip(rt, cluster):
    rt.routing.init(cluster, "127.0.0.1", 3306)
    agree(rt, cluster)
    for version, port in ((1, 3307), (2, 3306), (3, 3307)):
        flipped = rt.routing.flip(cluster, "127.0.0.1", port, expect_version=version, reason=f"flip {version}")
        assert flipped == agree(rt, cluster) == rt.routing.get(cluster)
    with pytest.raises(RouteConflict) as e:
        rt.routing.flip(cluster, "127.0.0.1", 3306, expect_version=2, reason="stale")
    assert (e.value.expected, e.value.actual) == (2, 4)
    assert agree(rt, cluster).version == 4


def test_a_flip_while_redis_is_down_is_stored_and_published_when_it_returns(rt, own_redis, cluster):
    rt.routing.init(cluster, "127.0.0.1", 3306)
    own_redis.stop()
    route = rt.routing.flip_to(cluster, "127.0.0.1", 3307, 1, "switchover")  # does not raise
    assert (route.port, route.version) == (3307, 2)
    assert rt.routing.get(cluster) == route  # the store answers
    own_redis.start()  # the same port, empty
    assert rt.routing.republish() == [cluster]
    assert agree(rt, cluster) == route


def test_concurrent_flips_from_the_same_version_have_one_winner_in_the_store(rt, cluster):
    rt.routing.init(cluster, "127.0.0.1", 3306)
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def flip(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(rt.routing.flip(cluster, "127.0.0.1", 4000 + i, expect_version=1, reason=f"w{i}"))
        except RouteConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, Route)]
    assert len(winners) == 1 and len(outcomes) == 6
    assert agree(rt, cluster) == winners[0] and winners[0].version == 2


def test_a_copy_someone_else_wrote_is_replaced_and_cannot_block_a_flip(rt, cluster):
    rt.routing.init(cluster, "127.0.0.1", 3306)
    rt.redis.hset(rt.routing.key(cluster), mapping={"host": "203.0.113.9", "port": 3306, "version": 10**9,
                                                    "updated_at": "1", "reason": "forged"})
    flipped = rt.routing.flip(cluster, "127.0.0.1", 3307, expect_version=1, reason="switchover")
    assert flipped.version == 2 and agree(rt, cluster) == flipped


def test_a_route_only_redis_knows_is_taken_into_the_store(rt, cluster):
    # Routes written before the store held them (or by a store-less tool) survive the upgrade.
    legacy = RoutingRegistry(rt.redis, namespace=rt.routing.namespace)
    legacy.init(cluster, "127.0.0.1", 3306)
    legacy.flip(cluster, "127.0.0.1", 3307, expect_version=1, reason="before the upgrade")
    route = rt.routing.get(cluster)
    assert (route.port, route.version) == (3307, 2)
    assert stored.get(rt.store, rt.routing.namespace, cluster).version == 2
    rt.redis.flushall()
    assert rt.routing.get(cluster) == route and agree(rt, cluster) == route
