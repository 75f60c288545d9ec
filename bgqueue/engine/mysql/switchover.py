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

The procedure is a list of ``procedure.Step``s built by ``_steps`` (each with its undo beside it)
and run by ``procedure.run_steps``. While writes are refused (fence → flip) the journal is
deferred: its rows are written at three fenced points (the checkpoint, just before promote, the
new coordinates) instead of two round trips per step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from bgqueue.adapters.failpoints import failpoint
from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.routing import targets as routing_targets
from bgqueue.adapters.routing.maintenance import Maintenance
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.store.db import Store
from bgqueue.adapters.store.journal import Journal, StepFailed, latest_checkpoint
from bgqueue.adapters.store.models import Checkpoint, utcnow
from bgqueue.engine.procedure import CannotUndo, Step, run_steps
from bgqueue.model import gtid
from bgqueue.model.errors import BgqueueError
from bgqueue.model.fleet import ClusterSpec, Credentials
from bgqueue.model.outcomes import SwitchResult

__all__ = ["SwitchPlan", "SwitchResult", "observe_promoted", "switch_writer"]


@dataclass
class SwitchPlan:
    """Who hands over to whom, and with what."""

    cluster: ClusterSpec
    old: Server
    new: Server
    repl: Credentials
    kind: str = "switchover"  # or "rollback"


# How often a bounded wait inside the procedure renews its lease (well under procedure_lease_s).
LEASE_RENEW_S = 2.0
TARGET_ATTEMPTS = 3  # per routing target after promotion (then it is reported, never undone)


def procedure_lock_name(cluster: str) -> str:
    """The server-side named lock a switchover or rollback of ``cluster`` holds on blue and green."""
    return f"bgq:procedure:{cluster}"[:64]


def hold_procedure_locks(cluster: str, *servers: Server) -> None:
    """Connect and take the cluster's procedure lock on each server, ending the sessions of a worker
    that held it before (the store's claim already made this worker the owner)."""
    for s in servers:
        s.hold_fence_lock(procedure_lock_name(cluster))


def observe_promoted(new: Server) -> bool:
    """Has ``new`` already been promoted (no replication configured, writable)?"""
    return new.replica_status() is None and not new.is_read_only()


