"""The rds provider's rollback: a new blue/green deployment back, from the new primary to blue's configuration.

What RDS allows. After a switchover the old environment (``<name>-old1``) is kept but no longer
replicates from the new primary, so pointing the applications back at it would lose every write
made since (AWS's documented manual path: rename ``-old1`` back, or restore from it). What RDS
does allow is a second blue/green deployment whose source is the new primary and whose green
carries blue's former configuration (instance class, parameter groups, storage type/IOPS): RDS
replicates every write into it and its switchover moves the names back, so no write is lost.
Its limit: a green may not run an older engine version than its source, and storage never
shrinks, so a change that upgraded the engine or grew the storage has no automatic rollback
(``preconditions`` says so and names the manual path). moto serves the whole path (it does not
enforce the engine limit; the preconditions do).

    begin       ROLLBACK_FROM → ROLLING_BACK (cluster lock taken, journaled)
    create      the blue/green deployment back, tagged (a resume finds it by its tags)
    switch      once RDS reports it AVAILABLE: switchover requested (SwitchoverTimeout as forward)
    complete    SWITCHOVER_COMPLETED: the SSM settings restored, ROLLED_BACK; the environment the
                rollback left (``facts.rollback.left``) is decommissioned like ``-old1``
Every look is one poll: ``Next(wait_s=sync_poll_s)``, never a wait inside the task.
"""
from __future__ import annotations

from datetime import timedelta

from bgqueue.adapters.aws import bluegreen
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine import claims
from bgqueue.engine.rds.switchover import GRACE_S, restore_app_config
from bgqueue.model.errors import FencedOut
from bgqueue.model.fleet import RdsClusterSpec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase

ROLLBACK_FROM = (Phase.CDC_MIGRATING, Phase.MONITORING, Phase.COMPLETED)
TAG_ROLLBACK = "bgqueue:rollback-of"
ERRORS: tuple[type[BaseException], ...] = (AwsError, *aws.AWS_ERRORS)
# change field → the source fact holding blue's value → CreateBlueGreenDeployment's parameter
BACK = (("instance_class", "instance_class", "TargetDBInstanceClass"),
        ("parameter_group", "parameter_group", "TargetDBParameterGroupName"),
        ("cluster_parameter_group", "cluster_parameter_group", "TargetDBClusterParameterGroupName"),
        ("storage_type", "storage_type", "TargetStorageType"),
        ("iops", "iops", "TargetIops"),
        ("storage_throughput", "storage_throughput", "TargetStorageThroughput"))


def back_parameters(spec: RdsClusterSpec, source: dict) -> dict:
    """The Target* parameters that give blue's configuration back (only what the change altered)."""
    return {param: source[fact] for field, fact, param in BACK
            if getattr(spec.change, field) is not None and source.get(fact) is not None}


def preconditions(rt: Runtime, dep) -> list[str]:
    """Why a rollback would be refused now (empty: it may go). No AWS call."""
    facts = dep.facts or {}
    spec = RdsClusterSpec.model_validate(dep.spec)
    src = facts.get("source") or {}
    old = (facts.get("old") or {}).get("identifier", f"{spec.source_identifier}-old1")
    manual = (f"the manual path (AWS's documentation): point the applications at {old} (or rename it back) "
              "— it does not have the writes made on the new primary since the switchover")
    if Phase(dep.phase) not in ROLLBACK_FROM and dep.phase != Phase.ROLLING_BACK:
        return [f"deployment {dep.id} is {dep.phase}: a rollback follows a switchover"]
    if not facts.get("old"):
        return [f"deployment {dep.id} has no switchover recorded"]
    out = []
    if spec.change.engine_version and spec.change.engine_version != src.get("engine_version"):
        out.append(f"the change upgraded the engine ({src.get('engine_version')} → {spec.change.engine_version}) and "
                   "an RDS blue/green green may not run an older version than its source: no blue/green "
                   f"deployment back; {manual}")
    if spec.change.allocated_storage and spec.change.allocated_storage > (src.get("allocated_storage") or 0):
        out.append(f"the change grew the storage to {spec.change.allocated_storage} GiB and RDS storage never shrinks: "
                   f"no blue/green deployment back; {manual}")
    if spec.pipelines:
        out.append("CDC pipelines would have to move back: not automated for provider rds")
    return out


def _begin(rt: Runtime, dep, reason: str):
    problems = preconditions(rt, dep)
    if not problems and not rt.locks.acquire(dep.cluster, dep.batch_id, rt.settings.lock_ttl_s):
        problems.append(f"another operation took cluster {dep.cluster!r} (lock held by {rt.locks.holder(dep.cluster)})")
    if problems:
        journals.note_unfenced(rt.store, dep.id, "rollback", "refused", "failed", {"reason": reason, "problems": problems})
        return None
    for _ in range(5):  # a monitoring tick may claim the row between our claim and transition
        claim = deps.claim(rt.store, dep.id, claims.OWNER, list(ROLLBACK_FROM))
        if claim is None:
            return None
        spec = RdsClusterSpec.model_validate(dep.spec)
        t = spec.thresholds
        deadline = utcnow() + timedelta(seconds=t.sync_timeout_s + bluegreen.switchover_timeout_s(t) + GRACE_S)
        try:
            claim = deps.transition(rt.store, claim, Phase.ROLLING_BACK, reason=reason, phase_deadline=deadline)
            Journal(rt.store, claim, "rollback").note("begin", reason=reason, from_phase=dep.phase,
                                                      path="blue/green deployment back")
            return claim
        except FencedOut:
            continue
    return None


