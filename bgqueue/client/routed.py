"""What applications embed to follow switchovers: a MySQL client that writes to the routed writer.

``RoutedClient.transaction(fn)`` runs ``fn(cursor)`` and COMMITs on the cluster's current
writer. While a switchover fences blue (read_only → error 1290) or ends sessions, the whole
transaction is retried with bounded, jittered backoff; the wait ends at once when the route
flips, so writes resume on green within milliseconds of the flip.

Outcome contract:
- returns: the transaction committed (exactly once, as far as this call can tell);
- ``WriteUnavailable``: it did not commit (every failure happened before COMMIT was sent, was a
  COMMIT refused by the server, or ``verify`` said it had not committed);
- ``CommitOutcomeUnknown``: the connection died during COMMIT and no ``verify`` settled it;
- any other error: not retryable (duplicate key, syntax, privileges); rolled back, propagated.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import redis

from bgqueue.adapters.mysql import connect as tlsconnect
from bgqueue.adapters.routing.registry import Route, RoutingRegistry
from bgqueue.model.errors import BgqueueError
from bgqueue.model.schema_base import Tls

log = logging.getLogger(__name__)

# The server refused a write because it is read_only: nothing of the transaction committed.
ER_READ_ONLY = 1290
# The connection is gone; whatever was not committed was rolled back by the server.
CONNECTION_ERRORS = frozenset({
    2003,  # can't connect
    2006,  # server gone away
    2013,  # lost connection during query
    1927,  # connection was killed
    1053,  # server shutdown in progress
    4031,  # disconnected by the server (idle timeout)
})
FIRST_BACKOFF_S = 0.002
# How often the route listener looks at the stop flag; bounds close() (a flip is seen at once).
LISTEN_POLL_S = 0.05


class WriteUnavailable(BgqueueError):
    """The transaction did not commit within the attempt/deadline budget. ``last_error`` says why."""

    def __init__(self, message: str, last_error: BaseException | None):
        super().__init__(message)
        self.last_error = last_error


class CommitOutcomeUnknown(BgqueueError):
    """The connection died while COMMIT was in flight: the transaction may or may not have committed."""

    def __init__(self, message: str, last_error: BaseException | None):
        super().__init__(message)
        self.last_error = last_error


class NoRoute(BgqueueError):
    """The registry names no writer for the cluster (yet)."""


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number carried by a PyMySQL exception, if any."""
    if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the session is gone (not a refusal by a live server)."""
    if isinstance(exc, pymysql.err.InterfaceError):  # "(0, '')": already closed
        return True
    return error_code(exc) in CONNECTION_ERRORS


class RoutedClient:
    """One pymysql connection to a cluster's current writer, following the routing registry.

    Not for concurrent use: one transaction at a time (calls are serialized by a lock).
    The route listener starts in the constructor; call ``close()`` (or use ``with``).

    ``tls``: a mode or a ``Tls`` — ``Tls(mode="verify", ca="/etc/ssl/db-ca.pem")`` in production
    (the writer's certificate chain and name are checked at every connect); ``"required"``
    (encrypted, the server not authenticated); ``"preferred"`` (the default, PyMySQL's: TLS when
    offered, strippable); ``"disabled"`` only on loopback/test networks. The SSL context of
    required/verify is built once and shared (~31 ms per connect otherwise, FACTS), so a reconnect
    at a route flip costs only the handshake. ``ssl_disabled=True`` is the old spelling of
    ``tls="disabled"``.
    """

    def __init__(
        self,
        cluster: str,
        redis_url: str,
        user: str,
        password: str,
        database: str,
        *,
        connect_timeout: float = 2.0,
        tls: Tls | str = "preferred",
        ssl_disabled: bool | None = None,
        max_attempts: int = 60,
        max_backoff_s: float = 0.2,
        deadline_s: float = 30.0,
    ):
        self.cluster = cluster
        self.user = user
        self.database = database
        self._password = password
        self.connect_timeout = connect_timeout
        self.tls = tlsconnect.as_tls("disabled" if ssl_disabled else tls)
        self._connect_args = tlsconnect.connect_args(self.tls)  # the shared context, built here once
        self.max_attempts = max_attempts
        self.max_backoff_s = max_backoff_s
        self.deadline_s = deadline_s

        self.attempts = 0
        self.retries = 0
        self.reconnects = 0
        self.route_changes = 0
        self.verifications = 0

        self._redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=connect_timeout,
            socket_timeout=max(connect_timeout, 1.0),
        )
        self._registry = RoutingRegistry(self._redis)
        self._route: Route | None = None
        self._route_lock = threading.Lock()
        self.route_changed = threading.Event()  # set on every version change seen
        self._tx_lock = threading.Lock()
        self._conn: pymysql.connections.Connection | None = None
        self._conn_version: int | None = None
        self._attempt_version: int | None = None  # route version the last attempt targeted

        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener = threading.Thread(
            target=self._listen, name=f"bgq-route-{cluster}", daemon=True
        )
        self._listener.start()
        # Bounded: without Redis the first transaction still GETs the route and retries.
        self._listening.wait(connect_timeout)

    def __repr__(self) -> str:
        route = self._route
        where = f"{route.host}:{route.port} v{route.version}" if route else "no route"
        return f"RoutedClient(cluster={self.cluster!r}, user={self.user!r}, database={self.database!r}, {where})"

    def __enter__(self) -> RoutedClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def route(self) -> Route | None:
        """The route this client currently believes in (pub/sub and GETs keep it fresh)."""
        return self._route

    def close(self) -> None:
        """Stop the route listener and close the database and Redis connections."""
        self._stop.set()
        self._listener.join(timeout=5)
        with self._tx_lock:
            self._drop_connection()
        self._redis.close()

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (attempts, retries, reconnects, route_changes, verifications)."""
        return {
            "attempts": self.attempts, "retries": self.retries, "reconnects": self.reconnects,
            "route_changes": self.route_changes, "verifications": self.verifications,
        }

    # --- transactions ------------------------------------------------------------------

    def transaction(
        self,
        fn: Callable[[Any], Any],
        verify: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Run ``fn(cursor)`` then COMMIT on the current writer; return what ``fn`` returned.

        ``fn`` may run several times (once per attempt), each time in a fresh transaction, so
        it must not have effects outside the database. ``verify(cursor) -> bool`` answers
        "did it commit?" after a connection loss during COMMIT; it runs on a fresh connection
        to the (re-read) current writer. Key it on something a re-run would collide on (a
        primary key you chose): a COMMIT still in flight on the old session can land just after
        verify looked, and the re-run must then fail (1062) rather than write twice.
        See the module docstring for the outcome contract.
        """
        with self._tx_lock:
            return self._transaction(fn, verify)

    def _transaction(self, fn, verify):
        deadline = time.monotonic() + self.deadline_s
        last_error: BaseException | None = None
        outcome_unknown = False  # a COMMIT was lost in flight; only verify may settle it
        result = None
        attempt = 0
        while True:
            if attempt >= self.max_attempts or (attempt and time.monotonic() >= deadline):
                budget = f"{attempt} attempts / {self.deadline_s:g} s"
                if outcome_unknown:
                    raise CommitOutcomeUnknown(
                        f"{self.cluster}: commit outcome unknown, not verified within {budget}", last_error
                    ) from last_error
                raise WriteUnavailable(
                    f"{self.cluster}: no commit within {budget}: {last_error!r}", last_error
                ) from last_error
            attempt += 1
            self.attempts += 1
            if attempt > 1:
                self.retries += 1
            phase = "connect"
            try:
                conn = self._ensure_connection()
                with conn.cursor() as cur:
                    if outcome_unknown:
                        phase = "verify"
                        self.verifications += 1
                        committed = bool(verify(cur))
                        conn.rollback()  # end the read transaction (fresh snapshot next time)
                        if committed:
                            return result
                        outcome_unknown = False
                        continue  # known not committed: run it again now
                    phase = "statements"
                    value = fn(cur)
                    phase = "commit"
                    conn.commit()
                return value
            except NoRoute as exc:
                last_error = exc
            except pymysql.MySQLError as exc:
                last_error = exc
                if phase == "commit" and is_connection_error(exc):
                    self._drop_connection()
                    if verify is None:
                        raise CommitOutcomeUnknown(
                            f"{self.cluster}: connection lost during COMMIT: {exc!r}", exc
                        ) from exc
                    outcome_unknown = True
                    result = value
                elif is_connection_error(exc):
                    self._drop_connection()
                elif error_code(exc) == ER_READ_ONLY and phase in ("statements", "commit"):
                    # Fenced: this transaction is dead, the session is fine (FACTS: retry the
                    # whole transaction, not the statement).
                    self._rollback_quietly()
                else:
                    self._rollback_quietly()
                    raise
            except BaseException:
                self._rollback_quietly()
                raise
            log.debug("%s: attempt %d failed in %s: %r", self.cluster, attempt, phase, last_error)
            self._wait_before_retry(attempt, self._attempt_version, deadline)

    def _wait_before_retry(self, attempt: int, failed_version: int | None, deadline: float) -> None:
        # Clear before re-reading, so a flip published from here on still wakes the wait.
        self.route_changed.clear()
        route = self._reload_route()
        if route is not None and route.version != failed_version:
            return  # the route moved on since that attempt: go to the new writer now
        cap = min(self.max_backoff_s, FIRST_BACKOFF_S * (2 ** min(attempt - 1, 30)))
        delay = min(random.uniform(0, cap), max(0.0, deadline - time.monotonic()))
        self.route_changed.wait(delay)

    # --- connections -------------------------------------------------------------------

    def _ensure_connection(self) -> pymysql.connections.Connection:
        """The connection to the cached route's writer, (re)opened when the route moved on."""
        route = self._route or self._reload_route()
        self._attempt_version = None if route is None else route.version
        if route is None:
            raise NoRoute(f"no route for cluster {self.cluster}")
        if self._conn is not None and self._conn_version == route.version:
            return self._conn
        self._drop_connection()
        self.reconnects += 1
        conn = pymysql.connect(
            host=route.host,
            port=route.port,
            user=self.user,
            password=self._password,
            database=self.database,
            connect_timeout=self.connect_timeout,
            # A hung server must not outlive the caller's deadline.
            read_timeout=self.deadline_s,
            write_timeout=self.deadline_s,
            autocommit=False,
            **self._connect_args,
        )
        tlsconnect.check_encrypted(conn, self.tls, f"{self.cluster} writer {route.host}:{route.port}")
        self._conn = conn
        self._conn_version = route.version
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn, self._conn_version = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead socket: nothing left to release
                pass

    def _rollback_quietly(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except Exception:
            # A session that cannot roll back is unusable; the server rolls back on disconnect.
            self._drop_connection()

    # --- route following ---------------------------------------------------------------

    def _adopt(self, route: Route | None) -> Route | None:
        """Cache ``route`` if it is newer than the cached one; return the cached route."""
        with self._route_lock:
            current = self._route
            if route is not None and (current is None or route.version > current.version):
                self._route = route
                if current is not None:
                    self.route_changes += 1
                self.route_changed.set()
            return self._route

    def _reload_route(self) -> Route | None:
        """GET the route from Redis (pub/sub alone misses flips made while disconnected)."""
        try:
            return self._adopt(self._registry.get(self.cluster))
        except redis.RedisError as exc:
            # Keep writing to the last known writer; the fence (read_only) keeps that safe.
            log.warning("%s: cannot read route from Redis: %r", self.cluster, exc)
            return self._route

    def _listen(self) -> None:
        channel = self._registry.channel(self.cluster)
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                # Read after subscribing: a flip between the two is then seen by one of them.
                self._adopt(self._registry.get(self.cluster))
                self._listening.set()
                backoff = 0.05
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message and message.get("type") == "message":
                        try:
                            self._adopt(Route.from_message(message["data"]))
                        except (ValueError, KeyError) as exc:
                            log.warning("%s: ignoring malformed route message: %r", self.cluster, exc)
            except (redis.RedisError, OSError) as exc:
                if self._stop.is_set():
                    break
                log.warning("%s: route listener lost Redis, retrying: %r", self.cluster, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass
