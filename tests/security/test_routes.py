"""Routes only from trusted state (issue 11, item 1).

An attacker who can publish on a route channel (or another environment sharing the Redis
server: pub/sub ignores database numbers) must not move an application's client or the CDC
consumer, and credentials must never reach a host that is not one of the cluster's servers.
The host that is not the cluster's is a trap: a listener that counts who connects to it.
"""
from __future__ import annotations

import json
import time

import pytest
import redis

from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.client import NoRoute, RoutedClient, WriteUnavailable
from bgqueue.model.fleet import load_fleet
from bgqueue.sandbox import APP_DATABASE, APP_USER
from tests.adapters.cdc.helpers import ConsumerThread, switch_over, wait_streaming, wait_until, write_cdc_fleet

TABLE = f"{APP_DATABASE}.items"
HUGE = 10**9


@pytest.fixture
def pair(cluster_pair):
    with cluster_pair.blue.root() as r:
        r.cursor().execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, v VARCHAR(32))")
    cluster_pair.wait_green_synced()
    return cluster_pair


@pytest.fixture
def cluster(pair, runtime, unique_name) -> str:
    name = unique_name("sec-route")
    runtime.routing.init(name, pair.blue.host, pair.blue.port)
    return name


@pytest.fixture
def make_client(redis_url, sandbox_passwords):
    clients: list[RoutedClient] = []

    def make(cluster: str, **kw) -> RoutedClient:
        kw.setdefault("deadline_s", 2.0)
        kw.setdefault("max_backoff_s", 0.05)
        c = RoutedClient(cluster, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def declared(pair) -> list[tuple[str, int]]:
    return [(pair.blue.host, pair.blue.port), (pair.green.host, pair.green.port)]


def insert(row_id: int):
    def fn(cur):
        cur.execute(f"INSERT INTO {TABLE} (id, v) VALUES (%s, 'x')", (row_id,))
        return row_id
    return fn


def ids(server) -> list[int]:
    with server.root() as r:
        cur = r.cursor()
        cur.execute(f"SELECT id FROM {TABLE} ORDER BY id")
        return [i for (i,) in cur.fetchall()]


def forged(cluster: str, trap, version: int = HUGE) -> str:
    return json.dumps({"cluster": cluster, "host": trap.host, "port": trap.port, "version": version,
                       "updated_at": f"{time.time():.6f}", "reason": "forged"})


def promote_green(pair) -> None:
    """A hand switchover up to the flip: blue fenced, green caught up and writable."""
    with pair.blue.root() as b:
        b.cursor().execute("SET GLOBAL read_only=1")
    pair.wait_green_synced()
    with pair.green.root() as g:
        cur = g.cursor()
        cur.execute("STOP SLAVE")
        cur.execute("RESET SLAVE ALL")
        cur.execute("SET GLOBAL read_only=0")


def other_environment(redis_url: str, namespace: str) -> tuple[redis.Redis, RoutingRegistry]:
    """Another environment on the same redis-server: its own database number and namespace."""
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1", decode_responses=True)
    return client, RoutingRegistry(client, namespace=namespace)


def test_forged_route_message_changes_nothing_for_a_client_and_a_real_flip_is_followed(
        pair, cluster, runtime, make_client, trap):
    client = make_client(cluster, endpoints=declared(pair))
    client.transaction(insert(1))
    # Someone publishes a route to a host of theirs, with a version no real flip will reach.
    assert runtime.redis.publish(runtime.routing.channel(cluster), forged(cluster, trap)) == 1
    time.sleep(0.5)  # the listener has long read (and acted on) the message by now
    assert (client.route.endpoint, client.route.version) == ((pair.blue.host, pair.blue.port), 1)
    client.transaction(insert(2))
    assert ids(pair.blue) == [1, 2]
    assert trap.connections == 0

    promote_green(pair)
    runtime.routing.flip(cluster, pair.green.host, pair.green.port, expect_version=1, reason="switchover")
    wait_until(lambda: client.route.endpoint == (pair.green.host, pair.green.port), 3, "the client to follow")
    client.transaction(insert(3))
    assert 3 in ids(pair.green) and client.route.version == 2
    assert trap.connections == 0


@pytest.mark.parametrize("allow_list", ["given", "registered"])
def test_a_stored_route_to_an_undeclared_host_is_refused_and_no_credentials_are_sent(
        pair, cluster, runtime, make_client, trap, allow_list):
    if allow_list == "registered":
        runtime.routing.allow(cluster, declared(pair))  # as prepare does
        kw = {}
    else:
        kw = {"endpoints": declared(pair)}
    client = make_client(cluster, **kw)
    client.transaction(insert(1))
    # The Redis copy itself rewritten to name the attacker's host (anyone with write access).
    runtime.redis.hset(runtime.routing.key(cluster), mapping={
        "host": trap.host, "port": trap.port, "version": 2, "updated_at": "1", "reason": "forged"})
    runtime.redis.publish(runtime.routing.channel(cluster), "x")
    time.sleep(0.5)
    assert client.route.endpoint == (pair.blue.host, pair.blue.port)
    client.transaction(insert(2))
    # A client that starts now sees only the forged route: it refuses it and connects nowhere.
    fresh = make_client(cluster, **kw)
    with pytest.raises(WriteUnavailable) as e:
        fresh.transaction(insert(3))
    assert isinstance(e.value.last_error, NoRoute) and "not one of the cluster's endpoints" in str(e.value)
    assert trap.connections == 0
    # bgqueue's own read answers from the store and puts the copy back: the fresh client writes.
    assert runtime.routing.get(cluster).endpoint == (pair.blue.host, pair.blue.port)
    fresh.transaction(insert(3))
    assert ids(pair.blue) == [1, 2, 3]
    assert trap.connections == 0


def test_a_client_without_endpoints_and_without_a_registered_allow_list_accepts_no_route(
        pair, cluster, make_client):
    client = make_client(cluster)
    with pytest.raises(WriteUnavailable) as e:
        client.transaction(insert(1))
    assert isinstance(e.value.last_error, NoRoute) and "none are registered" in str(e.value)
    assert ids(pair.blue) == []


@pytest.mark.parametrize("namespace", ["staging", "default"])
def test_a_flip_in_another_environment_on_the_same_redis_server_changes_nothing(
        pair, cluster, redis_url, make_client, trap, namespace):
    client = make_client(cluster, endpoints=declared(pair))
    client.transaction(insert(1))
    other, theirs = other_environment(redis_url, namespace)
    try:
        # The other environment has a cluster of the same name, on servers of its own.
        theirs.init(cluster, trap.host, trap.port)
        theirs.flip(cluster, trap.host, trap.port, expect_version=1, reason="their switchover")
        theirs.flip(cluster, trap.host, trap.port, expect_version=2, reason="their switchover again")
        time.sleep(0.5)
        assert (client.route.endpoint, client.route.version) == ((pair.blue.host, pair.blue.port), 1)
        client.transaction(insert(2))
    finally:
        other.flushdb()
        other.close()
    assert ids(pair.blue) == [1, 2]
    assert trap.connections == 0


def test_cdc_consumer_follows_only_its_clusters_servers(cluster_pair_factory, unique_name, tmp_path, runtime,
                                                       redis_url, trap):
    pair = cluster_pair_factory(unique_name("sec-cdc"))
    fleet = write_cdc_fleet(tmp_path / "fleet.yaml", [pair])
    spec = load_fleet(fleet).clusters[0]
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    key = runtime.routing.key(spec.name)

    def still_on_blue(what: str) -> None:
        time.sleep(1.5)  # past the consumer's route check period (1 s) and its wake-up
        status = state.status()
        assert status.get("state") == "streaming" and status.get("source") == str(spec.blue), (what, status)
        assert trap.connections == 0, what

    consumer = ConsumerThread(runtime.settings, fleet).start()
    other, theirs = other_environment(redis_url, "staging")
    try:
        wait_streaming(state, str(spec.blue))
        runtime.redis.publish(runtime.routing.channel(spec.name), forged(spec.name, trap))
        still_on_blue("a forged message")

        theirs.init(spec.name, trap.host, trap.port)
        theirs.flip(spec.name, trap.host, trap.port, expect_version=1, reason="their switchover")
        still_on_blue("a flip in another environment")

        runtime.redis.hset(key, mapping={"host": trap.host, "port": trap.port, "version": HUGE,
                                         "updated_at": "1", "reason": "forged"})
        runtime.redis.publish(runtime.routing.channel(spec.name), "x")
        still_on_blue("a forged Redis copy")
        # The consumer reads the store's route, and put the copy back on the way.
        assert runtime.redis.hgetall(key)["port"] == str(spec.blue.port)

        # Even the store's route is followed only to blue or green (another fleet file naming a
        # cluster of the same name with other servers, say).
        runtime.routing.flip(spec.name, trap.host, trap.port, expect_version=1, reason="other fleet")
        still_on_blue("a stored route to an undeclared host")

        switch_over(runtime, spec)  # a real switchover is still followed
        wait_streaming(state, str(spec.green))
    finally:
        other.flushdb()
        other.close()
        consumer.stop()
    assert trap.connections == 0


@pytest.mark.parametrize("allow_list", ["given", "registered"])
def test_the_sqlalchemy_engine_refuses_a_stored_route_to_an_undeclared_host(
        pair, cluster, runtime, redis_url, sandbox_passwords, trap, allow_list):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from bgqueue.client.sqlalchemy import NoRoute as EngineNoRoute
    from bgqueue.client.sqlalchemy import routed_engine

    if allow_list == "registered":
        runtime.routing.allow(cluster, declared(pair))
        kw = {}
    else:
        kw = {"endpoints": declared(pair)}
    engine = routed_engine(cluster, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE, pool_size=1, **kw)
    try:
        with engine.begin() as c:
            c.execute(text(f"INSERT INTO {TABLE} (id, v) VALUES (1, 'x')"))
        runtime.redis.hset(runtime.routing.key(cluster), mapping={
            "host": trap.host, "port": trap.port, "version": 2, "updated_at": "1", "reason": "forged"})
        runtime.redis.publish(runtime.routing.channel(cluster), "x")
        time.sleep(0.6)
        engine.dispose()  # every next connection is made from the route as stored now
        with pytest.raises((EngineNoRoute, DBAPIError)) as e:
            with engine.begin() as c:
                c.execute(text(f"INSERT INTO {TABLE} (id, v) VALUES (2, 'x')"))
        assert "not one of the cluster's declared endpoints" in str(e.value), e.value
        assert trap.connections == 0
    finally:
        engine.bgqueue_close()
    assert ids(pair.blue) == [1]
