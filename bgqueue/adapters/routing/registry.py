"""The routing registry: where each cluster's writer endpoint lives (Redis).

A route is the hash ``{prefix}route:{cluster}`` with fields host, port, version,
updated_at, reason. Every change is published on the channel of the same name as JSON
``{"cluster", "host", "port", "version", "updated_at", "reason"}`` so that clients follow
a flip at once; clients also re-read the hash, because pub/sub drops messages while a
subscriber is disconnected.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from bgqueue.model.errors import BgqueueError


class RouteConflict(BgqueueError):
    """The route moved on since the caller read it (another flip won); nothing was changed."""

    def __init__(self, cluster: str, expected: int, actual: int | None):
        super().__init__(
            f"route of {cluster}: expected version {expected}, found "
            f"{'no route' if actual is None else f'version {actual}'}"
        )
        self.cluster = cluster
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Route:
    """One version of a cluster's writer endpoint."""

    cluster: str
    host: str
    port: int
    version: int
    updated_at: float
    reason: str

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)

    @classmethod
    def from_hash(cls, cluster: str, fields: dict) -> Route:
        return cls(
            cluster=cluster,
            host=fields["host"],
            port=int(fields["port"]),
            version=int(fields["version"]),
            updated_at=float(fields.get("updated_at") or 0.0),
            reason=fields.get("reason", ""),
        )

    @classmethod
    def from_message(cls, data: str | bytes) -> Route:
        """Parse a message published on a route channel."""
        msg = json.loads(data)
        return cls.from_hash(msg["cluster"], msg)


# Both scripts take the time from the Redis server, so updated_at is comparable across
# workers whatever their clocks; Redis 7 replicates script effects, so TIME is allowed.
_NOW = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
"""

_PUBLISH = """
redis.call('PUBLISH', KEYS[1], cjson.encode({cluster=ARGV[5], host=ARGV[1],
    port=tonumber(ARGV[2]), version=version, updated_at=now, reason=ARGV[4]}))
"""

# KEYS[1]=route key (also the channel); ARGV: host, port, (unused), reason, cluster.
# Returns {created (0/1)}; the caller reads the route afterwards.
_INIT = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local version = 1
redis.call('HSET', KEYS[1], 'host', ARGV[1], 'port', ARGV[2], 'version', version,
    'updated_at', now, 'reason', ARGV[4])
""" + _PUBLISH + """
return 1
"""

# ARGV: host, port, expect_version, reason, cluster.
# Returns {0, stored_version or -1} on conflict, {1, new_version, now} on success.
_FLIP = _NOW + """
local stored = redis.call('HGET', KEYS[1], 'version')
if stored == false or tonumber(stored) ~= tonumber(ARGV[3]) then
    return {0, stored == false and -1 or tonumber(stored)}
end
local version = tonumber(stored) + 1
redis.call('HSET', KEYS[1], 'host', ARGV[1], 'port', ARGV[2], 'version', version,
    'updated_at', now, 'reason', ARGV[4])
""" + _PUBLISH + """
return {1, version, now}
"""


class RoutingRegistry:
    """Versioned writer endpoints per cluster, changed only by compare-and-set flips."""

    def __init__(self, redis_client: redis.Redis, prefix: str = "bgq:"):
        # decode_responses=True is expected (redis.Redis.from_url(url, decode_responses=True)).
        self._redis = redis_client
        self.prefix = prefix
        self._prefix = prefix
        self._init = redis_client.register_script(_INIT)
        self._flip = redis_client.register_script(_FLIP)

    @property
    def redis(self) -> redis.Redis:
        """The Redis client routes live in (maintenance mode shares it)."""
        return self._redis

    def key(self, cluster: str) -> str:
        return f"{self._prefix}route:{cluster}"

    def channel(self, cluster: str) -> str:
        """The pub/sub channel on which every change of ``cluster``'s route is published."""
        return self.key(cluster)

    def get(self, cluster: str) -> Route | None:
        """The current route, or None when the cluster has none."""
        fields = self._redis.hgetall(self.key(cluster))
        if not fields:
            return None
        return Route.from_hash(cluster, _decoded(fields))

    def init(self, cluster: str, host: str, port: int, reason: str = "init") -> Route:
        """Create the route at version 1 if the cluster has none; return the current route.

        An existing route is left untouched (whatever endpoint it names).
        """
        self._init(keys=[self.key(cluster)], args=[host, int(port), "", reason, cluster])
        route = self.get(cluster)
        assert route is not None  # routes are never deleted by the registry
        return route

    def flip(self, cluster: str, host: str, port: int, expect_version: int, reason: str) -> Route:
        """Point ``cluster`` at host:port if its route is still at ``expect_version``.

        Atomic (one Lua script): on success the version is bumped by one, the change is
        published, and the new route is returned — even when the endpoint did not change
        (callers that want a no-op check the current route first). Raises RouteConflict
        when the stored version differs or the route does not exist.
        """
        result = self._flip(
            keys=[self.key(cluster)], args=[host, int(port), int(expect_version), reason, cluster]
        )
        if int(result[0]) == 0:
            actual = int(result[1])
            raise RouteConflict(cluster, expect_version, None if actual < 0 else actual)
        return Route(
            cluster=cluster,
            host=host,
            port=int(port),
            version=int(result[1]),
            updated_at=float(_text(result[2])),
            reason=reason,
        )


    def flip_to(self, cluster: str, host: str, port: int, seen_version: int | None, reason: str) -> Route:
        """Point the writer endpoint at host:port, expecting the version seen before the fence
        (``seen_version``; None: whatever is there now). Idempotent: a route that already names
        host:port is returned as it is. Redis errors are retried, since a flip whose reply was
        lost is found done on the next read; a version conflict (someone else flipped) is final."""
        for attempt in range(3):
            try:
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


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(fields: dict) -> dict:
    # Tolerate a client built without decode_responses rather than failing on bytes keys.
    return {_text(k): _text(v) for k, v in fields.items()}