class _Run:
    """The state one run of the procedure carries from step to step."""

    def __init__(self, plan: SwitchPlan, store: Store, journal: Journal, routing: RoutingRegistry,
                 catchup_timeout_s: float):
        self.plan, self.store, self.journal, self.routing = plan, store, journal, routing
        self.catchup_timeout_s = catchup_timeout_s
        self.old, self.new = plan.old, plan.new
        self.final_gtid = ""
        self.cp_id: int | None = None
        self.checkpoint: Checkpoint | None = None  # the recorded checkpoint, on a resume
        self.route_version: int | None = None
        self.promote_error = ""
        self.fence_t: float | None = None
        self.maintenance_entered = False

    # --- before the fence: maintenance mode (opt-in) -----------------------------------------
    def maintenance_enter(self, f: dict) -> None:
        """Ask the application instances to drain and wait (bounded) for their acknowledgements,
        renewing the lease meanwhile. Before the fence: it does not lengthen the write-blocked window."""
        m = self.plan.cluster.maintenance
        maint = Maintenance(self.routing.redis, namespace=self.routing.namespace)
        cluster, epoch = self.plan.cluster.name, self.journal.claim.epoch
        expected = set(m.clients) or set(maint.registered(cluster))
        # The longest the clients can be held: the wait for them, the catch-up bound, a takeover.
        hold_s = m.ack_timeout_s + self.catchup_timeout_s + 120
        maint.enter(cluster, epoch, self.journal.claim.deployment_id, hold_s=hold_s)
        self.maintenance_entered = True
        deadline = time.monotonic() + m.ack_timeout_s
        renew_at = time.monotonic() + LEASE_RENEW_S
        while True:
            acked = maint.acknowledged(cluster, epoch)
            if expected <= acked or time.monotonic() >= deadline:
                break
            if time.monotonic() >= renew_at:
                self.journal.flush()  # the lease, and a FencedOut if this worker lost the deployment
                renew_at = time.monotonic() + LEASE_RENEW_S
            time.sleep(0.01)
        silent = sorted(expected - acked)
        f.update(expected=sorted(expected), acknowledged=sorted(acked & expected), silent=silent,
                 epoch=epoch, timeout_s=m.ack_timeout_s)
        if silent and m.on_timeout == "abort":
            raise StepFailed(f"maintenance: {len(silent)} client(s) did not acknowledge within "
                             f"{m.ack_timeout_s:g}s: {', '.join(silent)}")

    def maintenance_exit(self, _detail: object = None) -> None:
        """Let the clients reconnect: to the new writer after a flip, to the old one after an abort."""
        Maintenance(self.routing.redis, namespace=self.routing.namespace).exit(self.plan.cluster.name, self.journal.claim.epoch,
                                             self.journal.claim.deployment_id)

    # --- before promote: each step is undone by lifting the fence ---------------------------
    def fence(self, f: dict) -> None:
        route = self.routing.get(self.plan.cluster.name)
        self.route_version = route.version if route else None
        self.fence_t = time.perf_counter()
        self.old.set_read_only(True)
        sessions = self.old.client_sessions()
        f["sessions_ended"] = self.old.end_sessions(sessions)
        f["users"] = sorted({u for _, u in sessions})
        failpoint(f"{self.plan.kind}.after_fence")

    def lift_fence(self, reason: str) -> None:
        # A worker fenced out by another may still get here: never make old writable once new
        # has been promoted (two writers). Use a fresh session: the fence's may have timed out.
        try:
            if _promoted_elsewhere(self.new):
                raise RuntimeError(f"{self.new.label} is promoted already: the fence stays")
            self.old.reconnect()
            self.old.set_read_only(False)
        except Exception as e:
            raise CannotUndo(f"{reason}; lifting the fence on {self.old.label} failed too: {e}") from e

    def take_checkpoint(self, f: dict) -> None:
        self.final_gtid = self.old.gtid_position()
        coords = self.old.binlog_coordinates()
        f.update(gtid=self.final_gtid, file=coords.file if coords else None, pos=coords.pos if coords else None)
        self.cp_id = self.journal.save_checkpoint(
            self.plan.kind, old_primary=str(self.old.endpoint), new_primary=str(self.new.endpoint),
            old_gtid=self.final_gtid, old_binlog_file=coords.file if coords else None,
            old_binlog_pos=coords.pos if coords else None)

    def wait_for_new(self, f: dict) -> None:
        f["timeout_s"] = self.catchup_timeout_s
        # In slices: each one renews the lease (a fenced store write), so a long catch-up is not
        # taken for a dead worker, and a worker that lost the deployment stops here.
        f["reached"] = self.new.wait_for_position(self.final_gtid, self.catchup_timeout_s,
                                                  slice_s=LEASE_RENEW_S, between_slices=self.journal.flush)
        if not f["reached"]:
            behind = gtid.transactions_behind(self.new.flavour, self.new.applied_position(), self.final_gtid)
            f["transactions_behind"] = behind
            raise StepFailed(f"{self.new.label} did not reach {self.old.label}'s final position {self.final_gtid} "
                             f"within {self.catchup_timeout_s:g}s ({behind} transactions behind)")

    def fence_held(self, f: dict) -> None:
        now_gtid = self.old.gtid_position()
        f.update(gtid=now_gtid, held=now_gtid == self.final_gtid)
        if now_gtid != self.final_gtid:
            # Someone wrote past the fence (a privileged session that connected after it): promoting
            # now would lose that write. Give the writer role back to old; green catches up on its own.
            raise StepFailed(f"writes escaped the fence on {self.old.label}: its position moved from "
                             f"{self.final_gtid} to {now_gtid} after the checkpoint")

    def promote(self, f: dict) -> None:
        failpoint(f"{self.plan.kind}.before_promote")
        self.journal.flush()  # the last epoch check before the point of no return
        try:
            self.new.promote()
        except Exception as e:
            self.promote_error = str(e)
            raise

    def undo_promote(self, reason: str) -> None:
        # A half-done promote is observed, not guessed: only if new still replicates may the fence go.
        try:
            promoted = observe_promoted(self.new)
        except Exception:
            promoted = None
        if promoted is not False:
            raise CannotUndo(f"promotion of {self.new.label} failed and its state is unknown: {self.promote_error}")

    # --- after promote: forward only ---------------------------------------------------------
    def refence(self, f: dict) -> None:
        """On a resume: the old primary must be fenced before routing names the new one."""
        f["was_read_only"] = self.old.is_read_only()
        if not f["was_read_only"]:
            self.old.set_read_only(True)
        escaped = _escaped_writes(self.old, self.checkpoint)
        f["escaped"] = escaped
        if escaped:
            # Old took writes that new never got: flipping would lose them and reverse replication
            # would break on the errant GTIDs. A human must reconcile; nothing more is changed.
            raise StepFailed(f"{self.new.label} was promoted but {self.old.label} took writes after the "
                             f"checkpoint ({escaped}); routing not flipped")

    def new_coordinates(self, f: dict) -> None:
        # Green's coordinates at promotion are what CDC resumes from: take them before routing
        # sends it any write, and never overwrite them on a resume after the flip.
        failpoint(f"{self.plan.kind}.after_promote")
        if self.checkpoint is not None and self.checkpoint.new_binlog_file is not None:
            f["kept"] = "recorded before the resume"
            return
        coords = self.new.binlog_coordinates()
        new_gtid = self.new.gtid_position()
        f.update(gtid=new_gtid, file=coords.file if coords else None, pos=coords.pos if coords else None)
        fields = dict(new_gtid=new_gtid, new_binlog_file=coords.file if coords else None,
                      new_binlog_pos=coords.pos if coords else None, promoted_at=utcnow())
        if self.cp_id is None:
            self.cp_id = self.journal.save_checkpoint(self.plan.kind, old_primary=str(self.old.endpoint),
                                                      new_primary=str(self.new.endpoint), **fields)
        else:
            self.journal.update_checkpoint(self.cp_id, **fields)

    def flip_routing(self, f: dict) -> None:
        route = self.routing.flip_to(self.plan.cluster.name, self.new.endpoint.host, self.new.endpoint.port,
                                     self.route_version, f"{self.plan.kind} {self.journal.claim.deployment_id}")
        f["version"] = route.version

    def flip_targets(self, f: dict) -> None:
        """The cluster's other application paths (HAProxy, Route 53, SSM), each to the new writer.
        After promotion nothing is undone: each target is tried a few times, and the facts (and the
        failure) say exactly which paths still point at the old primary."""
        targets = [t for t in self.plan.cluster.routing_targets() if t.kind != "registry"]
        if not targets:
            return
        side = "green" if self.new.endpoint == self.plan.cluster.green else "blue"
        flipped: dict[str, dict] = {}
        failed: dict[str, str] = {}
        for target in targets:
            for attempt in range(TARGET_ATTEMPTS):
                try:
                    flipped[target.label] = routing_targets.flip(self.plan.cluster, target, side)
                    failed.pop(target.label, None)
                    break
                except BgqueueError as e:
                    failed[target.label] = str(e)
                    time.sleep(0.2 * (attempt + 1))
        f.update(side=side, flipped=flipped, failed=failed)
        if failed:
            raise StepFailed(f"{len(failed)} application path(s) still point at {self.old.label} "
                             f"{self.old.endpoint}: " + "; ".join(failed.values()))

    def reverse_replication(self, f: dict) -> None:
        self.old.replicate_from(self.new.endpoint, self.plan.repl, tls=self.plan.cluster.tls)


