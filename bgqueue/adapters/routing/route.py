"""A route: one version of a cluster's writer endpoint, and how endpoints are spelled."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bgqueue.model.errors import BgqueueError

DEFAULT_NAMESPACE = "default"
# Namespaces end up in Redis key names and in ACL key patterns (``~bgq:{ns}:route:*``): no glob
# characters, no separators.
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

Endpoint = tuple[str, int]


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


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
        raise ValueError(f"routing namespace {namespace!r}: must match {NAMESPACE_RE.pattern} "
                         "(lower-case letters, digits, '-' and '_'; at most 32)")
    return namespace


def endpoint_text(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}:{int(endpoint[1])}"


def parse_endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")  # rpartition: an IPv6 host has colons of its own
    if not host or not port.isdigit():
        raise ValueError(f"not host:port: {text!r}")
    return host, int(port)


def endpoint_set(endpoints: Iterable) -> frozenset[Endpoint]:
    """``[(host, port), ...]`` (or objects with .host/.port) as a set of normalised endpoints."""
    out = set()
    for e in endpoints:
        host, port = (e.host, e.port) if hasattr(e, "host") else e
        out.add((str(host).lower(), int(port)))
    return frozenset(out)


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
    def endpoint(self) -> Endpoint:
        return (self.host, self.port)

    def allowed_by(self, allowed: frozenset[Endpoint] | None) -> bool:
        """Does the route name one of ``allowed`` (None: no allow-list, nothing is allowed)?"""
        return allowed is not None and (self.host.lower(), int(self.port)) in allowed

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
        """Parse a message published on a route channel (what it claims; trusted by nobody:
        bgqueue's own readers take a message only as a signal to read the stored route)."""
        msg = json.loads(data)
        return cls.from_hash(msg["cluster"], msg)
