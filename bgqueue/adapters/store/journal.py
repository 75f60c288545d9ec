"""The per-step journal and the replication checkpoints.

Each write checks the deployment's epoch in the same transaction, so a worker that has been
fenced out cannot add to the journal of a deployment another worker now owns.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import select, update

from bgqueue.adapters.store.db import Store, detached
from bgqueue.adapters.store.deployments import Claim
from bgqueue.adapters.store.models import Checkpoint, Deployment, Step, utcnow
from bgqueue.model.errors import BgqueueError, FencedOut

log = logging.getLogger("bgqueue.journal")


D, S, C = Deployment.__table__, Step.__table__, Checkpoint.__table__
T = TypeVar("T")


def _fence(c, claim: Claim) -> None:
    """In the caller's transaction: the deployment still has the claim's epoch (touch it, or FencedOut)."""
    res = c.execute(update(D).where(D.c.id == claim.deployment_id, D.c.epoch == claim.epoch)
                    .values(updated_at=utcnow()))
    if res.rowcount != 1:
        raise FencedOut(f"deployment {claim.deployment_id}: epoch {claim.epoch} no longer current")


def begin_step(store: Store, claim: Claim, procedure: str, name: str, detail: dict | None = None) -> int:
    with store.begin() as c:
        _fence(c, claim)
        res = c.execute(S.insert().values(deployment_id=claim.deployment_id, procedure=procedure, name=name,
                                          status="started", epoch=claim.epoch, detail=detail, started_at=utcnow()))
        return res.inserted_primary_key[0]


def end_step(store: Store, step_id: int, status: str, detail: dict | None = None,
             duration_ms: float | None = None) -> None:
    values: dict[str, Any] = {"status": status, "ended_at": utcnow(), "duration_ms": duration_ms}
    if detail is not None:
        values["detail"] = detail
    with store.begin() as c:
        c.execute(update(S).where(S.c.id == step_id).values(**values))


def record_step(store: Store, claim: Claim, procedure: str, name: str, status: str,
                detail: dict | None = None) -> None:
    """A step that is over as soon as it is recorded (an observation, a decision)."""
    now = utcnow()
    with store.begin() as c:
        _fence(c, claim)
        c.execute(S.insert().values(deployment_id=claim.deployment_id, procedure=procedure, name=name,
                                    status=status, epoch=claim.epoch, detail=detail, started_at=now,
                                    ended_at=now, duration_ms=0.0))


class StepFailed(BgqueueError):
    """Raised inside ``Journal.step`` by a step that did not reach its goal: the step is journaled
    ``failed`` with this reason and the facts gathered so far."""


class Journal:
    """Journals the sub-steps of one procedure run: ``with journal.step("fence") as detail: ...``.

    Every write is fenced by the claim's epoch. Inside ``deferred()`` (the write-blocked window
    of a switchover) step rows are kept in memory and written by ``flush`` in one fenced
    transaction, together with a checkpoint write when there is one: a few store round trips
    instead of two per step while writes are refused. Leaving ``deferred()`` flushes the rest,
    also on an exception.
    """

    def __init__(self, store: Store, claim: Claim, procedure: str):
        self.store, self.claim, self.procedure = store, claim, procedure
        self.timings_ms: dict[str, float] = {}
        self._pending: list[dict[str, Any]] | None = None
        self._updates: list[tuple[int, dict[str, Any]]] = []

    @contextmanager
    def step(self, name: str, *, eager: bool = False, **detail: Any) -> Iterator[dict[str, Any]]:
        """Record 'started', run the body, then 'done' (or 'failed' with the error) and its duration.

        The body may add facts to the yielded dict; they are stored with the step. A body that
        raises ``StepFailed`` (or anything else) is journaled 'failed' and the exception goes on.
        ``eager``: write the 'started' row at once even inside ``deferred()`` (the step that opens
        the write-blocked window: a worker that dies in the window leaves that trace).
        """
        started = utcnow()
        step_id = None if self._pending is not None and not eager else begin_step(self.store, self.claim, self.procedure, name,
                                                                      detail or None)
        t0 = time.perf_counter()
        facts: dict[str, Any] = dict(detail)
        try:
            yield facts
        except BaseException as e:
            ms = (time.perf_counter() - t0) * 1000
            facts["error"] = str(e) if isinstance(e, StepFailed) else f"{type(e).__name__}: {e}"
            self._end(step_id, name, started, "failed", facts, ms)
            log.warning("%s.%s failed in %.1f ms: %s", self.procedure, name, ms, facts["error"],
                        extra={"deployment": self.claim.deployment_id, "step": f"{self.procedure}.{name}"})
            raise
        ms = (time.perf_counter() - t0) * 1000
        self.timings_ms[name] = ms
        self._end(step_id, name, started, "done", facts or None, ms)
        log.info("%s.%s done in %.1f ms", self.procedure, name, ms,
                 extra={"deployment": self.claim.deployment_id, "step": f"{self.procedure}.{name}"})

    def _end(self, step_id: int | None, name: str, started, status: str, facts: dict | None, ms: float) -> None:
        if step_id is not None and self._pending is not None:  # eager begin inside deferred(): update later
            self._updates.append((step_id, {"status": status, "ended_at": utcnow(), "duration_ms": ms,
                                            **({"detail": facts} if facts is not None else {})}))
            return
        if step_id is not None:
            end_step(self.store, step_id, status, facts, ms)
            return
        assert self._pending is not None
        self._pending.append(dict(deployment_id=self.claim.deployment_id, procedure=self.procedure, name=name,
                                  status=status, epoch=self.claim.epoch, detail=facts, started_at=started,
                                  ended_at=utcnow(), duration_ms=ms))

    def note(self, name: str, status: str = "done", **detail: Any) -> None:
        if self._pending is not None:
            now = utcnow()
            self._pending.append(dict(deployment_id=self.claim.deployment_id, procedure=self.procedure, name=name,
                                      status=status, epoch=self.claim.epoch, detail=detail or None, started_at=now,
                                      ended_at=now, duration_ms=0.0))
            return
        record_step(self.store, self.claim, self.procedure, name, status, detail or None)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        outer = self._pending is not None
        if not outer:
            self._pending = []
        try:
            yield
        finally:
            if not outer:
                try:
                    self.flush()
                finally:
                    self._pending = None

    def flush(self, then: Callable[[Any], T] | None = None) -> T | None:
        """Write the pending step rows, and run ``then(connection)`` in the same fenced transaction
        (FencedOut when the claim's epoch is no longer current: nothing is written)."""
        with self.store.begin() as c:
            _fence(c, self.claim)
            if self._pending:
                c.execute(S.insert(), self._pending)
                self._pending.clear()
            for step_id, values in self._updates:
                c.execute(update(S).where(S.c.id == step_id).values(**values))
            self._updates.clear()
            return then(c) if then is not None else None

    def save_checkpoint(self, kind: str, **fields: Any) -> int:
        """A new checkpoint row (fenced), with the pending step rows."""
        return self.flush(lambda c: c.execute(C.insert().values(deployment_id=self.claim.deployment_id, kind=kind,
                                                                 **fields)).inserted_primary_key[0])

    def update_checkpoint(self, checkpoint_id: int, **fields: Any) -> None:
        """Complete a checkpoint (fenced: a worker that lost the deployment cannot overwrite it)."""
        self.flush(lambda c: c.execute(update(C).where(C.c.id == checkpoint_id).values(**fields)))


def note_unfenced(store: Store, deployment_id: str, procedure: str, name: str, status: str,
                  detail: dict | None = None) -> None:
    """An observation recorded WITHOUT claiming the deployment (a refused request, say): it must
    not fence out the worker that owns the deployment now."""
    now = utcnow()
    with store.session() as s:
        epoch = s.execute(select(Deployment.epoch).where(Deployment.id == deployment_id)).scalar_one()
        s.add(Step(deployment_id=deployment_id, procedure=procedure, name=name, status=status, epoch=epoch,
                   detail=detail, started_at=now, ended_at=now, duration_ms=0.0))


def steps(store: Store, deployment_id: str, procedure: str | None = None) -> list[Step]:
    with store.session() as s:
        q = select(Step).where(Step.deployment_id == deployment_id)
        if procedure:
            q = q.where(Step.procedure == procedure)
        return detached(s, q.order_by(Step.id))


def save_checkpoint(store: Store, claim: Claim, kind: str, **fields: Any) -> int:
    with store.begin() as c:
        _fence(c, claim)
        return c.execute(Checkpoint.__table__.insert().values(deployment_id=claim.deployment_id, kind=kind,
                                                              **fields)).inserted_primary_key[0]


def update_checkpoint(store: Store, claim: Claim, checkpoint_id: int, **fields: Any) -> None:
    """Fenced by the claim's epoch, like every write of a step."""
    with store.begin() as c:
        _fence(c, claim)
        c.execute(update(C).where(C.c.id == checkpoint_id).values(**fields))


def checkpoints(store: Store, deployment_id: str) -> list[Checkpoint]:
    with store.session() as s:
        return detached(s, select(Checkpoint).where(Checkpoint.deployment_id == deployment_id)
                              .order_by(Checkpoint.id))


def latest_checkpoint(store: Store, deployment_id: str, kind: str) -> Checkpoint | None:
    with store.session() as s:
        cp = s.execute(select(Checkpoint).where(Checkpoint.deployment_id == deployment_id, Checkpoint.kind == kind)
                       .order_by(Checkpoint.id.desc()).limit(1)).scalar_one_or_none()
        if cp is not None:
            s.expunge(cp)
        return cp

