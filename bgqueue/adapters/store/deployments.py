"""Batches and deployments: creation, fenced claims and fenced phase transitions.

Every write that moves a deployment is a conditional UPDATE on (id, epoch, phase): if it
touches zero rows another worker owns the deployment now and the caller stops (FencedOut).
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, overload

from sqlalchemy import select, update

from bgqueue.adapters.store.db import Store, detached, get_detached
from bgqueue.adapters.store.models import Batch, Deployment, PhaseChange, utcnow
from bgqueue.model.errors import BadInput, FencedOut
from bgqueue.model.phases import TERMINAL, Phase, check_transition

log = logging.getLogger("bgqueue.deployment")


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a deployment: valid while the row still has this epoch. ``row``: the
    deployment as the claim found it (column attributes like a ``Deployment``), when it was read."""

    deployment_id: str
    epoch: int
    phase: Phase
    row: Any = field(default=None, compare=False, repr=False)


def create_batch(store: Store, *, fleet_name: str, fleet_path: str, fleet_text: str,
                 clusters: Iterable[dict[str, Any]], requested_by: str = "",
                 batch_id: str | None = None) -> tuple[str, dict[str, str]]:
    """Create a batch and one PENDING deployment per cluster spec. Returns (batch_id, {cluster: deployment_id})."""
    batch_id = batch_id or str(uuid.uuid4())
    ids: dict[str, str] = {}
    with store.session() as s:
        s.add(Batch(id=batch_id, fleet_name=fleet_name, fleet_path=fleet_path,
                    fleet_sha256=hashlib.sha256(fleet_text.encode()).hexdigest(), requested_by=requested_by))
        s.flush()
        for spec in clusters:
            dep_id = str(uuid.uuid4())
            ids[spec["name"]] = dep_id
            s.add(Deployment(id=dep_id, batch_id=batch_id, cluster=spec["name"], provider=spec["provider"],
                             phase=Phase.PENDING, epoch=0, spec=spec))
    return batch_id, ids


def get_deployment(store: Store, deployment_id: str) -> Deployment:
    return get_detached(store, Deployment, deployment_id, "deployment")


@dataclass(frozen=True)
class Identity:
    """What never changes about a deployment: safe to cache per process."""

    cluster: str
    batch_id: str
    provider: str


@lru_cache(maxsize=8192)
def identity(store: Store, deployment_id: str) -> Identity:
    with store.session() as s:
        row = s.execute(select(Deployment.cluster, Deployment.batch_id, Deployment.provider)
                        .where(Deployment.id == deployment_id)).one_or_none()
    if row is None:
        raise BadInput(f"no deployment {deployment_id}")
    return Identity(row.cluster, row.batch_id, row.provider)


D = Deployment.__table__
PC = PhaseChange.__table__


# The epoch of this process's latest claim of each deployment: a task that fails can tell whether
# another worker claimed the deployment since (then its failure is not its to record).
_claimed_here: dict[str, int] = {}


def claimed_here(deployment_id: str) -> int | None:
    """The epoch this process last claimed ``deployment_id`` at (None: never)."""
    return _claimed_here.get(deployment_id)


def claim(store: Store, deployment_id: str, owner: str, phases: Iterable[Phase]) -> Claim | None:
    """Take the deployment if it is in one of ``phases`` (see ``_claim``); remembered by ``claimed_here``."""
    got = _claim(store, deployment_id, owner, phases)
    if got is not None:
        if len(_claimed_here) > 4096:
            _claimed_here.clear()
        _claimed_here[deployment_id] = got.epoch
    return got


