"""Fixtures of the client tests: a routing registry, a cluster routed to the test's pair, clients.

Each test module defines ``pair`` (its pair with the schema it needs)."""
from __future__ import annotations

import uuid

import pytest
import redis

from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.client import RoutedClient
from bgqueue.sandbox.pair import APP_DATABASE, APP_USER


@pytest.fixture
def registry(redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield RoutingRegistry(r)
    r.close()


@pytest.fixture
def cluster(pair, registry) -> str:
    name = f"cl-{uuid.uuid4().hex[:10]}"
    registry.init(name, pair.blue.host, pair.blue.port)
    return name


@pytest.fixture
def make_client(pair, cluster, redis_url, sandbox_passwords):
    clients: list[RoutedClient] = []

    def make(**kw) -> RoutedClient:
        kw.setdefault("tls", "disabled")  # loopback sandbox: no TLS (the security tests cover TLS)
        # The fleet file's blue and green: the only servers the client accepts a route to.
        kw.setdefault("endpoints", [(pair.blue.host, pair.blue.port), (pair.green.host, pair.green.port)])
        c = RoutedClient(cluster, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
