"""The rds switchover step: READY → SWITCHING → CDC_MIGRATING, delegated to RDS and followed by polling.

    READY      switchover_blue_green_deployment(SwitchoverTimeout) is requested; SWITCHING
    SWITCHING  polled every sync_poll_s (re-enqueued, never waited for) until RDS reports
               SWITCHOVER_COMPLETED → checkpoint (green's binlog coordinates from the
               "Binary log coordinates in green environment after switchover" event), the
               application's SSM settings, CDC_MIGRATING with the switch timings;
               SWITCHOVER_FAILED (RDS rolled back: blue is still the primary) → SWITCHOVER_FAILED;
               still in progress past SwitchoverTimeout + GRACE_S → FAILED (needs a human).
A worker that dies anywhere here leaves SWITCHING; the next one observes RDS first and asks for
a switchover only if none was requested (``facts.switchover.requested_at``) and RDS says AVAILABLE.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from bgqueue.adapters.aws import app_config, bluegreen
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError
from bgqueue.adapters.aws.source import identifier_of
from bgqueue.adapters.cdc.rds_events import find_green_binlog_coordinates
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal as journals
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine import claims
from bgqueue.engine.rds import costs, replicas
from bgqueue.engine.rds.steps import member_arns
from bgqueue.model.fleet import RdsClusterSpec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase

GRACE_S = 120  # RDS rolls back at SwitchoverTimeout; past this much more, its state needs a human
EVENT_WAIT_S = 300  # how long CDC pipelines wait for RDS's binlog-coordinates event after the switchover


def _with(facts: dict, **switchover) -> dict:
    """``facts`` with its ``switchover`` part updated (the column is written whole)."""
    return {**facts, "switchover": {**facts.get("switchover", {}), **switchover}}


def _request(rt: Runtime, claim, spec, facts: dict, bg_id: str, timeout_s: int) -> Next:
    """Ask RDS to switch over. A refusal (a guardrail, the state) changed nothing: SWITCHOVER_FAILED.
    An unknown outcome (5xx, throttling, a lost connection) is left to the next look: RDS's status
    says whether it started, and AVAILABLE then means "ask again"."""
    journal = Journal(rt.store, claim, "switchover")
    poll = spec.thresholds.sync_poll_s
    try:
        bluegreen.switchover(spec.region, bg_id, timeout_s)
    except aws.AWS_ERRORS as e:
        journal.note("request", "failed", id=bg_id, switchover_timeout_s=timeout_s, error=aws.explain(e),
                     refused=aws.refused(e))
        sw = facts.get("switchover", {})
        if aws.refused(e) and not (sw.get("uncertain_at") and aws.error_code(e) == "InvalidBlueGreenDeploymentStateFault"):
            claims.end(rt, claim, Phase.SWITCHOVER_FAILED, f"RDS refused the switchover: {aws.explain(e)}; "
                                                              "blue is still the primary", switch_ended_at=utcnow())
            return DONE
        # Unknown, or refused because the uncertain earlier request did start it: look again.
        deps.update_fenced(rt.store, claim, facts=_with(facts, uncertain_at=utcnow().isoformat()))
        return Next(wait_s=poll, detail=f"switchover request outcome unknown: {aws.explain(e)}")
    journal.note("request", id=bg_id, switchover_timeout_s=timeout_s)
    deps.update_fenced(rt.store, claim, facts=_with(facts, requested_at=utcnow().isoformat()))
    return Next(wait_s=poll, detail="switchover requested")


def switch(rt: Runtime, deployment_id: str) -> Next:
    """One look at the switchover (see the module docstring)."""
    claim = claims.claim_in(rt, deployment_id, [Phase.READY, Phase.SWITCHING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    claims.refresh_lock(rt, dep)
    spec = RdsClusterSpec.model_validate(dep.spec)
    facts = dict(dep.facts or {})
    bg_id = facts["blue_green"]["id"]
    if claim.phase == Phase.READY:
        timeout = bluegreen.switchover_timeout_s(spec.thresholds)
        now = utcnow()
        facts = _with(facts, timeout_s=timeout)
        claim = deps.transition(rt.store, claim, Phase.SWITCHING, switch_started_at=now,
                                phase_deadline=now + timedelta(seconds=timeout + GRACE_S), facts=facts)
        return _request(rt, claim, spec, facts, bg_id, timeout)
    poll = spec.thresholds.sync_poll_s
    deadline = deps.as_aware(dep.phase_deadline)
    late = deadline is not None and utcnow() >= deadline
    try:
        bg = bluegreen.describe(spec.region, bg_id)
    except AwsError as e:
        if late:
            claims.end(rt, claim, Phase.FAILED, f"switchover state unknown: {e}")
            return DONE
        return Next(wait_s=poll, detail=str(e))
    if bg is None:
        claims.end(rt, claim, Phase.FAILED, f"blue/green deployment {bg_id} disappeared during the switchover")
        return DONE
    a = bluegreen.assess(bg)
    sw = facts.get("switchover", {})
    if a.state == "switched":
        return _finish(rt, claim, spec, dep, facts, bg)
    if a.state == "switch_failed" or (a.state == "failed" and a.status == "INVALID_CONFIGURATION"):
        Journal(rt.store, claim, "switchover").note("observed", "failed", bg_status=a.status, reason=a.reason)
        claims.end(rt, claim, Phase.SWITCHOVER_FAILED, f"{a.reason}; blue is still the primary (RDS rolled the "
                                                          "switchover back); the green environment is kept: a new "
                                                          "batch adopts it", switch_ended_at=utcnow())
        return DONE
    if a.state == "failed":
        claims.end(rt, claim, Phase.FAILED, f"during the switchover: {a.reason}")
        return DONE
    if a.state == "ready" and not sw.get("requested_at") and not late:
        return _request(rt, claim, spec, facts, bg_id, int(sw.get("timeout_s") or bluegreen.switchover_timeout_s(spec.thresholds)))
    if late:
        target = Phase.SWITCHOVER_FAILED if a.state == "ready" else Phase.FAILED
        claims.end(rt, claim, target, f"RDS still reports {a.status} {GRACE_S}s past the switchover timeout "
                                         f"of {sw.get('timeout_s')}s" + ("; blue is still the primary" if a.state == "ready"
                                                                         else "; check the deployment in RDS"))
        return DONE
    return Next(wait_s=poll, detail=a.status)


def _coordinates(spec, bg: dict, since: datetime) -> tuple[str, int] | None:
    """Green's binlog coordinates from RDS's events: the blue/green deployment's first, then (only when
    a CDC pipeline needs them) the new primary's."""
    rds = aws.client("rds", spec.region)
    kind, ident = identifier_of(bg["Target"])
    sources = [("blue-green-deployment", bg["BlueGreenDeploymentIdentifier"])]
    if spec.pipelines:
        sources.append(("db-instance" if kind == "instance" else "db-cluster", ident))
    events: list[dict] = []
    for source_type, source_id in sources:
        try:
            events += rds.describe_events(SourceType=source_type, SourceIdentifier=source_id,
                                          StartTime=since)["Events"]
        except aws.AWS_ERRORS:
            continue  # one source unreadable: the other may still carry the event
        found = find_green_binlog_coordinates(events)
        if found:
            return found
    return None