def _claim(store: Store, deployment_id: str, owner: str, phases: Iterable[Phase]) -> Claim | None:
    """Take the deployment if it is in one of ``phases``: bump its epoch, record the owner.

    Returns None when the deployment is in another phase (someone else moved it on, or it
    ended): the caller has nothing to do. One conditional UPDATE … RETURNING where the
    database has it (SQLite ≥ 3.35, PostgreSQL), else a read and a fenced UPDATE.
    """
    wanted = sorted({Phase(p).value for p in phases})
    with store.begin() as c:
        if c.dialect.update_returning:
            row = c.execute(update(D).where(D.c.id == deployment_id, D.c.phase.in_(wanted))
                            .values(epoch=D.c.epoch + 1, owner=owner, updated_at=utcnow())
                            .returning(*D.c)).one_or_none()
            if row is not None:
                return Claim(deployment_id, row.epoch, Phase(row.phase), row)
            if c.execute(select(D.c.id).where(D.c.id == deployment_id)).first() is None:
                raise BadInput(f"no deployment {deployment_id}")
            return None
        row = c.execute(select(D.c.phase, D.c.epoch).where(D.c.id == deployment_id)).one_or_none()
        if row is None:
            raise BadInput(f"no deployment {deployment_id}")
        if row.phase not in wanted:
            return None
        res = c.execute(update(D).where(D.c.id == deployment_id, D.c.epoch == row.epoch, D.c.phase == row.phase)
                        .values(epoch=row.epoch + 1, owner=owner, updated_at=utcnow()))
        if res.rowcount != 1:
            return None
    return Claim(deployment_id, row.epoch + 1, Phase(row.phase))


def claimed(store: Store, claim: Claim):
    """The claimed deployment as the claim found it (read again when the claim did not return it).
    Its phase and epoch are the claim's; the rest is what the steps read (spec, facts, deadlines)."""
    return claim.row if claim.row is not None else get_deployment(store, claim.deployment_id)


def transition(store: Store, claim: Claim, target: Phase, reason: str | None = None,
               **fields: Any) -> Claim:
    """Move the claimed deployment to ``target`` (checked against the table), fenced on epoch and phase."""
    check_transition(claim.phase, target)
    now = utcnow()
    # ``reason`` says why the deployment is in its current phase; the history keeps every one.
    values: dict[str, Any] = {"phase": Phase(target).value, "updated_at": now, "reason": reason, **fields}
    if target in TERMINAL:
        values.setdefault("finished_at", now)
    with store.begin() as c:
        res = c.execute(update(D)
                        .where(D.c.id == claim.deployment_id, D.c.epoch == claim.epoch,
                               D.c.phase == Phase(claim.phase).value)
                        .values(**values))
        if res.rowcount != 1:
            raise FencedOut(f"deployment {claim.deployment_id}: epoch {claim.epoch} / phase {claim.phase} no longer current")
        c.execute(PC.insert().values(deployment_id=claim.deployment_id, from_phase=Phase(claim.phase).value,
                                     to_phase=Phase(target).value, epoch=claim.epoch, reason=reason, at=now))
    log.info("phase %s -> %s%s", claim.phase, target, f": {reason}" if reason else "",
             extra={"deployment": claim.deployment_id})
    return Claim(claim.deployment_id, claim.epoch, target)


def update_fenced(store: Store, claim: Claim, **fields: Any) -> None:
    """Write fields on the deployment row without changing phase, fenced like a transition."""
    with store.begin() as c:
        res = c.execute(update(D)
                        .where(D.c.id == claim.deployment_id, D.c.epoch == claim.epoch,
                               D.c.phase == Phase(claim.phase).value)
                        .values(updated_at=utcnow(), **fields))
        if res.rowcount != 1:
            raise FencedOut(f"deployment {claim.deployment_id}: epoch {claim.epoch} no longer current")


def active_deployment(store: Store, cluster: str) -> Deployment | None:
    """The cluster's deployment that is not terminal, if any (the store's view of "in flight")."""
    with store.session() as s:
        dep = s.execute(select(Deployment).where(Deployment.cluster == cluster,
                                                 Deployment.phase.not_in([p.value for p in TERMINAL]))
                        .order_by(Deployment.created_at.desc()).limit(1)).scalar_one_or_none()
        if dep is not None:
            s.expunge(dep)
        return dep


def latest_deployment(store: Store, cluster: str) -> Deployment | None:
    with store.session() as s:
        dep = s.execute(select(Deployment).where(Deployment.cluster == cluster)
                        .order_by(Deployment.created_at.desc()).limit(1)).scalar_one_or_none()
        if dep is not None:
            s.expunge(dep)
        return dep


