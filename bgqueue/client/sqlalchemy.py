"""A SQLAlchemy Engine that follows a cluster's writer: for applications that keep their data layer.

    engine = routed_engine("orders", redis_url, user, password, "appdb", maintenance=True)
    with engine.begin() as conn:
        conn.execute(text("INSERT ..."))

- Every new pooled connection goes to the current writer: the pool's creator reads the route from
  bgqueue's registry (the environment's namespace), and accepts it only if it names one of the
  cluster's declared endpoints (``endpoints``, else the allow-list bgqueue registered), exactly
  like ``RoutedClient``: credentials are never sent to a server a forged route names.
- A route change (pub/sub signal, re-read from the registry) disposes the pool: connections that are
  checked in close now, those in use are replaced when they come back.
- Errors that mean "this server is no longer the writer" or "this session was ended" (1290
  read-only, 1927/2013/2006 lost or killed) invalidate the connection instead of returning it to
  the pool, and dispose the pool so every next checkout reconnects.
- With ``maintenance=True`` the engine takes part in maintenance mode: on "enter" it stops handing
  out connections (checkouts wait, bounded), lets the transactions in flight finish, disposes the
  pool and acknowledges; on "exit" it opens again and new connections go to the new writer. An
  application on this engine then sees no error from a switchover.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pymysql
import redis
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import QueuePool

from bgqueue.adapters.routing.published import PublishedRoutes
from bgqueue.adapters.routing.route import Endpoint, endpoint_set, endpoint_text
from bgqueue.client.maintenance import MaintenanceParticipant
from bgqueue.model.errors import BgqueueError
from config.settings import get_settings

# The server is not (or no longer) the writer, or the session was ended under us.
NOT_THE_WRITER = frozenset({1290, 1836, 1927, 2006, 2013, 4031})
GATE_WAIT_S = 30.0  # a checkout waits this long at most for maintenance to end


class NoRoute(BgqueueError):
    """The registry has no writer for the cluster, or none that is a declared endpoint."""


class RoutedPool:
    """The state an engine shares with its pool events: the route, the maintenance gate."""

    def __init__(self, cluster: str, client: redis.Redis, *, endpoints: list[Endpoint] | None = None,
                 namespace: str | None = None):
        self.cluster = cluster
        self.routes = PublishedRoutes(client, "bgq:", namespace if namespace is not None else get_settings().namespace)
        self.endpoints = None if endpoints is None else endpoint_set(endpoints)
        self.engine: Engine | None = None
        self.open = threading.Event()
        self.open.set()
        self.in_use = 0
        self._lock = threading.Condition()
        self.route_version: int | None = None  # the version the creator last connected to
        self.seen_version: int | None = None  # the version the watcher last read
        self.disposals = 0

    def read(self):
        """The stored route if it names an allowed endpoint (else NoRoute, saying why)."""
        route, registered = self.routes.read_with_endpoints(self.cluster)
        if route is None:
            raise NoRoute(f"no route for cluster {self.cluster!r} in the registry")
        allowed = self.endpoints if self.endpoints is not None else registered
        if not route.allowed_by(allowed):
            raise NoRoute(f"{self.cluster}: route v{route.version} names {endpoint_text(route.endpoint)}, "
                          "not one of the cluster's declared endpoints")
        return route

    def endpoint(self) -> tuple[str, int]:
        route = self.read()
        self.route_version = route.version
        return route.host, route.port

    def current_version(self) -> int | None:
        """The route version last seen by the watcher (no Redis round trip per checkout)."""
        return self.seen_version if self.seen_version is not None else self.route_version

    def fresh_version(self) -> int | None:
        """The stored route's version, read now: only when a connection's version differs from the
        watcher's (the watcher may not have seen a flip the creator already connected after)."""
        try:
            version = self.read().version
        except (NoRoute, redis.RedisError):
            return self.current_version()
        self.seen_version = version
        return version

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.disposals += 1

    # --- maintenance mode ---
    def drain(self, timeout_s: float = GATE_WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:  # the gate closes under the lock a checkout passes it under: no checkout
            self.open.clear()  # is between "the gate is open" and "counted in use" now
            while self.in_use and time.monotonic() < deadline:
                self._lock.wait(0.05)
        self.dispose()

    def pass_gate(self) -> bool:
        """A checkout passes the open gate and is counted in use, atomically with ``drain``."""
        with self._lock:
            if not self.open.is_set():
                return False
            self.in_use += 1
            return True

    def resume(self) -> None:
        self.dispose()  # anything opened meanwhile points at the old writer
        self.open.set()

    def checked_in(self) -> None:
        with self._lock:
            self.in_use -= 1
            self._lock.notify_all()


def routed_engine(cluster: str, redis_url: str, user: str, password: str, database: str, *,
                  endpoints: list[Endpoint] | None = None, namespace: str | None = None,
                  maintenance: bool = False, connect_timeout: float = 2.0, ssl_disabled: bool = True,
                  pool_size: int = 5, max_overflow: int = 5, client_id: str | None = None,
                  **engine_kw: Any) -> Engine:
    """``endpoints``: the cluster's declared servers [(host, port), ...]; without them the allow-list
    bgqueue registered for the cluster is used. ``namespace``: the environment's."""
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=connect_timeout,
                                  socket_timeout=max(connect_timeout, 1.0))
    state = RoutedPool(cluster, client, endpoints=endpoints, namespace=namespace)

    def creator():
        host, port = state.endpoint()
        return pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                               connect_timeout=connect_timeout, ssl_disabled=ssl_disabled, autocommit=False)

    engine = create_engine("mysql+pymysql://", creator=creator, poolclass=QueuePool, pool_size=pool_size,
                           max_overflow=max_overflow, pool_pre_ping=False, **engine_kw)
    state.engine = engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, record):  # noqa: ARG001 (SQLAlchemy's signature)
        record.info["route_version"] = state.route_version

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, proxy):  # noqa: ARG001
        if record.info.get("route_version") != state.current_version() and \
                record.info.get("route_version") != state.fresh_version():
            raise DisconnectionError("the route moved: reconnect to the current writer")  # the pool retries
        if not state.pass_gate():
            state.open.wait(GATE_WAIT_S)
            # The pool picked this connection before the gate: it may point at the old writer.
            raise DisconnectionError("maintenance ended: reconnect to the current writer")
        record.info["bgq_in_use"] = True

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn, record):  # noqa: ARG001
        # Only a checkout that got past the gate counts (a refused one is checked in too).
        if record.info.pop("bgq_in_use", False):
            state.checked_in()

    @event.listens_for(engine, "handle_error")
    def _handle_error(ctx):
        code = getattr(ctx.original_exception, "args", (None,))[0] if ctx.original_exception else None
        if code in NOT_THE_WRITER:
            ctx.is_disconnect = True  # this connection is invalidated, not returned to the pool
            threading.Thread(target=state.dispose, daemon=True).start()

    watcher = _RouteWatcher(client, state)
    watcher.start()
    participant = (MaintenanceParticipant(client, cluster, drain=state.drain, resume=state.resume,
                                          client_id=client_id, namespace=state.routes.namespace)
                   if maintenance else None)
    engine.bgqueue = state  # type: ignore[attr-defined]  (for tests and metrics)

    def close() -> None:
        watcher.stop()
        if participant is not None:
            participant.close()
        engine.dispose()
        client.close()

    engine.bgqueue_close = close  # type: ignore[attr-defined]
    return engine


class _RouteWatcher(threading.Thread):
    """Disposes the pool when the route's version changes (signal on the channel, or a poll)."""

    def __init__(self, client: redis.Redis, state: RoutedPool):
        super().__init__(name=f"bgq-sa-route-{state.cluster}", daemon=True)
        self.client, self.state = client, state
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2.0)

    def run(self) -> None:
        seen: int | None = None
        pubsub = None
        while not self._stop_event.is_set():
            try:
                if pubsub is None:
                    pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.state.routes.key(self.state.cluster))
                try:
                    version: int | None = self.state.read().version
                except NoRoute:
                    version = self.state.seen_version  # a refused or missing route moves nothing
                self.state.seen_version = version
                if seen is not None and version != seen:
                    self.state.dispose()
                seen = version
                pubsub.get_message(timeout=0.25)
            except redis.RedisError:
                pubsub = None
                self._stop_event.wait(0.5)
