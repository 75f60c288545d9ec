"""The CDC phase: move every pipeline of a cluster to the new primary, without ever waiting.

``migrate_pipelines`` is re-entrant: each call advances every pipeline as far as it can go now
(stop → move → resume, see ``pipeline.Pipeline``) and returns ``MigrationProgress``; the
caller's Celery task re-invokes it after ``wait_s`` until ``done``. Its state is a small JSON
dict, returned and also kept in Redis under ``bgq:cdc:migration:{cluster}:{checkpoint_id}``, so
a caller may pass ``state=None`` every time (a new worker after a crash picks it up there).

The journal gets one note per pipeline and step (``stop``, ``move``, ``resume`` with
``pipeline`` and what the adapter observed), the resume note carrying ``down_ms``: how long the
pipeline delivered nothing (the adapter's own measure when it has one, e.g. the built-in
consumer's gap between its last event from the old primary and its first from the new one;
else from the stop request to the confirmed resume). Then one ``pipelines`` note with every
pipeline's downtime and problems.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from bgqueue.adapters.cdc.binlog_pipeline import BinlogAdapter
from bgqueue.adapters.cdc.debezium import DebeziumAdapter
from bgqueue.adapters.cdc.dms import DmsAdapter
from bgqueue.adapters.cdc.pipeline import Coordinates, Outcome, Pipeline, PipelineHealth
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.model.cdc import BinlogPipeline, DebeziumPipeline, DmsPipeline
from bgqueue.model.errors import FencedOut
from bgqueue.model.fleet import AnySpec, ClusterSpec

STEPS = ("stop", "move", "resume")
STATE_TTL_S = 7 * 24 * 3600
TRANSIENT_RETRY_S = 2.0
MIN_WAIT_S, MAX_WAIT_S = 0.1, 30.0


def default_aws(service: str, region: str | None):
    """A boto3 client with bounded retries and timeouts (credentials from the usual chain)."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, region_name=region, config=Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15))


def make_pipeline(cluster: ClusterSpec, spec: Any, *, redis_client: redis.Redis,
                  aws: Callable[[str, str | None], Any] = default_aws,
                  routing: RoutingRegistry | None = None) -> Pipeline:
    """The adapter for one pipeline spec of ``cluster`` (``routing``: the process's registry)."""
    if isinstance(spec, BinlogPipeline):
        return BinlogAdapter(cluster, spec, redis_client, routing)
    if isinstance(spec, DmsPipeline):
        return DmsAdapter(cluster, spec, aws)
    if isinstance(spec, DebeziumPipeline):
        return DebeziumAdapter(cluster, spec)
    raise TypeError(f"unknown pipeline kind: {spec!r}")


@dataclass
class MigrationProgress:
    """``done``: every pipeline has finished (moved, or given up with a problem)."""

    done: bool
    wait_s: float | None
    state: dict
    downtime_ms: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def state_key(cluster: str, checkpoint_id: int | None) -> str:
    return f"bgq:cdc:migration:{cluster}:{checkpoint_id}"


def migrate_pipelines(spec: AnySpec, checkpoint: Any, journal, state: dict | None = None, *,
                      redis: redis.Redis, now: float | None = None,
                      aws: Callable[[str, str | None], Any] = default_aws,
                      routing: RoutingRegistry | None = None) -> MigrationProgress:
    """Advance the CDC phase of ``spec`` for ``checkpoint`` (a store Checkpoint or Coordinates).

    Never sleeps. Adapter errors (a service unreachable, an API error) are retried on the next
    call until the pipeline's ``move_timeout_s``; FencedOut (from the journal) propagates.
    """
    now = time.time() if now is None else now
    cp = checkpoint if isinstance(checkpoint, Coordinates) else Coordinates.from_checkpoint(checkpoint)
    key = state_key(spec.name, cp.checkpoint_id)
    if state is None or state.get("checkpoint_id") != cp.checkpoint_id:
        saved = redis.get(key)
        state = json.loads(saved) if saved else None
    if state is None:
        state = {"checkpoint_id": cp.checkpoint_id, "started_at": now, "pipelines": {}}
        redis.set(key, json.dumps(state), ex=STATE_TTL_S)  # before the note: a rerun must not plan twice
        journal.note("plan", pipelines=[f"{p.kind}:{p.name}" for p in spec.pipelines], checkpoint_id=cp.checkpoint_id,
                     new_primary=cp.new_primary)
    waits: list[float] = []
    for p in spec.pipelines:
        st = state["pipelines"].setdefault(p.name, {"kind": p.kind, "step": "stop", "deadline": now + p.move_timeout_s,
                                                    "scratch": {}})
        if st["step"] in STEPS:
            wait = _advance(make_pipeline(spec, p, redis_client=redis, aws=aws, routing=routing), st, cp, journal,
                            now)
            if wait is not None:
                waits.append(wait)
        redis.set(key, json.dumps(state), ex=STATE_TTL_S)
    progress = _progress(state, waits)
    if progress.done and not state.get("summarized"):
        journal.note("pipelines", "failed" if progress.problems else "done", downtime_ms=progress.downtime_ms,
                     problems=progress.problems, pipelines=len(spec.pipelines))
        state["summarized"] = True
        redis.set(key, json.dumps(state), ex=STATE_TTL_S)
    return progress