def _endpoints(facts: dict, new_id: str, old_id: str) -> tuple[str, str]:
    """``host:port`` of the new and the old primary, as the CDC phase expects them.

    RDS keeps the names: after the switchover the new primary answers at blue's old endpoint, and
    the old one at the same name with its identifier renamed (``<id>-old1.<rest>``). From the
    source's facts, without a call; identifiers when those facts are missing."""
    src = facts.get("source") or {}
    host, port = src.get("endpoint"), src.get("port")
    if not host or not port:
        return new_id, old_id
    first, dot, rest = host.partition(".")
    old_host = f"{old_id}{dot}{rest}" if first == src.get("identifier") else old_id
    return f"{host}:{port}", f"{old_host}:{port}"


def _finish(rt: Runtime, claim, spec, dep, facts: dict, bg: dict) -> Next:
    """RDS switched: checkpoint, application settings, CDC_MIGRATING. Re-entrant (each part once)."""
    journal = Journal(rt.store, claim, "switchover")
    started = deps.as_aware(dep.switch_started_at) or utcnow()
    first_look = not facts.get("switchover", {}).get("completed_at")
    if first_look:  # the poll interval bounds its precision
        facts = _with(facts, completed_at=utcnow().isoformat())
    completed = datetime.fromisoformat(facts["switchover"]["completed_at"])
    _, new_id = identifier_of(bg["Target"])
    old_kind, old_id = identifier_of(bg["Source"])
    if journals.latest_checkpoint(rt.store, dep.id, "switchover") is None:
        coords = _coordinates(spec, bg, started - timedelta(minutes=1))
        if coords is None and spec.pipelines:
            if (utcnow() - completed).total_seconds() < EVENT_WAIT_S:
                if first_look:  # remembered, so that the wait for the event is bounded from here
                    journal.note("completed", bg_status=bg.get("Status"), new=bg.get("Target"), old=bg.get("Source"))
                    deps.update_fenced(rt.store, claim, facts=facts)
                return Next(wait_s=spec.thresholds.sync_poll_s, detail="waiting for the binlog coordinates event")
            claims.end(rt, claim, Phase.FAILED, f"switched over ({new_id} is the primary) but RDS reported no "
                                                   f"binlog coordinates event within {EVENT_WAIT_S}s: the CDC "
                                                   "pipelines need a starting position set by hand")
            return DONE
        new_ep, old_ep = _endpoints(facts, new_id, old_id)
        journals.save_checkpoint(rt.store, claim, "switchover", old_primary=old_ep, new_primary=new_ep,
                                 new_binlog_file=coords[0] if coords else None,
                                 new_binlog_pos=coords[1] if coords else None, promoted_at=completed)
        # One row: "completed" when seen now, "checkpoint" when the event came after an earlier look.
        journal.note("completed" if first_look else "checkpoint", bg_status=bg.get("Status"), new=bg.get("Target"),
                     old=bg.get("Source"),
                     new_binlog_file=coords[0] if coords else None, new_binlog_pos=coords[1] if coords else None,
                     checkpoint=None if coords else "no binlog coordinates event (yet); no pipeline needs it")
    reasons = []
    facts = {**facts, "old": {"kind": old_kind, "identifier": old_id, "arn": bg["Source"]}}
    if spec.app_config_parameter and "app_config" not in facts:
        src = facts.get("source") or {}
        try:  # the new primary answers at blue's endpoint (RDS moved the name), with the change's version
            facts["app_config"] = app_config.update_at_switchover(
                spec, dep.id, host=src.get("endpoint"), port=src.get("port"),
                engine_version=spec.change.engine_version or src.get("engine_version"),
                blue_green_id=bg["BlueGreenDeploymentIdentifier"])
            journal.note("app_config", **facts["app_config"])
        except AwsError as e:  # the switchover happened: report, do not undo
            journal.note("app_config", "failed", error=str(e))
            reasons.append(f"application settings not updated: {e}")
    reasons += _verify_replicas(spec, facts, bg, new_id, journal)
    members = [m["identifier"] for m in (facts.get("source") or {}).get("members") or []]
    moved = costs.retag(spec.region, member_arns(bg["Target"], members),
                        member_arns(bg["Source"], [f"{m}-old1" for m in members]), dep.batch_id, dep.id, spec.name)
    if moved:  # Cost Explorer then misattributes: a warning, never a reason to stop
        journal.note("cost_tags", "failed", warning=moved)
    deps.transition(rt.store, claim, Phase.CDC_MIGRATING, reason="; ".join(reasons) or None, facts=facts,
                    switch_ended_at=completed, switch_duration_ms=round((completed - started).total_seconds() * 1000, 1))
    return DONE


