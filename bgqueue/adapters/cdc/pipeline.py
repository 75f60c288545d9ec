"""The pipeline interface the CDC phase drives: stop, move to a checkpoint, resume, health.

Every call is quick and re-enterable: it starts an action if it has not been started (what it
started is kept in ``scratch``, a JSON-able dict the caller stores between calls) and reports
whether it has finished (``Outcome.done``), should be asked again later (``wait_s``), or cannot
finish (``problem``). Nothing here waits: the CDC phase is re-invoked by its Celery task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bgqueue.model.errors import BgqueueError


class PipelineError(BgqueueError):
    """A pipeline's service refused or failed a call; the message names the pipeline and why."""


@dataclass(frozen=True)
class Coordinates:
    """Where a switchover left the replication streams (the store's Checkpoint row, as plain values)."""

    checkpoint_id: int | None
    kind: str  # switchover | rollback
    old_primary: str  # host:port
    new_primary: str  # host:port
    old_gtid: str | None = None  # the old primary's final position
    old_binlog_file: str | None = None
    old_binlog_pos: int | None = None
    new_gtid: str | None = None  # the new primary at promotion
    new_binlog_file: str | None = None
    new_binlog_pos: int | None = None

    @classmethod
    def from_checkpoint(cls, cp: Any) -> Coordinates:
        """From a ``bgqueue.adapters.store.models.Checkpoint`` (or anything with the same attributes)."""
        return cls(checkpoint_id=getattr(cp, "id", None), kind=cp.kind, old_primary=cp.old_primary,
                   new_primary=cp.new_primary, old_gtid=cp.old_gtid, old_binlog_file=cp.old_binlog_file,
                   old_binlog_pos=cp.old_binlog_pos, new_gtid=cp.new_gtid, new_binlog_file=cp.new_binlog_file,
                   new_binlog_pos=cp.new_binlog_pos)

    @property
    def new_endpoint(self) -> tuple[str, int]:
        host, _, port = self.new_primary.rpartition(":")
        return host, int(port)


@dataclass
class Outcome:
    """What one call achieved. ``problem``: the step cannot complete (the pipeline needs a human)."""

    done: bool = False
    wait_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    down_ms: float | None = None  # resume only: the downtime as the pipeline itself measured it


@dataclass(frozen=True)
class PipelineHealth:
    """A pipeline's state after the switchover (for the monitoring phase)."""

    cluster: str
    pipeline: str
    kind: str
    state: str  # the service's own word: streaming, running, STOPPED, failed, not running, ...
    healthy: bool
    source: str | None = None  # the server it reads, when known
    lag_s: float | None = None
    last_error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "pipeline": self.pipeline, "kind": self.kind, "state": self.state,
                "healthy": self.healthy, "source": self.source, "lag_s": self.lag_s,
                "last_error": self.last_error, "detail": self.detail}


class Pipeline(Protocol):
    """One CDC pipeline of one cluster. ``scratch`` persists between calls for that pipeline."""

    name: str
    kind: str

    def stop(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        """Stop reading the old primary (done once stopped, having read all it could)."""

    def move(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        """Point the pipeline at the new primary, from the checkpoint's position."""

    def resume(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        """Start it again; done once it is confirmed running on the new primary."""

    def health(self) -> PipelineHealth:
        """Its current state, lag and last error."""
