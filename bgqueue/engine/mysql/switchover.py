"""Moving the writer role from one server to its GTID replica, with every sub-step journaled.

The same procedure serves the switchover (blue → green) and, later, the rollback
(green → blue). Order (DESIGN.md "The switchover"):

  fence old (read_only, end every client session) → checkpoint old's final position → wait
  (bounded) for new to reach it → check that the fence held (old's position unchanged) →
  promote new → checkpoint new's binlog coordinates → flip routing → reverse replication (old
  replicates from new).

read_only does not stop privileged users (SUPER / READ_ONLY ADMIN), so the fence ends every
client session, not only the application's, and the procedure checks before promoting that
nothing escaped it: a transaction on old after the checkpoint would be lost on new and would be
an errant GTID that breaks reverse replication.

Reverse replication comes after the flip (DESIGN.md had it before): it is the slowest step
(~9 ms of the ~35 ms write-blocked window here) and its place does not change safety. The old
primary stays fenced, and GTID auto-positioning replicates every write that the new primary
took in between; a crash in between is finished forward by the resume path.

Undo is designed beside each step: until ``promote`` the only change is the fence, and a
failure lifts it (old stays primary: SWITCHOVER_FAILED). After ``promote`` the new server
has every write, so the procedure only goes forward.

On a resume after a crash the procedure first OBSERVES the servers: if the new server was
already promoted it finishes forward; otherwise it starts again from the fence (every step
before promote is idempotent).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis.exceptions

from bgqueue.model import gtid
from bgqueue.model.errors import FencedOut
from bgqueue.adapters.failpoints import failpoint
from bgqueue.model.fleet import ClusterSpec, Credentials
from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.journal import Journal, latest_checkpoint, save_checkpoint, update_checkpoint
from bgqueue.adapters.store.models import utcnow


@dataclass
class SwitchResult:
    switched: bool  # True: new is the writer and routing names it
    reason: str = ""
    undone: bool = False  # False with switched=False: state needs a human (see reason)
    writes_blocked_ms: float | None = None
    duration_ms: float = 0.0
    reverse_replication: bool = False
    checkpoint_id: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class SwitchPlan:
    """Who hands over to whom, and with what."""

    cluster: ClusterSpec
    old: Server
    new: Server
    repl: Credentials
    kind: str = "switchover"  # or "rollback"

def observe_promoted(new: Server) -> bool:
    """Has ``new`` already been promoted (no replication configured, writable)?"""
    return new.replica_status() is None and not new.is_read_only()


def switch_writer(plan: SwitchPlan, store: Store, journal: Journal, routing: RoutingRegistry,
                  catchup_timeout_s: float, resume: bool = False) -> SwitchResult:
    """Run (or resume) the procedure. Never raises for a server-side failure: the result says
    what happened and whether the fence was undone. FencedOut propagates untouched (another
    worker owns the deployment; it must not be disturbed)."""
    t0 = time.perf_counter()
    old, new, cluster = plan.old, plan.new, plan.cluster.name
    if resume:
        with journal.step("observe", resume=True) as f:
            promoted = observe_promoted(new)
            f.update(new_promoted=promoted, old_read_only=old.is_read_only())
        if promoted:
            return _finish_forward(plan, store, journal, routing, t0, None, fence_t=None)

    route = routing.get(cluster)
    fence_t = time.perf_counter()
    try:
        with journal.step("fence") as f:
            old.set_read_only(True)
            sessions = old.client_sessions()
            f["sessions_ended"] = old.end_sessions(sessions)
            f["users"] = sorted({u for _, u in sessions})
        failpoint(f"{plan.kind}.after_fence")
        with journal.step("checkpoint") as f:
            final_gtid = old.gtid_position()
            coords = old.binlog_coordinates()
            cp_id = save_checkpoint(store, journal.claim, plan.kind, old_primary=str(old.endpoint),
                                    new_primary=str(new.endpoint), old_gtid=final_gtid,
                                    old_binlog_file=coords.file if coords else None,
                                    old_binlog_pos=coords.pos if coords else None)
            f.update(gtid=final_gtid, file=coords.file if coords else None, pos=coords.pos if coords else None)
        with journal.step("wait_for_new", timeout_s=catchup_timeout_s) as f:
            reached = new.wait_for_position(final_gtid, catchup_timeout_s)
            f["reached"] = reached
            if not reached:
                behind = gtid.transactions_behind(new.flavour, new.applied_position(), final_gtid)
                f["transactions_behind"] = behind
                f["_status"] = "failed"
    except FencedOut:
        raise
    except Exception as e:  # before promote: undo the fence, old stays primary
        return _lift_fence(plan, journal, t0, fence_t, f"{type(e).__name__} before promotion: {e}")
    if not reached:
        return _lift_fence(plan, journal, t0, fence_t,
                           f"{new.label} did not reach {old.label}'s final position {final_gtid} within "
                           f"{catchup_timeout_s:g}s ({behind} transactions behind)")
    try:
        with journal.step("fence_held") as f:
            now_gtid = old.gtid_position()
            f.update(gtid=now_gtid, held=now_gtid == final_gtid)
            if now_gtid != final_gtid:
                f["_status"] = "failed"
    except FencedOut:
        raise
    except Exception as e:
        return _lift_fence(plan, journal, t0, fence_t, f"{type(e).__name__} checking the fence: {e}")
    if now_gtid != final_gtid:
        # Someone wrote past the fence (a privileged session that connected after it): promoting
        # now would lose that write. Give the writer role back to old; green catches up on its own.
        return _lift_fence(plan, journal, t0, fence_t,
                           f"writes escaped the fence on {old.label}: its position moved from {final_gtid} to "
                           f"{now_gtid} after the checkpoint")
    failpoint(f"{plan.kind}.before_promote")
    try:
        with journal.step("promote") as f:
            new.promote()
    except FencedOut:
        raise
    except Exception as e:
        # A half-done promote is observed, not guessed: if new still replicates, undo the fence.
        try:
            if not observe_promoted(new):
                return _lift_fence(plan, journal, t0, fence_t, f"promotion failed: {e}")
        except Exception:
            pass
        return SwitchResult(False, f"promotion of {new.label} failed and its state is unknown: {e}",
                            duration_ms=_ms(t0), timings_ms=journal.timings_ms)
    return _finish_forward(plan, store, journal, routing, t0, cp_id, fence_t, route_version=route.version if route else None)


def _finish_forward(plan: SwitchPlan, store: Store, journal: Journal, routing: RoutingRegistry, t0: float,
                    cp_id: int | None, fence_t: float | None, route_version: int | None = None) -> SwitchResult:
    old, new, cluster = plan.old, plan.new, plan.cluster.name
    failpoint(f"{plan.kind}.after_promote")
    problems: list[str] = []
    checkpoint = None
    if fence_t is None:  # resumed: the old primary must be fenced before routing names the new one
        checkpoint = latest_checkpoint(store, journal.claim.deployment_id, plan.kind)
        cp_id = checkpoint.id if checkpoint is not None else None
        try:
            with journal.step("refence") as f:
                f["was_read_only"] = old.is_read_only()
                if not f["was_read_only"]:
                    old.set_read_only(True)
                escaped = _escaped_writes(old, checkpoint)
                f["escaped"] = escaped
                if escaped:
                    f["_status"] = "failed"
        except FencedOut:
            raise
        except Exception as e:  # unreachable old primary cannot take writes either
            problems.append(f"could not check the fence on {old.label}: {e}")
            escaped = None
        if escaped:
            # Old took writes that new never got: flipping would lose them and reverse replication
            # would break on the errant GTIDs. A human must reconcile; nothing more is changed.
            return SwitchResult(False, f"{new.label} was promoted but {old.label} took writes after the "
                                f"checkpoint ({escaped}); routing not flipped", duration_ms=_ms(t0),
                                checkpoint_id=cp_id, timings_ms=journal.timings_ms)
    if checkpoint is None or checkpoint.new_binlog_file is None:
        # Green's coordinates at promotion are what CDC resumes from: take them before routing
        # sends it any write, and never overwrite them on a resume after the flip.
        with journal.step("new_coordinates") as f:
            coords = new.binlog_coordinates()
            new_gtid = new.gtid_position()
            f.update(gtid=new_gtid, file=coords.file if coords else None, pos=coords.pos if coords else None)
            fields = dict(new_gtid=new_gtid, new_binlog_file=coords.file if coords else None,
                          new_binlog_pos=coords.pos if coords else None, promoted_at=utcnow())
            if cp_id is None:
                cp_id = save_checkpoint(store, journal.claim, plan.kind, old_primary=str(old.endpoint),
                                        new_primary=str(new.endpoint), **fields)
            else:
                update_checkpoint(store, cp_id, **fields)
    try:
        with journal.step("flip_routing") as f:
            route = _flip(routing, cluster, new, route_version, f"{plan.kind} {journal.claim.deployment_id}")
            f["version"] = route.version
    except FencedOut:
        raise
    except Exception as e:
        problems.append(f"routing flip failed: {e}")
        return SwitchResult(False, f"{new.label} promoted but {'; '.join(problems)}", duration_ms=_ms(t0),
                            checkpoint_id=cp_id, timings_ms=journal.timings_ms)
    blocked = _ms(fence_t) if fence_t is not None else None
    reverse_ok = False
    try:
        with journal.step("reverse_replication"):
            old.replicate_from(new.endpoint, plan.repl, tls=plan.cluster.tls != "disabled")
            reverse_ok = True
    except FencedOut:
        raise
    except Exception as e:
        problems.append(f"reverse replication could not start: {e}")
    return SwitchResult(True, "; ".join(problems), writes_blocked_ms=blocked, duration_ms=_ms(t0),
                        reverse_replication=reverse_ok, checkpoint_id=cp_id, timings_ms=journal.timings_ms)


def _escaped_writes(old: Server, checkpoint) -> str | None:
    """On a resume: did old take a transaction after its final position was captured? (Only
    while old does not replicate yet: once reverse replication runs, old's position grows by
    new's transactions, and an errant one would have stopped it with an error.)"""
    if checkpoint is None or not checkpoint.old_gtid or old.replica_status() is not None:
        return None
    now = old.gtid_position()
    return None if now == checkpoint.old_gtid else f"{checkpoint.old_gtid} → {now}"


def _promoted_elsewhere(new: Server) -> bool:
    """Before lifting a fence: has new been promoted (by a runner that took over)? Unreachable
    means no: this run never promoted it, and the writer role must not stay nowhere."""
    try:
        new.reconnect()
        return observe_promoted(new)
    except Exception:
        return False


def _flip(routing: RoutingRegistry, cluster: str, new: Server, route_version: int | None, reason: str):
    """Point the writer endpoint at new. Redis errors are retried: a flip whose reply was lost is
    found done on the next read. A version conflict (someone else flipped) is final."""
    for attempt in range(3):
        try:
            route = routing.get(cluster)
            if route is not None and (route.host, route.port) == (new.endpoint.host, new.endpoint.port):
                return route
            # Expect the version seen before the fence: a flip by anyone else since is a conflict.
            expect = route_version if route_version is not None else (route.version if route else 0)
            return routing.flip(cluster, new.endpoint.host, new.endpoint.port, expect_version=expect, reason=reason)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _lift_fence(plan: SwitchPlan, journal: Journal, t0: float, fence_t: float, reason: str) -> SwitchResult:
    try:
        with journal.step("lift_fence", reason=reason):
            # A worker fenced out by another may still get here: never make old writable once new
            # has been promoted (two writers). Use a fresh session: the fence's may have timed out.
            if _promoted_elsewhere(plan.new):
                raise RuntimeError(f"{plan.new.label} is promoted already: the fence stays")
            plan.old.reconnect()
            plan.old.set_read_only(False)
    except FencedOut:
        raise
    except Exception as e:
        return SwitchResult(False, f"{reason}; lifting the fence on {plan.old.label} failed too: {e}",
                            duration_ms=_ms(t0), timings_ms=journal.timings_ms)
    return SwitchResult(False, reason, undone=True, writes_blocked_ms=_ms(fence_t), duration_ms=_ms(t0),
                        timings_ms=journal.timings_ms)


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 3)
