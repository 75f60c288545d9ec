"""The built-in consumer seen from the CDC phase: it moves by itself, the phase confirms and measures.

The consumer process (``bgqueue cdc run``) follows the routing registry, so at a switchover it
leaves the old primary and resumes on the new one from its stored GTID position without being
told. The phase's steps therefore observe instead of act:
- stop: nothing to do (the fenced old primary sends no more events; the consumer leaves it
  when the route flips);
- move: done when the consumer reports it reads the new primary;
- resume: done when its position includes the old primary's final GTID position (everything
  blue committed has been delivered) and it has delivered an event written on the new primary.
  The downtime recorded is the end-to-end gap the consumer measured between delivering the last
  event written on the old primary and the first written on the new one (it includes the
  switchover's write-blocked window: it is what a downstream reader saw); the consumer's own
  change of source (``source_gap_ms``) is recorded beside it.
"""
from __future__ import annotations

import redis

from bgqueue.adapters.cdc import position as gtidpos
from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.cdc.pipeline import Coordinates, Outcome, PipelineHealth
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.model.cdc import BinlogPipeline
from bgqueue.model.fleet import ClusterSpec

POLL_S = 0.2
# After the consumer has caught up on the new primary, how long to wait for a first delivery
# from it (writes may have stopped) before finishing without a measured gap.
FIRST_EVENT_GRACE_S = 5.0
MAX_HEALTHY_LAG_S = 30.0


class BinlogAdapter:
    """Pipeline interface over the consumer's state in Redis."""

    kind = "binlog"

    def __init__(self, cluster: ClusterSpec, spec: BinlogPipeline, client: redis.Redis,
                 routing: RoutingRegistry | None = None):
        self.cluster, self.spec, self.name = cluster, spec, spec.name
        self.state = ConsumerState(client, cluster.name, spec)
        self.routing = routing or RoutingRegistry(client)

    def stop(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        return Outcome(done=True, detail={"follows_routing": True})

    def move(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        route = self.routing.get(self.cluster.name)
        if route is None or f"{route.host}:{route.port}" != cp.new_primary:
            where = "no route" if route is None else f"{route.host}:{route.port} v{route.version}"
            return Outcome(problem=f"routing names {where}, not the new primary {cp.new_primary}: the consumer "
                                   f"follows routing and will not move")
        status = self.state.status()
        if not self.state.alive():
            return Outcome(wait_s=1.0, detail={"waiting_for": "a running consumer (bgqueue cdc run)",
                                               "last_status": status.get("state") or "never reported"})
        if status.get("source") != cp.new_primary:
            return Outcome(wait_s=POLL_S, detail={"waiting_for": f"consumer to read {cp.new_primary}",
                                                  "source": status.get("source"), "state": status.get("state"),
                                                  "last_error": status.get("last_error") or None})
        scratch["route_version"] = route.version
        return Outcome(done=True, detail={"source": cp.new_primary, "route_version": route.version})

    def resume(self, cp: Coordinates, scratch: dict, now: float) -> Outcome:
        pos = self.state.position()
        flavour, delivered = pos.get("flavour") or "mariadb", pos.get("gtid", "")
        if cp.old_gtid and not gtidpos.includes(flavour, delivered, cp.old_gtid):
            return Outcome(wait_s=POLL_S, detail={"waiting_for": "old primary's final position to be delivered",
                                                  "behind": gtidpos.behind(flavour, delivered, cp.old_gtid)})
        detail: dict = {"position": delivered, "old_gtid": cp.old_gtid}
        version = scratch.get("route_version", 0)
        move = next((m for m in self.state.moves(20) if m.source_to == cp.new_primary
                     and m.route_version >= version), None)
        if move is not None:
            detail.update(source_gap_ms=move.gap_ms, moved_from=move.source_from, first_gtid_from_new=move.gtid)
        crossing = self._crossing(flavour, cp.old_gtid)
        if crossing is not None:  # the end-to-end gap: last event written on the old primary → first on the new
            detail.update(gap_ms=crossing.gap_ms, last_old_gtid=crossing.last_gtid, first_new_gtid=crossing.gtid)
        if crossing is not None and move is not None:
            return Outcome(done=True, detail=detail, down_ms=crossing.gap_ms)
        # Reading the new primary, but a delivery from it (or an event written on it) is still to come:
        # writes may have stopped, so wait a little, then finish with what was measured.
        if self.state.status().get("source") == cp.new_primary:
            since = scratch.setdefault("waiting_deliveries_at", now)
            if now - since >= FIRST_EVENT_GRACE_S:
                detail["note"] = ("no delivery from the new primary yet" if move is None else
                                  "no event written on the new primary delivered yet: end-to-end gap not measured")
                return Outcome(done=True, detail=detail,
                               down_ms=crossing.gap_ms if crossing else move.gap_ms if move else None)
        waiting = "first event written on the new primary" if crossing is None else "first delivery from it"
        return Outcome(wait_s=POLL_S, detail={**detail, "waiting_for": waiting})

    def _crossing(self, flavour: str, old_gtid: str | None):
        """The origin change across this checkpoint: its last event is in the old primary's final
        position, its first is not (so it was written on the new primary after promotion)."""
        if not old_gtid:
            return None
        for change in self.state.origin_changes(20):
            if gtidpos.includes(flavour, old_gtid, change.last_gtid) and \
                    not gtidpos.includes(flavour, old_gtid, change.gtid):
                return change
        return None

    def health(self) -> PipelineHealth:
        status = self.state.status()
        alive = self.state.alive()
        state = status.get("state") or "never ran"
        lag = float(status["lag_s"]) if status.get("lag_s") else None
        route = self.routing.get(self.cluster.name)
        writer = f"{route.host}:{route.port}" if route else str(self.cluster.blue)
        on_writer = status.get("source") == writer
        healthy = alive and state == "streaming" and on_writer and (lag is None or lag <= MAX_HEALTHY_LAG_S)
        pos = self.state.position()
        return PipelineHealth(
            cluster=self.cluster.name, pipeline=self.name, kind=self.kind,
            state=state if alive else "not running", healthy=healthy, source=status.get("source") or None,
            lag_s=lag, last_error=status.get("last_error") or None,
            detail={"writer": writer, "position": pos.get("gtid"), "transactions": int(pos.get("transactions", 0)),
                    "events": int(pos.get("events", 0)), "stream": self.state.stream,
                    "reconnects": int(status.get("reconnects") or 0)})
