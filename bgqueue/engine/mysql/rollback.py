"""The mysql provider's rollback: the switchover procedure in the other direction (green → blue).

Possible while reverse replication keeps blue current: from CDC_MIGRATING, MONITORING, or
COMPLETED until the retention period ends. Same journaling and crash-safety as the
switchover (``switch_writer`` with kind="rollback"): fence green, wait (bounded) for blue to
reach green's final position, promote blue, flip routing, green replicates from blue again;
then the CDC pipelines move back from the rollback checkpoint.
"""
from __future__ import annotations

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.engine import claims
from bgqueue.engine.mysql.switchover import SwitchPlan, hold_procedure_locks, switch_writer
from bgqueue.engine.pipelines import move_pipelines
from bgqueue.model import gtid
from bgqueue.model.errors import BgqueueError, FencedOut
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase

ROLLBACK_FROM = (Phase.CDC_MIGRATING, Phase.MONITORING, Phase.COMPLETED)


def preconditions(rt: Runtime, dep: Deployment) -> list[str]:
    """Why a rollback of ``dep`` would be refused now (empty: it may go). Observes, changes nothing."""
    spec = ClusterSpec.model_validate(dep.spec)
    if Phase(dep.phase) not in ROLLBACK_FROM:
        return [f"deployment {dep.id} is {dep.phase}: rollback is possible only after a switchover "
                f"({', '.join(ROLLBACK_FROM)})"]
    problems: list[str] = []
    if dep.decommissioned_at is not None:
        problems.append(f"blue was decommissioned at {deps.as_aware(dep.decommissioned_at).isoformat()}")
    until = deps.as_aware(dep.retention_until)
    if dep.phase == Phase.COMPLETED and until is not None and utcnow() >= until:
        problems.append(f"the retention period ended at {until.isoformat()}")
    holder = rt.locks.holder(spec.name)
    if holder not in (None, dep.batch_id):
        problems.append(f"another operation holds cluster {spec.name!r} (lock held by {holder})")
    active = deps.active_deployment(rt.store, spec.name)
    if active is not None and active.id != dep.id:
        problems.append(f"deployment {active.id} of cluster {spec.name!r} is in flight ({active.phase})")
    blue, green = servers(spec)
    try:
        status = blue.replica_status()
        if status is None:
            problems.append(f"reverse replication is not configured on blue {spec.blue}")
        else:
            if (status.source_port, status.source_host) != (spec.green.port, spec.green.host):
                problems.append(f"blue replicates from {status.source_host}:{status.source_port}, not green")
            if not status.healthy:
                problems.append("reverse replication is broken: " +
                                (status.last_error or f"IO {status.io_running}, SQL {status.sql_running}"))
            elif status.seconds_behind is not None and status.seconds_behind > spec.thresholds.rollback_max_lag_s:
                problems.append(f"reverse replication lags {status.seconds_behind}s, above the bound "
                                f"{spec.thresholds.rollback_max_lag_s:g}s")
            else:
                behind = gtid.transactions_behind(blue.flavour, blue.applied_position(), green.gtid_position())
                if behind and status.seconds_behind is None:
                    problems.append(f"reverse replication is {behind} transactions behind and its lag is unknown")
    except BgqueueError as e:
        problems.append(str(e))
    finally:
        blue.close()
        green.close()
    return problems


def _begin(rt: Runtime, dep: Deployment, reason: str):
    """Check the preconditions, take the cluster lock, then claim and move to ROLLING_BACK.
    None when refused (recorded in the journal, without claiming: a refusal must not fence out
    the deployment's owner) or when another worker moved the deployment on."""
    problems = preconditions(rt, dep)
    if not problems and not rt.locks.acquire(dep.cluster, dep.batch_id, rt.settings.lock_ttl_s):
        problems.append(f"another operation took cluster {dep.cluster!r} (lock held by {rt.locks.holder(dep.cluster)})")
    if problems:
        journals.note_unfenced(rt.store, dep.id, "rollback", "refused", "failed",
                               {"reason": reason, "problems": problems})
        return None
    for _ in range(5):  # a monitoring tick may claim the row between our claim and transition
        claim = deps.claim(rt.store, dep.id, claims.OWNER, list(ROLLBACK_FROM))
        if claim is None:
            return None
        try:
            claim = deps.transition(rt.store, claim, Phase.ROLLING_BACK, reason=reason)
            Journal(rt.store, claim, "rollback").note("begin", reason=reason, from_phase=dep.phase)
            return claim
        except FencedOut:
            continue
    return None