def _steps(run: _Run, *, resumed_after_promote: bool) -> tuple[list[Step], list[Step], list[Step]]:
    """(steps before the write-blocked window, inside it, after it), each with its undo beside it."""

    def unexpected(e: Exception) -> str:
        return f"{type(e).__name__} before promotion: {e}"

    if resumed_after_promote:
        # Writes that escaped stop the run; an unreachable old primary cannot take writes either.
        window = [Step("refence", run.refence, on_error=lambda e: "stop" if isinstance(e, StepFailed) else "continue",
                       explain=lambda e: f"could not check the fence on {run.old.label}: {e}")]
    else:
        window = [
            # 'started' is journaled before the fence (outside the window): a worker that dies while
            # blue is fenced leaves that trace.
            Step("fence", run.fence, undo=run.lift_fence, undo_name="lift_fence", explain=unexpected, eager=True),
            Step("checkpoint", run.take_checkpoint, explain=unexpected),
            Step("wait_for_new", run.wait_for_new, explain=unexpected),
            Step("fence_held", run.fence_held, explain=lambda e: f"{type(e).__name__} checking the fence: {e}"),
            Step("promote", run.promote, undo=run.undo_promote, undo_name="undo_promote",
                 explain=lambda e: f"promotion failed: {e}"),
        ]
    window += [
        # past the point of no return: only forward (an error here is resumed by the next attempt)
        Step("new_coordinates", run.new_coordinates, on_error="raise"),
        Step("flip_routing", run.flip_routing, on_error="stop", explain=lambda e: f"routing flip failed: {e}"),
    ]
    drain = run.plan.cluster.maintenance.mode == "drain"
    before = [Step("maintenance_enter", run.maintenance_enter, undo=run.maintenance_exit,
                   undo_name="maintenance_exit")] if drain and not resumed_after_promote else []
    after = [Step("maintenance_exit", run.maintenance_exit, on_error="continue")] if drain else []
    if any(t.kind != "registry" for t in run.plan.cluster.routing_targets()):
        after.append(Step("flip_targets", run.flip_targets, on_error="continue"))
    after += [Step("reverse_replication", run.reverse_replication, on_error="continue",
                  explain=lambda e: f"reverse replication could not start: {e}")]
    return before, window, after


