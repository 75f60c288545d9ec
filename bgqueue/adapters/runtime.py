"""The adapters one process needs (store, redis, routing, locks), built once from settings."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

import redis

from bgqueue.adapters.locks import ClusterLocks
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.store.db import Store, open_store
from bgqueue.model.secrets import register_secret
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
        """Store, Redis and the routing registry (backed by the store: the routes' authority)."""
        register_url_secrets(settings)
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=10,
                                      socket_connect_timeout=5, health_check_interval=30)
        store = open_store(settings.effective_store_url)
        return cls(settings=settings, store=store, redis=client,
                   routing=RoutingRegistry(client, namespace=settings.namespace, store=store),
                   locks=ClusterLocks(client))


def register_url_secrets(settings: Settings) -> None:
    """The passwords inside the Redis, broker, result-backend and store URLs are masked in every
    log line, whatever shape the line puts them in."""
    for url in (settings.redis_url, settings.broker_url, settings.result_backend, settings.store_url):
        if url:
            try:
                password = urlsplit(url).password
            except ValueError:  # an unparsable URL: the client library will say so
                continue
            if password:
                register_secret(password)  # as written in the URL (percent-encoded) ...
                register_secret(unquote(password))  # ... and as the server receives it


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """The process's runtime (workers and the CLI call this; tests reset it with cache_clear)."""
    return Runtime.build(get_settings())