def _this_attempt(rt: Runtime, deployment_id: str) -> dict[str, object]:
    """The steps of the current rollback attempt (since its last ``begin``), by name."""
    rows = journals.steps(rt.store, deployment_id, "rollback")
    starts = [i for i, s in enumerate(rows) if s.name == "begin"]
    return {s.name: s for s in rows[starts[-1] if starts else 0:] if s.status == "done"}


def _phase_before(rt: Runtime, deployment_id: str) -> Phase:
    into = [p for p in deps.phase_history(rt.store, deployment_id) if p.to_phase == Phase.ROLLING_BACK]
    return Phase(into[-1].from_phase) if into else Phase.MONITORING


def roll_back(rt: Runtime, deployment_id: str, reason: str = "manual rollback") -> Next:
    """Run (or resume) the rollback of one deployment. Records ROLLED_BACK, or FAILED with why.

    The servers are observed (preconditions) before the deployment is claimed, so that the
    claim → ROLLING_BACK transition is a few ms: monitoring ticks claim the same row."""
    dep = deps.get_deployment(rt.store, deployment_id)
    if dep.phase == Phase.ROLLING_BACK:
        if dep.reason != reason:
            return DONE  # someone else's rollback: its own runner carries it (two would fence each other)
        claim = deps.claim(rt.store, deployment_id, claims.OWNER, [Phase.ROLLING_BACK])
        resume = True
    elif dep.phase in ROLLBACK_FROM:
        claim, resume = _begin(rt, dep, reason), False
    else:
        return DONE
    if claim is None:
        return DONE
    spec = ClusterSpec.model_validate(dep.spec)
    journal = Journal(rt.store, claim, "rollback")
    done_steps = _this_attempt(rt, deployment_id)
    # Once routing names blue the procedure is over (reverse replication, if it failed, is a
    # finding for monitoring): never run it again, or every CDC tick would start it anew.
    if "rolled_back" not in done_steps and "flip_routing" not in done_steps:
        blue, green = servers(spec)
        try:
            hold_procedure_locks(spec.name, blue, green)
            plan = SwitchPlan(cluster=spec, old=green, new=blue, repl=spec.replication, kind="rollback")
            result = switch_writer(plan, rt.store, journal, rt.routing, spec.thresholds.catchup_timeout_s,
                                   resume=resume)
        except BgqueueError as e:
            claims.end(rt, claim, Phase.FAILED, f"rollback could not reach the servers: {e}")
            return DONE
        finally:
            blue.close()
            green.close()
        if not result.switched:
            if result.undone:
                # Green is the writer again and nothing else changed: back to where it was.
                back = _phase_before(rt, deployment_id)
                journal.note("aborted", "failed", reason=result.reason, back_to=back)
                claims.end(rt, claim, back, f"rollback aborted (green is still the primary): {result.reason}")
                return DONE
            claims.end(rt, claim, Phase.FAILED, f"rollback did not happen: {result.reason}")
            return DONE
        journal.note("rolled_back", reason=reason, writes_blocked_ms=result.writes_blocked_ms,
                     duration_ms=result.duration_ms, reverse_replication=result.reverse_replication)
    nxt = move_pipelines(rt, claim, spec, kind="rollback")
    if nxt.wait_s:
        return nxt
    claims.end(rt, claim, Phase.ROLLED_BACK, reason)
    return DONE
