"""boto3 clients of the rds provider: one per (service, region) per process, reused by every task.

Creating a client costs tens of milliseconds of CPU and a connection pool, so a worker keeps
one per (service, region) for its whole life. A prefork child inherits the clients its parent
made before the fork and never used (``warm``), and builds the others itself.

Where requests go: boto3 itself honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``)
for every service; ``BGQUEUE_AWS_ENDPOINT_URL``, when set, wins for bgqueue's clients only (a
local moto server while other AWS users in the same process keep the real endpoints).
Retries: botocore's standard mode with ``BGQUEUE_AWS_RETRIES`` retries after the first attempt
(default 3). Tests set 0 so that a call moto does not implement fails at once instead of after
a minute of back-off; in-process callers may inject any ``botocore.config.Config`` with
``configure``. Credentials: the standard boto3 chain (environment, profile, role), never the
fleet file.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from bgqueue.model.errors import BgqueueError

ENDPOINT_ENV = "BGQUEUE_AWS_ENDPOINT_URL"
RETRIES_ENV = "BGQUEUE_AWS_RETRIES"

_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}
_used: set[tuple[str, str]] = set()  # clients that have sent a request (their pools may hold sockets)
_session: boto3.session.Session | None = None
_injected: Config | None = None


class AwsError(BgqueueError):
    """An AWS call failed; the message names the call, the error code and AWS's own words.
    ``transient``: AWS did not say no (5xx, throttling, connection): trying again later may work."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def failure(what: str, e: BaseException) -> AwsError:
    """An AwsError for ``e``, raised while doing ``what``, transient unless AWS refused."""
    return AwsError(f"{what}: {explain(e)}", transient=not refused(e))


def client_config() -> Config:
    """The botocore Config every client gets (an injected one, else from the environment)."""
    if _injected is not None:
        return _injected
    retries = int(os.environ.get(RETRIES_ENV, "3"))
    # Short timeouts: a task waits on AWS, never for minutes (it re-enqueues instead).
    return Config(retries={"mode": "standard", "max_attempts": retries}, connect_timeout=5, read_timeout=20,
                  max_pool_connections=16)


def client(service: str, region: str):
    """The process's client for ``service`` in ``region`` (created once, thread-safe)."""
    key = (service, region)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _make(service, region)
        return found


def _make(service: str, region: str):
    global _session
    if _session is None:
        # boto3's default session is not thread-safe to create clients from; ours is guarded by _lock.
        _session = boto3.session.Session()
    kwargs: dict[str, Any] = {"region_name": region, "config": client_config()}
    endpoint = os.environ.get(ENDPOINT_ENV)
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    made = _session.client(service, **kwargs)
    made.meta.events.register("before-send", lambda **_: _used.add((service, region)))
    return made


def configure(config: Config | None) -> None:
    """Inject the Config of every client made from now on (None: back to the environment's)."""
    global _injected
    _injected = config
    reset()


def reset() -> None:
    """Forget every cached client (after a fork, or when the environment changed)."""
    global _session
    with _lock:
        _clients.clear()
        _used.clear()
        _session = None


@contextmanager
def installed(service: str, region: str, instance) -> Iterator[Any]:
    """Use ``instance`` (e.g. a client under botocore's Stubber) as the process's client for a while."""
    with _lock:
        before = _clients.get((service, region))
        _clients[(service, region)] = instance
    try:
        yield instance
    finally:
        with _lock:
            if before is None:
                _clients.pop((service, region), None)
            else:
                _clients[(service, region)] = before


def _after_fork() -> None:
    # Sockets of a parent's pool must not be shared with a child: drop every client that has sent
    # a request. Keep the session and the clients that never did (``warm`` made them before the
    # fork: no socket yet), which spares every child ~0.1 s of CPU per client.
    global _lock
    _lock = threading.Lock()
    for key in _used:
        _clients.pop(key, None)
    _used.clear()


os.register_at_fork(after_in_child=_after_fork)

SERVICES = ("rds", "cloudwatch", "ssm", "dms")


REGIONS_ENV = "BGQUEUE_AWS_REGIONS"
# Credentials that are plain values: no provider of theirs holds a socket or refreshes them later.
STATIC_CREDENTIALS = {"env", "explicit", "shared-credentials-file", "config-file", "boto-config"}


def warm(services: tuple[str, ...] = SERVICES) -> None:
    """In a worker's parent process, before it forks its children: load the service models once,
    and, when the credentials are static, make the clients of the regions bgqueue works in
    (``BGQUEUE_AWS_REGIONS``, comma-separated, else the session's default region). The children
    inherit them unused. Role credentials (instance metadata, ECS, web identity, SSO) are resolved
    by each child itself: their providers keep HTTP connections and refresh on their own, and
    metadata that is not ready at boot would leave the inherited clients without credentials."""
    global _session
    with _lock:
        if _session is None:
            _session = boto3.session.Session()
        for name in services:
            _session._session.get_service_model(name)  # botocore caches it in the session's loader
    credentials = _session.get_credentials()
    if credentials is None or getattr(credentials, "method", None) not in STATIC_CREDENTIALS:
        return
    regions = [r.strip() for r in os.environ.get(REGIONS_ENV, "").split(",") if r.strip()]
    for region in regions or [r for r in [_session.region_name] if r]:
        for name in services:
            client(name, region)


def error_code(e: BaseException) -> str | None:
    """AWS's error code of a ClientError (e.g. ``DBInstanceNotFound``), else None."""
    if isinstance(e, ClientError):
        return e.response.get("Error", {}).get("Code")
    return None


THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}


def refused(e: BaseException) -> bool:
    """True when AWS answered and said no (a 4xx that is not throttling): the request did nothing.
    False for 5xx, throttling, connection or parsing failures: it may or may not have been applied."""
    if not isinstance(e, ClientError):
        return False
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400
    return 400 <= status < 500 and error_code(e) not in THROTTLING


def explain(e: BaseException) -> str:
    """One line for a reason or a journal: ``Code: message`` for AWS errors, the type and text otherwise."""
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return f"{type(e).__name__}: {e}"


# What an AWS call may raise besides ClientError: connection and parsing problems (moto's answer to an
# unimplemented call is a response botocore cannot parse).
AWS_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError, ResponseParserError)
