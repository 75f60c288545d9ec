"""What applications embed to follow switchovers: a MySQL client that writes to the routed writer.

``RoutedClient.transaction(fn)`` runs ``fn(cursor)`` and COMMITs on the cluster's current
writer. While a switchover fences blue (read_only → error 1290) or ends sessions, the whole
transaction is retried with bounded, jittered backoff; the wait ends at once when the route
flips, so writes resume on green within milliseconds of the flip.

Outcome contract:
- returns: the transaction committed (exactly once, as far as this call can tell);
- ``WriteUnavailable``: it did not commit (every failure happened before COMMIT was sent, or was
  a COMMIT refused by the server);
- ``CommitOutcomeUnknown``: a COMMIT of this call was lost in flight and nothing after settled
  it. Once a COMMIT is lost the call never reports "did not commit" again: whatever fails after
  (reconnecting, ``verify``, the re-run, the budget) surfaces as CommitOutcomeUnknown with that
  error as its cause (``last_error``, ``__cause__``). A duplicate key (1062) on the re-run after
  verify said "not committed" means the first COMMIT most likely landed after verify looked;
- any other error: not retryable (duplicate key, syntax, privileges); rolled back, propagated.

Routes: the client follows the route stored in Redis (``bgq:{namespace}:route:{cluster}``).
A message on the route channel is only a signal to read it again, never a route in itself, and
a route is accepted only if it names one of the cluster's declared endpoints: ``endpoints``
(the fleet file's blue and green), or else the allow-list bgqueue registered when it prepared
the cluster. Credentials are only ever sent to an accepted route's server.
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
from bgqueue.adapters.routing.published import PublishedRoutes
from bgqueue.adapters.routing.route import Endpoint, Route, endpoint_set, endpoint_text
from bgqueue.client.errors import (
    ER_DUP_ENTRY,
    ER_READ_ONLY,
    TRANSIENT_WHILE_VERIFYING,
    CommitOutcomeUnknown,
    NoRoute,
    WriteUnavailable,
    error_code,
    is_connection_error,
)
from bgqueue.client.maintenance import MaintenanceParticipant
from bgqueue.model.schema_base import Tls
from config.settings import get_settings

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.002
# How often the route listener looks at the stop flag; bounds close() (a flip is seen at once).
LISTEN_POLL_S = 0.05


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
    ``endpoints``: the cluster's declared servers [(host, port), ...] (its blue and green); a
    route naming anything else is refused. Without it, the allow-list bgqueue registered is used,
    and with neither every route is refused. ``namespace``: the environment's (default: the
    BGQUEUE_NAMESPACE setting, else "default").
    ``maintenance=True``: the client takes part in maintenance mode (announced as ``client_id``):
    on "enter" it lets the transaction in flight finish, closes its connection, holds new
    transactions back (each at most its deadline) and acknowledges; on "exit" they go on, to the
    new writer. The switchover's fence then meets no transaction of this client.
    """

    def __init__(
        self,
        cluster: str,
        redis_url: str,
        user: str,
        password: str,
        database: str,
        *,
        endpoints: list[Endpoint] | None = None,
        namespace: str | None = None,
        connect_timeout: float = 2.0,
        tls: Tls | str = "preferred",
        ssl_disabled: bool | None = None,
        max_attempts: int = 60,
        max_backoff_s: float = 0.2,
        deadline_s: float = 30.0,
        maintenance: bool = False,
        client_id: str | None = None,
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
        # None: accept the allow-list bgqueue registered for the cluster (read with each route).
        self._endpoints = None if endpoints is None else endpoint_set(endpoints)
        self._routes = PublishedRoutes(self._redis, "bgq:", namespace if namespace is not None else
                                       get_settings().namespace)
        self._route: Route | None = None
        self._route_lock = threading.Lock()
        self._read_lock = threading.Lock()  # one read-and-adopt at a time: the last read is the newest
        self._refused: tuple | None = None  # the last refused route, logged once
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
        self._open = threading.Event()  # cleared while in maintenance
        self._open.set()
        self.maintenance = (MaintenanceParticipant(self._redis, cluster, drain=self._drain, resume=self._open.set,
                                                   client_id=client_id, namespace=self._routes.namespace)
                            if maintenance else None)

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
        if self.maintenance is not None:
            self.maintenance.close()
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
        deadline = time.monotonic() + self.deadline_s
        while True:
            # In maintenance, wait (at most the deadline) for "exit"; past it the transaction runs
            # anyway: the fence, not the maintenance gate, is what keeps writes safe.
            self._open.wait(max(0.0, deadline - time.monotonic()))
            with self._tx_lock:
                if self._open.is_set() or time.monotonic() >= deadline:
                    return self._transaction(fn, verify)

    def _drain(self) -> None:
        """Maintenance "enter": hold new transactions, let the one in flight finish, disconnect."""
        self._open.clear()
        with self._tx_lock:
            self._drop_connection()

    def _transaction(self, fn, verify):
        deadline = time.monotonic() + self.deadline_s
        last_error: BaseException | None = None
        # A COMMIT of this call was lost in flight: from then on the call ends committed or in
        # CommitOutcomeUnknown, never "did not commit" (see the module docstring).
        commit_lost = False
        unverified = False  # ... and verify has not answered since
        result = value = None
        attempt = 0
        while True:
            if attempt >= self.max_attempts or (attempt and time.monotonic() >= deadline):
                budget = f"{attempt} attempts / {self.deadline_s:g} s"
                if commit_lost:
                    raise CommitOutcomeUnknown(
                        f"{self.cluster}: commit outcome unknown, not settled within {budget}: {last_error!r}",
                        last_error) from last_error
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
                    if unverified:
                        phase = "verify"
                        self.verifications += 1
                        committed = bool(verify(cur))
                        conn.rollback()  # end the read transaction (fresh snapshot next time)
                        if committed:
                            return result
                        unverified = False
                        continue  # said not committed: run it again now
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
                    commit_lost = unverified = True
                    result = value
                elif is_connection_error(exc):
                    self._drop_connection()
                elif unverified and error_code(exc) in TRANSIENT_WHILE_VERIFYING:
                    self._drop_connection()
                elif error_code(exc) == ER_READ_ONLY and phase in ("statements", "commit"):
                    # Fenced: this transaction is dead, the session is fine (FACTS: retry the
                    # whole transaction, not the statement).
                    self._rollback_quietly()
                else:
                    self._rollback_quietly()
                    if commit_lost:
                        raise self._unknown(exc, phase) from exc
                    raise
            except Exception as exc:
                self._rollback_quietly()
                if commit_lost:
                    raise self._unknown(exc, phase) from exc
                raise
            except BaseException:
                self._rollback_quietly()
                raise
            log.debug("%s: attempt %d failed in %s: %r", self.cluster, attempt, phase, last_error)
            self._wait_before_retry(attempt, self._attempt_version, deadline)

    def _unknown(self, exc: BaseException, phase: str) -> CommitOutcomeUnknown:
        """What an error after a lost COMMIT means: not "rolled back", but "may have committed"."""
        if phase == "statements" and error_code(exc) == ER_DUP_ENTRY:
            why = ("the re-run after verify said 'not committed' hit a duplicate key: the lost COMMIT most "
                   "likely landed after verify looked")
        else:
            why = f"a COMMIT was lost in flight, then {phase} failed"
        return CommitOutcomeUnknown(f"{self.cluster}: commit outcome unknown: {why}: {exc!r}", exc)

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
            refused = f": {self._refused[2]}" if self._refused else ""
            raise NoRoute(f"no route for cluster {self.cluster}{refused}")
        if self._endpoints is not None and not route.allowed_by(self._endpoints):
            raise NoRoute(f"{self.cluster}: route {endpoint_text(route.endpoint)} is not a declared endpoint")
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
        """Cache ``route`` (an accepted one read from Redis) when it differs; return the cached route.

        The stored route is followed as it is, lower versions too: only bgqueue writes it (Redis
        ACLs keep applications read-only), so the last read is the truth, and a version someone
        once forged high cannot pin the client. A missing route (Redis restarted) keeps the last."""
        with self._route_lock:
            current = self._route
            if route is not None and (current is None or (route.version, route.endpoint) !=
                                      (current.version, current.endpoint)):
                self._route = route
                if current is not None:
                    self.route_changes += 1
                self.route_changed.set()
            return self._route

    def _reload_route(self) -> Route | None:
        """Read the stored route (pub/sub alone misses flips made while disconnected, and a
        message is never trusted as a route) and adopt it if it names an allowed endpoint."""
        with self._read_lock:
            try:
                route, registered = self._routes.read_with_endpoints(self.cluster)
            except (redis.RedisError, OSError) as exc:
                # Keep writing to the last known writer; the fence (read_only) keeps that safe.
                log.warning("%s: cannot read route from Redis: %r", self.cluster, exc)
                return self._route
            allowed = self._endpoints if self._endpoints is not None else registered
            if route is not None and not route.allowed_by(allowed):
                self._refuse(route, allowed)
                return self._route
            return self._adopt(route)

    def _refuse(self, route: Route, allowed: frozenset[Endpoint] | None) -> None:
        seen = (route.version, route.endpoint)
        if self._refused is not None and self._refused[:2] == seen:
            return
        why = (f"route v{route.version} names {endpoint_text(route.endpoint)}, not one of the cluster's "
               f"endpoints ({', '.join(sorted(endpoint_text(e) for e in allowed))})" if allowed else
               f"route v{route.version} refused: no endpoints were given and none are registered")
        self._refused = (*seen, why)
        log.warning("%s: %s; keeping %s", self.cluster, why,
                    endpoint_text(self._route.endpoint) if self._route else "no route")

    def _listen(self) -> None:
        channel = self._routes.key(self.cluster)
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel)
                # Read after subscribing: a flip between the two is then seen by one of them.
                self._reload_route()
                self._listening.set()
                backoff = 0.05
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message and message.get("type") == "message":
                        self._reload_route()  # the message is a signal; its body is not read
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