def _with(dep, **part) -> dict:
    facts = dict(dep.facts or {})
    return {**facts, "rollback": {**facts.get("rollback", {}), **part}}


def roll_back(rt: Runtime, deployment_id: str, reason: str = "manual rollback") -> Next:
    """Run (or resume) one look of the rollback; ROLLED_BACK when RDS switched back, FAILED with why."""
    dep = deps.get_deployment(rt.store, deployment_id)
    if dep.phase == Phase.ROLLING_BACK:
        if dep.reason != reason:
            return DONE  # someone else's rollback: its own runner carries it
        claim = deps.claim(rt.store, deployment_id, claims.OWNER, [Phase.ROLLING_BACK])
    elif dep.phase in ROLLBACK_FROM:
        claim = _begin(rt, dep, reason)
    else:
        return DONE
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    claims.refresh_lock(rt, dep)
    spec = RdsClusterSpec.model_validate(dep.spec)
    poll = spec.thresholds.sync_poll_s
    journal = Journal(rt.store, claim, "rollback")
    deadline = deps.as_aware(dep.phase_deadline)
    late = deadline is not None and utcnow() >= deadline
    state = (dep.facts or {}).get("rollback") or {}
    try:
        if not state.get("id"):
            made, how = _obtain_back(spec, dep)
            journal.note("create", id=made["BlueGreenDeploymentIdentifier"], how=how, target=made.get("Target"),
                         parameters=back_parameters(spec, dep.facts.get("source") or {}))
            deps.update_fenced(rt.store, claim, facts=_with(dep, id=made["BlueGreenDeploymentIdentifier"], how=how))
            return Next(wait_s=poll, detail="blue/green deployment back requested")
        bg = bluegreen.describe(spec.region, state["id"])
    except ERRORS as e:
        msg = str(e) if isinstance(e, AwsError) else aws.explain(e)
        if late or (isinstance(e, AwsError) and not e.transient) or aws.refused(e):
            journal.note("aws", "failed", error=msg)
            claims.end(rt, claim, Phase.FAILED, f"rollback: {msg}; the new primary still serves")
            return DONE
        return Next(wait_s=poll, detail=msg)
    if bg is None:
        claims.end(rt, claim, Phase.FAILED, f"rollback: blue/green deployment {state['id']} disappeared; "
                                            "the new primary still serves")
        return DONE
    a = bluegreen.assess(bg)
    if a.state == "switched":
        return _complete(rt, claim, dep, spec, bg, reason)
    if a.state in ("failed", "switch_failed") or late:
        why = a.reason or f"still {a.status} at the rollback deadline"
        journal.note("observed", "failed", id=state["id"], bg_status=a.status, reason=why)
        claims.end(rt, claim, Phase.FAILED, f"rollback did not happen: {why}; the new primary still serves")
        return DONE
    if a.state == "ready" and not state.get("requested_at"):
        timeout = bluegreen.switchover_timeout_s(spec.thresholds)
        try:
            bluegreen.switchover(spec.region, state["id"], timeout)
        except aws.AWS_ERRORS as e:
            journal.note("switch", "failed", id=state["id"], error=aws.explain(e))
            if aws.refused(e):
                claims.end(rt, claim, Phase.FAILED, f"RDS refused the switchover back: {aws.explain(e)}; "
                                                    "the new primary still serves")
                return DONE
            return Next(wait_s=poll, detail=aws.explain(e))
        journal.note("switch", id=state["id"], switchover_timeout_s=timeout)
        deps.update_fenced(rt.store, claim, facts=_with(dep, requested_at=utcnow().isoformat()))
    return Next(wait_s=poll, detail=a.status)


def _obtain_back(spec: RdsClusterSpec, dep) -> tuple[dict, str]:
    """The blue/green deployment back: one this rollback created before a crash, else a new one."""
    src = dep.facts.get("source") or {}
    arn = src["arn"]  # RDS moved the names: the new primary answers to the source's identifier and ARN
    for bg in bluegreen.find_for_source(spec.region, arn):
        if bluegreen.tags(bg).get(TAG_ROLLBACK) == dep.id:
            return bg, "resumed"
    try:
        bg = bluegreen.create(spec.region, name=bluegreen.name_for(f"{spec.name}-back", dep.id), source_arn=arn,
                              params=back_parameters(spec, src),
                              tag_values={TAG_ROLLBACK: dep.id, bluegreen.TAG_CLUSTER: spec.name,
                                          bluegreen.TAG_CHANGE: f"rollback-{spec.change_key()}"})
    except aws.AWS_ERRORS as e:
        raise aws.failure(f"creating the blue/green deployment back for {src.get('identifier')}", e) from None
    return bg, "created"


def _complete(rt: Runtime, claim, dep, spec: RdsClusterSpec, bg: dict, reason: str) -> Next:
    journal = Journal(rt.store, claim, "rollback")
    notes = []
    if (dep.facts or {}).get("app_config"):
        try:
            notes.append(restore_app_config(rt, dep))
        except AwsError as e:  # switched back: report, do not undo
            notes.append(f"application settings not restored: {e}")
    left = {"arn": bg["Source"], "identifier": bg["Source"].split(":")[-1]}
    journal.note("rolled_back", id=bg["BlueGreenDeploymentIdentifier"], now_primary=bg.get("Target"),
                 left=left["identifier"], notes=notes)
    deps.update_fenced(rt.store, claim, facts=_with(dep, left=left, completed_at=utcnow().isoformat()))
    claims.end(rt, claim, Phase.ROLLED_BACK, "; ".join([reason, *notes]))
    return DONE
