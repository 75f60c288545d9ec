"""The routing registry: where each cluster's writer endpoint lives.

With a store (every bgqueue process: ``Runtime.build`` gives it one) the store holds each route
(endpoint, version, updated_at, reason, the cluster's allow-list) and is the authority; Redis
holds the published copy that applications read and subscribe to (``published``). A flip is a
compare-and-set on the version in the store, then the copy and a message; the copy is rebuilt
from the store whenever bgqueue finds it missing or different (every ``get``, every flip,
``republish``), so a Redis that restarted empty never makes a flip fail, and a copy that
someone else wrote is put back.

Without a store (applications, tools, tests) Redis is the only copy: reads read it, and
``init``/``flip`` change it with the same compare-and-set semantics.

Messages on the channel are only a signal: every bgqueue reader re-reads the stored route, and
accepts it only if it names one of the cluster's declared endpoints.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis

from bgqueue.adapters.routing.published import PublishedRoutes
from bgqueue.adapters.routing.route import (
    DEFAULT_NAMESPACE,
    Endpoint,
    Route,
    RouteConflict,
    endpoint_set,
)
from bgqueue.adapters.store import routes as stored
from bgqueue.adapters.store.db import Store
from bgqueue.model.errors import BgqueueError
from config.settings import get_settings

__all__ = ["DEFAULT_NAMESPACE", "Route", "RouteConflict", "RoutingRegistry"]

log = logging.getLogger(__name__)
_COPY_ERRORS = (redis.exceptions.RedisError, OSError)


class RoutingRegistry:
    """Versioned writer endpoints per cluster, changed only by compare-and-set flips."""

    def __init__(self, redis_client: redis.Redis, prefix: str = "bgq:", *, namespace: str | None = None,
                 store: Store | None = None):
        """``namespace``: the environment's (default: the BGQUEUE_NAMESPACE setting)."""
        self.copy = PublishedRoutes(redis_client, prefix, namespace if namespace is not None else
                                    get_settings().namespace)
        self.namespace = self.copy.namespace
        self.store = store

    @property
    def redis(self) -> redis.Redis:
        """The Redis client route copies live in (maintenance mode shares it)."""
        return self.copy.redis

    def key(self, cluster: str) -> str:
        """The Redis hash of the cluster's published route."""
        return self.copy.key(cluster)

    def channel(self, cluster: str) -> str:
        """The pub/sub channel on which every change of ``cluster``'s route is signalled."""
        return self.copy.key(cluster)

    def endpoints_key(self, cluster: str) -> str:
        """The Redis set of the cluster's allowed endpoints (``host:port``)."""
        return self.copy.endpoints_key(cluster)

    # --- reads ------------------------------------------------------------------------------
    def get(self, cluster: str) -> Route | None:
        """The current route, or None when the cluster has none.

        With a store: the store's route; a Redis copy that is missing or differs is rewritten
        (a Redis that cannot be reached is only logged: the store answers). A route that only
        Redis knows (written before the store held routes) is taken into the store once.
        """
        if self.store is None:
            return self.copy.read(cluster)
        try:
            copy, copy_eps = self.copy.read_with_endpoints(cluster)  # before the store: see _sync
            reachable = True
        except _COPY_ERRORS as e:
            log.warning("route of %s: Redis copy unreadable, answering from the store: %r", cluster, e)
            copy, copy_eps, reachable = None, None, False
        held = stored.get(self.store, self.namespace, cluster)
        if held is None:
            if copy is None:
                return None
            held = stored.create(self.store, self.namespace, _as_stored(copy, copy_eps))
            log.warning("route of %s: taken into the store from its Redis copy (v%d, %s:%s)", cluster,
                        held.version, held.host, held.port)
        if reachable:
            try:
                self._sync(held, copy, copy_eps)
            except _COPY_ERRORS as e:
                log.warning("route of %s: Redis copy not rewritten (the store answers): %r", cluster, e)
        return _as_route(held)

    # --- changes ----------------------------------------------------------------------------
    def init(self, cluster: str, host: str, port: int, reason: str = "init") -> Route:
        """Create the route at version 1 if the cluster has none; return the current route.

        An existing route is left untouched (whatever endpoint it names).
        """
        if self.store is None:
            self.copy.init_only_copy(cluster, host, port, reason)
            route = self.copy.read(cluster)
            assert route is not None  # routes are never deleted by the registry
            return route
        current = self.get(cluster)
        if current is not None:
            return current
        held = stored.create(self.store, self.namespace, stored.StoredRoute(
            cluster, host, int(port), 1, _now(), reason, None))
        self._publish_quietly(held)
        return _as_route(held)

    def flip(self, cluster: str, host: str, port: int, expect_version: int, reason: str) -> Route:
        """Point ``cluster`` at host:port if its route is still at ``expect_version``.

        Atomic: on success the version is bumped by one, the change is published, and the new
        route is returned — even when the endpoint did not change (callers that want a no-op
        check the current route first). Raises RouteConflict when the stored version differs or
        the route does not exist. With a store the flip is the store's compare-and-set; a Redis
        that cannot take the copy does not undo it (the copy is rebuilt from the store later).
        """
        if self.store is None:
            return self._flip_only_copy(cluster, host, port, expect_version, reason)
        flipped = self._flip_stored(cluster, host, port, expect_version, reason)
        if flipped is None:
            actual = stored.get(self.store, self.namespace, cluster)
            raise RouteConflict(cluster, expect_version, None if actual is None else actual.version)
        return flipped

    def _flip_stored(self, cluster: str, host: str, port: int, expect_version: int, reason: str,
                     only_if_elsewhere: bool = False) -> Route | None:
        """The store's compare-and-set, then the copy; None when it did not apply."""
        assert self.store is not None
        now = _now()

        def cas() -> bool:
            return stored.flip(self.store, self.namespace, cluster, expect_version=int(expect_version), host=host,
                               port=int(port), updated_at=now, reason=reason, only_if_elsewhere=only_if_elsewhere)

        if not cas():
            # No row: a route only Redis knows is taken into the store, and the flip tried again.
            if stored.get(self.store, self.namespace, cluster) is not None or self.get(cluster) is None or not cas():
                return None
        held = stored.StoredRoute(cluster, host, int(port), int(expect_version) + 1, now, reason, None)
        self._publish_quietly(held)
        return _as_route(held)

    def flip_to(self, cluster: str, host: str, port: int, seen_version: int | None, reason: str) -> Route:
        """Point the writer endpoint at host:port, expecting the version seen before the fence
        (``seen_version``; None: whatever is there now). Idempotent: a route that already names
        host:port is returned as it is. Redis errors are retried, since a flip whose reply was
        lost is found done on the next read; a version conflict (someone else flipped) is final."""
        for attempt in range(3):
            try:
                if self.store is not None and seen_version is not None:
                    # The compare-and-set first: in the switchover this runs while writes are
                    # blocked, and the reads below are only needed when it did not apply.
                    flipped = self._flip_stored(cluster, host, port, seen_version, reason, only_if_elsewhere=True)
                    if flipped is not None:
                        return flipped
                route = self.get(cluster)
                if route is not None and (route.host, route.port) == (host, port):
                    return route
                expect = seen_version if seen_version is not None else (route.version if route else 0)
                return self.flip(cluster, host, port, expect_version=expect, reason=reason)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def allow(self, cluster: str, endpoints: Iterable) -> frozenset[Endpoint]:
        """Register the cluster's declared endpoints (blue, green) as the allow-list that clients
        without their own list accept routes from. With a store the route must exist (``init``)."""
        eps = endpoint_set(endpoints)
        if self.store is None:
            self.copy.set_endpoints(cluster, eps)
            return eps
        if not stored.set_endpoints(self.store, self.namespace, cluster, tuple(sorted(eps))):
            raise BgqueueError(f"route of {cluster}: no route to register endpoints on (init it first)")
        try:
            self.copy.set_endpoints(cluster, eps)
        except _COPY_ERRORS as e:
            log.warning("route of %s: allow-list not copied to Redis (rebuilt later): %r", cluster, e)
        return eps

    def republish(self) -> list[str]:
        """Rewrite every Redis copy of this namespace that is missing or differs from the store
        (after a Redis restart, say). Returns the clusters whose copy was rewritten."""
        if self.store is None:
            return []
        rows = stored.all_routes(self.store, self.namespace)
        copies = self.copy.read_many([r.cluster for r in rows]) if rows else {}
        return [r.cluster for r in rows if self._sync(r, *copies[r.cluster])]

    # --- the copy ---------------------------------------------------------------------------
    def _sync(self, held: stored.StoredRoute, copy: Route | None, copy_eps: frozenset[Endpoint] | None) -> bool:
        """Make the Redis copy say what the store says; True when something was rewritten.

        The copy was read before the store, and the store's version only grows and is written
        before the copy: a copy behind the store is stale (rewrite it), and a copy level with or
        ahead of the store that names something else was not written by bgqueue (replace it)."""
        changed = False
        if copy is None or (copy.version, copy.endpoint) != (held.version, (held.host, held.port)):
            self._publish(held)
            changed = True
        if held.endpoints is not None and copy_eps != endpoint_set(held.endpoints):
            self.copy.set_endpoints(held.cluster, endpoint_set(held.endpoints))
            changed = True
        return changed

    def _publish(self, held: stored.StoredRoute) -> None:
        route = _as_route(held)
        if self.copy.publish(route):
            return
        copy = self.copy.read(held.cluster)
        if copy is not None and (copy.version, copy.endpoint) == (route.version, route.endpoint):
            return  # another worker published the same
        latest = stored.get(self.store, self.namespace, held.cluster) if self.store is not None else None
        if latest is not None and latest.version > held.version:
            return  # a later flip owns the copy now
        found = self.copy.redis.hget(self.copy.key(held.cluster), "version")
        log.warning("route of %s: the Redis copy (version %s, %s) was not written by bgqueue; replacing it with "
                    "the stored route v%d", held.cluster, found, "unreadable" if copy is None else
                    f"{copy.host}:{copy.port}", route.version)
        try:
            replace = int(found) if found is not None else None
        except ValueError:
            replace = None
        self.copy.publish(_as_route(latest or held), replace_version=replace)

    def _publish_quietly(self, held: stored.StoredRoute) -> None:
        try:
            self._publish(held)
        except _COPY_ERRORS as e:
            log.warning("route of %s: v%d stored, its Redis copy not written (rebuilt by the next read or "
                        "republish): %r", held.cluster, held.version, e)

    def _flip_only_copy(self, cluster: str, host: str, port: int, expect_version: int, reason: str) -> Route:
        result = self.copy.flip_only_copy(cluster, host, port, expect_version, reason)
        if int(result[0]) == 0:
            actual = int(result[1])
            raise RouteConflict(cluster, expect_version, None if actual < 0 else actual)
        return Route(cluster=cluster, host=host, port=int(port), version=int(result[1]),
                     updated_at=float(_text(result[2])), reason=reason)


def _now() -> float:
    # Six decimals: the copy holds it as text, and must read back equal.
    return round(time.time(), 6)


def _as_route(held: stored.StoredRoute) -> Route:
    return Route(held.cluster, held.host, held.port, held.version, held.updated_at, held.reason)


def _as_stored(route: Route, endpoints: frozenset[Endpoint] | None) -> stored.StoredRoute:
    return stored.StoredRoute(route.cluster, route.host, route.port, route.version, round(route.updated_at, 6),
                              route.reason, None if endpoints is None else tuple(sorted(endpoints)))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
