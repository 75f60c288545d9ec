"""The routes' published copy in Redis: what applications read and subscribe to.

Per cluster, in the environment's namespace ``ns``:
- ``{prefix}{ns}:route:{cluster}``: a hash (host, port, version, updated_at, reason); every
  change is also published on the channel of the same name (JSON of the same fields). Redis
  pub/sub ignores database numbers, so the namespace, not the database, keeps environments that
  share a Redis server apart.
- ``{prefix}{ns}:endpoints:{cluster}``: a set of ``host:port``, the cluster's declared servers
  (the allow-list a client without its own list accepts routes from).

Writes are Lua scripts, so a copy never goes backwards: ``publish`` writes a version only over
a missing or older one (or over exactly the copy it was told to replace).
"""
from __future__ import annotations

from collections.abc import Iterable

import redis

from bgqueue.adapters.routing.route import (
    Endpoint,
    Route,
    check_namespace,
    endpoint_text,
    parse_endpoint,
)

_NOW = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
"""

_PUBLISH = """
redis.call('PUBLISH', KEYS[1], cjson.encode({cluster=ARGV[5], host=ARGV[1],
    port=tonumber(ARGV[2]), version=version, updated_at=now, reason=ARGV[4]}))
"""

# Without a store (tools, tests): Redis is the only copy and these two scripts change it.
# KEYS[1]=route key (also the channel); ARGV: host, port, (unused), reason, cluster.
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

# With a store: copy the store's route. ARGV: host, port, version, updated_at, reason, cluster,
# replace ('' = only over a missing, unreadable or older copy; else only over the copy at exactly
# that version). Returns 1 when written (and published), 0 when left alone.
_COPY = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'version'))
if ARGV[7] == '' then
    if cur ~= nil and cur >= tonumber(ARGV[3]) then return 0 end
elseif cur ~= tonumber(ARGV[7]) then
    return 0
end
redis.call('HSET', KEYS[1], 'host', ARGV[1], 'port', ARGV[2], 'version', ARGV[3],
    'updated_at', ARGV[4], 'reason', ARGV[5])
redis.call('PUBLISH', KEYS[1], cjson.encode({cluster=ARGV[6], host=ARGV[1],
    port=tonumber(ARGV[2]), version=tonumber(ARGV[3]), updated_at=ARGV[4], reason=ARGV[5]}))
return 1
"""


class PublishedRoutes:
    """Reads and writes of the Redis copy of one namespace's routes."""

    def __init__(self, client: redis.Redis, prefix: str, namespace: str):
        # decode_responses=True is expected (redis.Redis.from_url(url, decode_responses=True)).
        self.redis = client
        self.prefix = prefix
        self.namespace = check_namespace(namespace)
        self._init = client.register_script(_INIT)
        self._flip = client.register_script(_FLIP)
        self._copy = client.register_script(_COPY)

    def key(self, cluster: str) -> str:
        return f"{self.prefix}{self.namespace}:route:{cluster}"

    def endpoints_key(self, cluster: str) -> str:
        return f"{self.prefix}{self.namespace}:endpoints:{cluster}"

    # --- reads ------------------------------------------------------------------------------
    def read(self, cluster: str) -> Route | None:
        """The copy, or None when there is none (or it cannot be parsed: nobody may follow it)."""
        return _parse(cluster, self.redis.hgetall(self.key(cluster)))

    def read_with_endpoints(self, cluster: str) -> tuple[Route | None, frozenset[Endpoint] | None]:
        """(the copy, the registered allow-list or None) in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key(cluster))
        pipe.smembers(self.endpoints_key(cluster))
        fields, members = pipe.execute()
        return _parse(cluster, fields), _endpoints(members)

    def read_many(self, clusters: list[str]) -> dict[str, tuple[Route | None, frozenset[Endpoint] | None]]:
        pipe = self.redis.pipeline(transaction=False)
        for c in clusters:
            pipe.hgetall(self.key(c))
            pipe.smembers(self.endpoints_key(c))
        replies = pipe.execute()
        return {c: (_parse(c, replies[2 * i]), _endpoints(replies[2 * i + 1])) for i, c in enumerate(clusters)}

    # --- writes -----------------------------------------------------------------------------
    def publish(self, route: Route, *, replace_version: int | None = None) -> bool:
        """Write ``route`` as the copy and publish it, unless the copy is already at its version
        or later (or, with ``replace_version``, unless the copy is no longer at that version)."""
        return bool(self._copy(keys=[self.key(route.cluster)], args=[
            route.host, int(route.port), int(route.version), f"{route.updated_at:.6f}", route.reason,
            route.cluster, "" if replace_version is None else int(replace_version)]))

    def set_endpoints(self, cluster: str, endpoints: Iterable[Endpoint]) -> None:
        key = self.endpoints_key(cluster)
        pipe = self.redis.pipeline(transaction=True)  # readers never see an empty list in between
        pipe.delete(key)
        members = sorted(endpoint_text(e) for e in endpoints)
        if members:
            pipe.sadd(key, *members)
        pipe.execute()

    def init_only_copy(self, cluster: str, host: str, port: int, reason: str) -> None:
        self._init(keys=[self.key(cluster)], args=[host, int(port), "", reason, cluster])

    def flip_only_copy(self, cluster: str, host: str, port: int, expect_version: int, reason: str) -> list:
        return self._flip(keys=[self.key(cluster)], args=[host, int(port), int(expect_version), reason, cluster])


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(cluster: str, fields: dict) -> Route | None:
    if not fields:
        return None
    try:
        # Tolerate a client built without decode_responses rather than failing on bytes keys.
        return Route.from_hash(cluster, {_text(k): _text(v) for k, v in fields.items()})
    except (KeyError, ValueError):
        return None


def _endpoints(members) -> frozenset[Endpoint] | None:
    if not members:
        return None
    out = set()
    for m in members:
        try:
            host, port = parse_endpoint(_text(m))
        except ValueError:
            continue  # an unreadable member allows nothing
        out.add((host.lower(), port))
    return frozenset(out)
