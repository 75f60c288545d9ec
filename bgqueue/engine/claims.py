"""Owning a deployment: claim it in the phase a step expects, end it, fail it, keep its lock.

Every claim bumps the fencing epoch (``adapters.store.deployments.claim``); every later write
of the step carries that epoch, so a worker that lost the deployment stops at its next write.
The Redis lock only prevents duplicate enqueues; the store row is the authority.
"""
from __future__ import annotations

import os
import socket
import time

from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.deployments import Claim
from bgqueue.model.phases import TERMINAL, Phase

OWNER = f"{socket.gethostname()}:{os.getpid()}"


def claim_in(rt: Runtime, deployment_id: str, phases: list[Phase]) -> Claim | None:
    """Take the deployment if it is in one of ``phases`` (None: it is elsewhere, do nothing)."""
    return deps.claim(rt.store, deployment_id, OWNER, phases)


def end(rt: Runtime, claim: Claim, target: Phase, reason: str | None, **fields) -> None:
    """A fenced transition; releases the cluster lock when the deployment is over. Provider
    clean-up after a NO_GO is ``lifecycle.end``'s job (it asks the provider first)."""
    deps.transition(rt.store, claim, target, reason=reason, **fields)
    if target in TERMINAL:
        who = deps.identity(rt.store, claim.deployment_id)
        rt.locks.release(who.cluster, who.batch_id)


_refreshed: dict[tuple[str, str], float] = {}  # (cluster, batch) → when this process last refreshed its lock


def refresh_lock(rt: Runtime, dep) -> None:
    """Keep the cluster's lock alive while its deployment is worked on. A lock lives ``lock_ttl_s``
    (an hour): refreshing it at every step (a Redis round trip each, several per deployment and
    poll) bought nothing, so one process refreshes a lock at most every tenth of its TTL (≤ 60 s)."""
    key, now = (dep.cluster, dep.batch_id), time.monotonic()
    if now - _refreshed.get(key, float("-inf")) < min(60.0, rt.settings.lock_ttl_s / 10):
        return
    rt.locks.refresh(dep.cluster, dep.batch_id, rt.settings.lock_ttl_s)
    if len(_refreshed) > 10_000:  # a long-lived worker: forget the oldest half
        for k in sorted(_refreshed, key=_refreshed.__getitem__)[:5_000]:
            _refreshed.pop(k, None)
    _refreshed[key] = now


def fail(rt: Runtime, deployment_id: str, reason: str) -> bool:
    """Record FAILED (needs a human) from whatever non-terminal phase the deployment is in."""
    live = [p for p in Phase if p not in TERMINAL]
    claim = deps.claim(rt.store, deployment_id, OWNER, live)
    if claim is None:
        return False
    end(rt, claim, Phase.FAILED, reason)
    return True
