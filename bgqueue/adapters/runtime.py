"""The adapters one process needs (store, redis, routing, locks), built once from settings."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import redis

from bgqueue.adapters.locks import ClusterLocks
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.store.db import Store, open_store
from config.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    store: Store
    redis: redis.Redis
    routing: RoutingRegistry
    locks: ClusterLocks

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=10,
                                      socket_connect_timeout=5, health_check_interval=30)
        return cls(settings=settings, store=open_store(settings.effective_store_url), redis=client,
                   routing=RoutingRegistry(client), locks=ClusterLocks(client))


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """The process's runtime (workers and the CLI call this; tests reset it with cache_clear)."""
    return Runtime.build(get_settings())