def _advance(pipeline: Pipeline, st: dict, cp: Coordinates, journal, now: float) -> float | None:
    """Run the pipeline's current step (and the next ones while they finish at once).

    Returns when to look again, or None when the pipeline is finished.
    """
    while st["step"] in STEPS:
        step = st["step"]
        try:
            outcome: Outcome = getattr(pipeline, step)(cp, st["scratch"], now)
        except FencedOut:
            raise
        except Exception as e:  # transient until the deadline: the service may come back
            outcome = Outcome(wait_s=TRANSIENT_RETRY_S, detail={"error": f"{type(e).__name__}: {e}"})
        if step == "stop":
            st.setdefault("stop_at", now)
        if outcome.problem:
            _give_up(st, step, outcome.problem, outcome.detail, pipeline, journal)
            return None
        if not outcome.done:
            st["last"] = outcome.detail
            if now >= st["deadline"]:
                why = outcome.detail.get("error") or outcome.detail.get("waiting_for") or outcome.detail
                _give_up(st, step, f"{pipeline.kind} pipeline {pipeline.name}: {step} did not complete within "
                                   f"its move_timeout_s: {why}", outcome.detail, pipeline, journal)
                return None
            return outcome.wait_s or TRANSIENT_RETRY_S
        detail: dict[str, Any] = {"pipeline": pipeline.name, "kind": pipeline.kind, **_journalable(outcome.detail)}
        if step == "resume":
            st["resumed_at"] = now
            measured = outcome.down_ms
            st["down_ms"] = round(measured if measured is not None else (now - st["stop_at"]) * 1000, 3)
            detail["down_ms"] = st["down_ms"]
            detail["down_measured_by"] = "pipeline" if measured is not None else "phase"
        journal.note(step, **detail)
        st["step"] = STEPS[STEPS.index(step) + 1] if step != "resume" else "done"
        st.pop("last", None)
    return None


def _give_up(st: dict, step: str, problem: str, detail: dict, pipeline: Pipeline, journal) -> None:
    st["step"], st["problem"] = "failed", problem
    journal.note(step, "failed", pipeline=pipeline.name, kind=pipeline.kind, problem=problem, **_journalable(detail))


def _journalable(detail: dict) -> dict:
    """Adapter facts as journal detail: names the journal itself uses are prefixed, not lost."""
    return {(f"reported_{k}" if k in ("name", "status", "pipeline", "kind", "problem") else k): v
            for k, v in detail.items()}


def _progress(state: dict, waits: list[float]) -> MigrationProgress:
    pipelines = state["pipelines"]
    done = all(st["step"] in ("done", "failed") for st in pipelines.values())
    wait = None if done else min(MAX_WAIT_S, max(MIN_WAIT_S, min(waits, default=TRANSIENT_RETRY_S)))
    return MigrationProgress(done=done, wait_s=wait, state=state,
                             downtime_ms={n: st.get("down_ms") for n, st in pipelines.items() if st["step"] == "done"},
                             problems=[st["problem"] for st in pipelines.values() if st.get("problem")])


def pipeline_health(spec: ClusterSpec, redis: redis.Redis, *,
                    aws: Callable[[str, str | None], Any] = default_aws,
                    routing: RoutingRegistry | None = None) -> list[PipelineHealth]:
    """The health of every pipeline of ``spec`` (state, lag, last error). Never raises for a
    pipeline's service being unreachable: that pipeline is reported unhealthy with the error."""
    out = []
    for p in spec.pipelines:
        try:
            out.append(make_pipeline(spec, p, redis_client=redis, aws=aws, routing=routing).health())
        except Exception as e:
            out.append(PipelineHealth(cluster=spec.name, pipeline=p.name, kind=p.kind, state="unknown",
                                      healthy=False, last_error=f"{type(e).__name__}: {e}"))
    return out