def batch_deployments(store: Store, batch_id: str) -> list[Deployment]:
    with store.session() as s:
        deps = list(s.execute(select(Deployment).where(Deployment.batch_id == batch_id)
                              .order_by(Deployment.cluster)).scalars())
        for d in deps:
            s.expunge(d)
        return deps


def batch_phase_ids(store: Store, batch_id: str) -> list[tuple[str, str, str]]:
    """``(cluster, phase, deployment id)`` of each deployment of the batch, by cluster."""
    with store.begin() as c:
        return [tuple(r) for r in c.execute(select(D.c.cluster, D.c.phase, D.c.id).where(D.c.batch_id == batch_id)
                                            .order_by(D.c.cluster))]


def batch_phases(store: Store, batch_id: str) -> list[tuple[str, str]]:
    """``(cluster, phase)`` of each deployment of the batch, by cluster: what a progress display polls."""
    with store.begin() as c:
        return [tuple(r) for r in c.execute(select(D.c.cluster, D.c.phase).where(D.c.batch_id == batch_id)
                                            .order_by(D.c.cluster))]


def get_batch(store: Store, batch_id: str) -> Batch:
    return get_detached(store, Batch, batch_id, "batch")


def find_batch(store: Store, prefix: str) -> Batch | None:
    """A batch by id or unique id prefix (operators type short ids), in any case: SQLite's LIKE
    ignores ASCII case, PostgreSQL's does not, so the comparison says so itself."""
    with store.session() as s:
        rows = list(s.execute(select(Batch).where(Batch.id.istartswith(prefix)).limit(2)).scalars())
        if len(rows) != 1:
            return None
        s.expunge(rows[0])
        return rows[0]


def recent_batches(store: Store, limit: int = 10) -> list[Batch]:
    with store.session() as s:
        return detached(s, select(Batch).order_by(Batch.created_at.desc()).limit(limit))


def finish_batch(store: Store, batch_id: str, summary: dict[str, Any]) -> None:
    """Record the batch summary (idempotent: a second call overwrites with the same facts)."""
    with store.session() as s:
        s.execute(update(Batch).where(Batch.id == batch_id)
                  .values(status="DONE", summary=summary, finished_at=utcnow()))


def phase_history(store: Store, deployment_id: str) -> list[PhaseChange]:
    with store.session() as s:
        return detached(s, select(PhaseChange).where(PhaseChange.deployment_id == deployment_id)
                              .order_by(PhaseChange.id))


@overload
def as_aware(dt: datetime) -> datetime: ...
@overload
def as_aware(dt: None) -> None: ...
def as_aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns; treat them as UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def heartbeat(store: Store, deployment_id: str) -> None:
    """A task is working on this deployment now (not fenced: it moves nothing but the liveness mark)."""
    with store.begin() as c:
        c.execute(update(D).where(D.c.id == deployment_id).values(heartbeat_at=utcnow()))


def retention_due(store: Store, now: datetime) -> list[str]:
    """COMPLETED deployments whose retention ended and whose old primary is not yet decommissioned."""
    with store.session() as s:
        rows = s.execute(select(D.c.id, D.c.retention_until)
                         .where(D.c.phase == Phase.COMPLETED.value, D.c.decommissioned_at.is_(None))).all()
    return [r.id for r in rows if r.retention_until is not None and as_aware(r.retention_until) <= now]


def completed_not_decommissioned(store: Store) -> list[Deployment]:
    with store.session() as s:
        return detached(s, select(Deployment).where(Deployment.phase == Phase.COMPLETED,
                                                    Deployment.decommissioned_at.is_(None)))


def coexisting(store: Store, provider: str) -> list[Deployment]:
    """Deployments of ``provider`` whose green environment may exist beside its blue (not ended
    without a switchover, not decommissioned)."""
    ended = [Phase.NO_GO, Phase.FAILED, Phase.ROLLED_BACK, Phase.SWITCHOVER_FAILED]
    with store.session() as s:
        return detached(s, select(Deployment).where(Deployment.provider == provider,
                                                    Deployment.phase.not_in(ended),
                                                    Deployment.decommissioned_at.is_(None)))