def _verify_replicas(spec, facts: dict, bg: dict, new_id: str, journal: Journal) -> list[str]:
    """The new primary's read replicas (``engine.rds.replicas``): recorded in ``facts.replicas``, the old
    ones in ``facts.old.replicas`` (for decommission). Returns the problems (findings, not a failure:
    the switchover happened)."""
    expected = replicas.original_replicas(facts)
    if not expected:
        return []
    try:
        found = replicas.verify(spec.region, new_id, expected, bg)
    except AwsError as e:
        old = replicas.old_names(bg, new_id, expected)
        found = {"new": [], "old": [{"identifier": o, "replaced_by": r, "exists": None} for r, o in old.items()],
                 "problems": [f"read replicas not verified: {e}"]}
    facts["replicas"] = found
    facts["old"] = {**facts["old"], "replicas": [o["identifier"] for o in found["old"] if o["exists"] is not False]}
    journal.note("replicas", "failed" if found["problems"] else "done", **found)
    return [f"read replicas: {p}" for p in found["problems"]]


def restore_app_config(rt: Runtime, dep) -> str:
    """Undo of the switchover's application-settings update (for a rollback path): the parameter goes
    back to the version it had before. Raises AwsError when it changed since or SSM refuses."""
    record = (dep.facts or {}).get("app_config")
    if not record:
        return "no application settings were updated"
    spec = RdsClusterSpec.model_validate(dep.spec)
    done = app_config.restore(spec, record)
    journals.record_step(rt.store, deps.Claim(dep.id, dep.epoch, Phase(dep.phase)), "rollback", "app_config", "done", done)
    return f"SSM parameter {done['parameter']} restored from version {done['restored_from']} (now {done['version']})"
