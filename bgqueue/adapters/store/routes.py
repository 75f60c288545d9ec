"""Routes in the store: each cluster's writer endpoint, the authority Redis only copies.

A route changes only by compare-and-set on its version (``flip``), so two workers flipping from
the same version have one winner, and a Redis that lost its keys cannot make a flip fail or
go backwards: the version lives here. Rows are plain values (``StoredRoute``), never ORM objects.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exc, or_, select, update

from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.models import RouteRow

R = RouteRow.__table__


@dataclass(frozen=True)
class StoredRoute:
    cluster: str
    host: str
    port: int
    version: int
    updated_at: float
    reason: str
    endpoints: tuple[tuple[str, int], ...] | None  # the allow-list, when one was registered


def _row(r) -> StoredRoute:
    eps = None if r.endpoints is None else tuple((str(h), int(p)) for h, p in r.endpoints)
    return StoredRoute(r.cluster, r.host, int(r.port), int(r.version), float(r.updated_at), r.reason or "", eps)


def get(store: Store, namespace: str, cluster: str) -> StoredRoute | None:
    with store.begin() as c:
        r = c.execute(select(R).where(R.c.namespace == namespace, R.c.cluster == cluster)).one_or_none()
    return None if r is None else _row(r)


def all_routes(store: Store, namespace: str) -> list[StoredRoute]:
    with store.begin() as c:
        return [_row(r) for r in c.execute(select(R).where(R.c.namespace == namespace).order_by(R.c.cluster))]


def create(store: Store, namespace: str, route: StoredRoute) -> StoredRoute:
    """Insert ``route`` unless the cluster has one; return what the store holds now (either)."""
    try:
        with store.begin() as c:
            c.execute(R.insert().values(namespace=namespace, cluster=route.cluster, host=route.host,
                                        port=route.port, version=route.version, updated_at=route.updated_at,
                                        reason=route.reason,
                                        endpoints=None if route.endpoints is None else
                                        [list(e) for e in route.endpoints]))
    except exc.IntegrityError:
        pass  # another worker created it first: theirs stands
    held = get(store, namespace, route.cluster)
    assert held is not None  # routes are never deleted
    return held


def flip(store: Store, namespace: str, cluster: str, *, expect_version: int, host: str, port: int,
         updated_at: float, reason: str, only_if_elsewhere: bool = False) -> bool:
    """Point the route at host:port if it is still at ``expect_version`` (bumping it by one) —
    and, with ``only_if_elsewhere``, if it does not name host:port already. False: another flip
    won, there is no route (or it names host:port already); nothing changed."""
    where = [R.c.namespace == namespace, R.c.cluster == cluster, R.c.version == expect_version]
    if only_if_elsewhere:
        where.append(or_(R.c.host != host, R.c.port != port))
    with store.begin() as c:
        res = c.execute(update(R).where(*where)
                        .values(host=host, port=port, version=R.c.version + 1, updated_at=updated_at,
                                reason=reason))
        return res.rowcount == 1


def set_endpoints(store: Store, namespace: str, cluster: str, endpoints: tuple[tuple[str, int], ...]) -> bool:
    """Record the cluster's allow-list on its route (False: the cluster has no route yet)."""
    with store.begin() as c:
        res = c.execute(update(R).where(R.c.namespace == namespace, R.c.cluster == cluster)
                        .values(endpoints=[list(e) for e in endpoints]))
        return res.rowcount == 1
