"""A batch = a chord over per-cluster chains; the chord body writes the batch summary.

The client sends one small ``start`` task (ids only); a worker builds and sends the canvas.
This keeps the enqueueing process free of result subscriptions, and a batch of 120
clusters costs the operator's terminal one message.
"""
from __future__ import annotations

from celery import chain, chord

from bgqueue.adapters.runtime import get_runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.engine.batches import OpenedBatch, open_batch, summarize
from bgqueue.model.phases import Phase
from tasks.base import bgqueue_task
from tasks.deployment import CHAIN


@bgqueue_task("bgqueue.batch.summarize", time_limit=60, ignore_result=True)
def summarize_batch(_results, batch_id: str) -> dict:
    return summarize(get_runtime(), batch_id)


def cluster_chain(deployment_id: str):
    """The per-cluster chain. Only the last link's result is read (by the batch chord); the others
    pass the id on in their messages, so their results are not written to the backend."""
    *links, last = CHAIN
    return chain(*(t.si(deployment_id).set(ignore_result=True) for t in links), last.si(deployment_id))


@bgqueue_task("bgqueue.batch.start", time_limit=60, ignore_result=True)
def start_batch(batch_id: str) -> int:
    """Fan out one chain per PENDING deployment of the batch under a summarising chord."""
    rows = [d for d in deps.batch_deployments(get_runtime().store, batch_id) if d.phase == Phase.PENDING]
    if not rows:  # every cluster was NO_GO at preflight: the batch is over already
        summarize(get_runtime(), batch_id)
        return 0
    chord([cluster_chain(d.id) for d in rows])(summarize_batch.s(batch_id))
    return len(rows)


def enqueue_fleet(fleet_path: str, only: list[str] | None = None, *, preflight: bool = True,
                  strict: bool = False) -> OpenedBatch:
    """What ``bgqueue fleet run`` does: validate, preflight, lock, record, enqueue. One code path
    for the CLI, the demo and the benchmark."""
    opened = open_batch(get_runtime(), fleet_path, only, preflight=preflight, strict=strict)
    start_batch.apply_async((opened.batch_id,), ignore_result=True)
    return opened