def switch_writer(plan: SwitchPlan, store: Store, journal: Journal, routing: RoutingRegistry,
                  catchup_timeout_s: float, resume: bool = False) -> SwitchResult:
    """Run (or resume) the procedure. Never raises for a server-side failure: the result says
    what happened and whether the fence was undone. FencedOut propagates untouched (another
    worker owns the deployment; it must not be disturbed)."""
    t0 = time.perf_counter()
    run = _Run(plan, store, journal, routing, catchup_timeout_s)
    promoted = False
    if resume:
        with journal.step("observe", resume=True) as f:
            promoted = observe_promoted(plan.new)
            f.update(new_promoted=promoted, old_read_only=plan.old.is_read_only())
        if promoted:
            run.checkpoint = latest_checkpoint(store, journal.claim.deployment_id, plan.kind)
            run.cp_id = run.checkpoint.id if run.checkpoint is not None else None
    before, window, after = _steps(run, resumed_after_promote=promoted)
    blocked = None
    outcome = run_steps(journal, before)
    if outcome.ok and promoted:
        outcome = run_steps(journal, window)
    elif outcome.ok:
        with journal.deferred():
            outcome = run_steps(journal, window)
            blocked = _ms(run.fence_t) if run.fence_t is not None else None
        if not outcome.ok and outcome.undone and run.maintenance_entered:
            run_steps(journal, [Step("maintenance_exit", run.maintenance_exit, on_error="continue")])
    if not outcome.ok:
        if outcome.undone:
            return SwitchResult(False, outcome.reason, undone=True, writes_blocked_ms=blocked,
                                duration_ms=_ms(t0), timings_ms=journal.timings_ms)
        reason = outcome.reason
        if outcome.failed == "flip_routing":
            reason = f"{plan.new.label} promoted but " + "; ".join([*outcome.findings, outcome.reason])
        return SwitchResult(False, reason, checkpoint_id=run.cp_id, duration_ms=_ms(t0),
                            timings_ms=journal.timings_ms)
    rest = run_steps(journal, after)
    return SwitchResult(True, "; ".join(outcome.findings + rest.findings), writes_blocked_ms=blocked,
                        duration_ms=_ms(t0), reverse_replication="reverse_replication" in rest.done, checkpoint_id=run.cp_id,
                        timings_ms=journal.timings_ms)


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


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 3)
