"""The routing registry against a real redis-server: versions, compare-and-set flips, publishing."""
from __future__ import annotations

import json
import threading
import uuid

import pytest
import redis

from bgqueue.adapters.routing.registry import Route, RouteConflict, RoutingRegistry
from bgqueue.model.errors import BgqueueError


@pytest.fixture
def registry(redis_url: str) -> RoutingRegistry:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield RoutingRegistry(r)
    r.close()


@pytest.fixture
def cluster() -> str:
    # The session's redis-server is shared: every test routes its own cluster.
    return f"rt-{uuid.uuid4().hex[:10]}"


def test_init_creates_version_1_once(registry: RoutingRegistry, cluster: str):
    assert registry.get(cluster) is None
    route = registry.init(cluster, "127.0.0.1", 3306)
    assert (route.cluster, route.endpoint, route.version, route.reason) == (cluster, ("127.0.0.1", 3306), 1, "init")
    assert route.updated_at > 0
    # A second init (another worker, a restart) must not move an existing route.
    again = registry.init(cluster, "10.0.0.9", 3307, reason="other")
    assert again == route
    assert registry.get(cluster) == route


def test_flip_bumps_version_and_checks_expected_version(registry: RoutingRegistry, cluster: str):
    first = registry.init(cluster, "127.0.0.1", 3306)
    flipped = registry.flip(cluster, "127.0.0.1", 3307, expect_version=1, reason="switchover")
    assert (flipped.endpoint, flipped.version, flipped.reason) == (("127.0.0.1", 3307), 2, "switchover")
    assert flipped.updated_at >= first.updated_at
    assert registry.get(cluster) == flipped

    with pytest.raises(RouteConflict) as e:
        registry.flip(cluster, "127.0.0.1", 3306, expect_version=1, reason="stale")
    assert isinstance(e.value, BgqueueError)
    assert (e.value.expected, e.value.actual) == (1, 2)
    assert registry.get(cluster) == flipped  # a conflict changes nothing

    # Flipping to the endpoint it already names still bumps: callers check before flipping.
    same = registry.flip(cluster, "127.0.0.1", 3307, expect_version=2, reason="again")
    assert (same.endpoint, same.version) == (("127.0.0.1", 3307), 3)


def test_flip_of_a_cluster_without_route_conflicts(registry: RoutingRegistry, cluster: str):
    with pytest.raises(RouteConflict) as e:
        registry.flip(cluster, "127.0.0.1", 3307, expect_version=1, reason="x")
    assert e.value.actual is None
    assert registry.get(cluster) is None


def test_concurrent_flips_from_the_same_version_have_one_winner(registry: RoutingRegistry, cluster: str):
    registry.init(cluster, "127.0.0.1", 3306)
    outcomes: list[object] = []
    barrier = threading.Barrier(8)

    def flip(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(registry.flip(cluster, "127.0.0.1", 4000 + i, expect_version=1, reason=f"w{i}"))
        except RouteConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, Route)]
    assert len(winners) == 1 and len(outcomes) == 8
    assert registry.get(cluster) == winners[0]
    assert winners[0].version == 2


def test_every_change_is_published(registry: RoutingRegistry, cluster: str, redis_url: str):
    sub = redis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = sub.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(registry.channel(cluster))
    assert registry.channel(cluster) == f"bgq:default:route:{cluster}"
    try:
        registry.init(cluster, "127.0.0.1", 3306)
        registry.init(cluster, "127.0.0.1", 3399)  # no change, no message
        flipped = registry.flip(cluster, "127.0.0.1", 3307, expect_version=1, reason="switchover")
        messages = []
        for _ in range(20):
            m = pubsub.get_message(timeout=0.1)
            if m:
                messages.append(m)
            if len(messages) == 2:
                break
        # Nothing further: the second init published nothing.
        assert pubsub.get_message(timeout=0.1) is None
    finally:
        pubsub.close()
        sub.close()
    bodies = [json.loads(m["data"]) for m in messages]
    assert [(b["cluster"], b["host"], b["port"], b["version"]) for b in bodies] == [
        (cluster, "127.0.0.1", 3306, 1), (cluster, "127.0.0.1", 3307, 2),
    ]
    assert Route.from_message(messages[1]["data"]) == flipped


def test_prefix_is_respected(redis_url: str, cluster: str):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        other = RoutingRegistry(r, prefix="other:")
        other.init(cluster, "127.0.0.1", 1)
        assert r.hgetall(f"other:default:route:{cluster}")["version"] == "1"
        assert RoutingRegistry(r).get(cluster) is None
    finally:
        r.close()
