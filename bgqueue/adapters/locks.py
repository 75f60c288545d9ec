"""Per-cluster locks in Redis (``bgq:lock:cluster:{name}``).

A lock only prevents duplicate enqueues of the same cluster; the store row stays the
authority on who owns a deployment (fencing epoch). Locks carry a TTL so that a lost holder
cannot block a cluster forever; running deployments refresh theirs.
"""
from __future__ import annotations

import redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class ClusterLocks:
    def __init__(self, client: redis.Redis, prefix: str = "bgq:"):
        self.r = client
        self.prefix = prefix
        self._release = client.register_script(_RELEASE)
        self._refresh = client.register_script(_REFRESH)

    def key(self, cluster: str) -> str:
        return f"{self.prefix}lock:cluster:{cluster}"

    def acquire(self, cluster: str, holder: str, ttl_s: int) -> bool:
        """True when this holder now has the lock (or already had it)."""
        if self.r.set(self.key(cluster), holder, nx=True, ex=ttl_s):
            return True
        return self.holder(cluster) == holder

    def refresh(self, cluster: str, holder: str, ttl_s: int) -> bool:
        return bool(self._refresh(keys=[self.key(cluster)], args=[holder, ttl_s]))

    def release(self, cluster: str, holder: str) -> bool:
        return bool(self._release(keys=[self.key(cluster)], args=[holder]))

    def holder(self, cluster: str) -> str | None:
        v = self.r.get(self.key(cluster))
        return v.decode() if isinstance(v, bytes) else v
