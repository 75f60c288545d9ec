"""The rds provider's steps of the per-cluster chain (``bgqueue.engine.lifecycle`` hands rds deployments here).

    prepare        PENDING → PREPARING → SYNCING: support checks; adopt this source's blue/green
                   deployment (tagged by bgqueue, same change) or create one
    wait_for_sync  SYNCING → VALIDATING once RDS reports it AVAILABLE; NO_GO on INVALID_CONFIGURATION,
                   missing members, failed provisioning, or at the sync deadline
    switch         READY → SWITCHING → CDC_MIGRATING (``switchover.switch``)
    on_no_go       a NO_GO removes the green environment (DeleteTarget=True: nothing was switched)
    decommission   after retention: the old ``-oldN`` source and the blue/green object are deleted

Steps never wait: polling is ``Next(wait_s=sync_poll_s)`` (the task re-enqueues itself). What
bgqueue learns of AWS lives in the deployment's ``facts``: ``source``, ``blue_green`` (id, name,
how it was obtained), ``green``, ``cost``, later ``switchover``, ``old`` and ``app_config``.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from bgqueue.adapters.aws import bluegreen, cost, topology
from bgqueue.adapters.aws import clients as aws
from bgqueue.adapters.aws.clients import AwsError
from bgqueue.adapters.aws.source import Green, Source, describe_arn, describe_spec
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.journal import Journal, record_step
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine import claims
from bgqueue.engine.rds import costs
from bgqueue.model.fleet import RdsClusterSpec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase

log = logging.getLogger("bgqueue.rds")


class Refused(AwsError):
    """RDS (or an existing blue/green deployment) does not let this deployment go on."""


def member_arns(arn: str, members: list[str]) -> list[str]:
    """The ARN itself and, for a cluster, its member instances' ARNs (same account and Region)."""
    head, sep, _ = arn.partition(":cluster:")
    return [arn, *(f"{head}:db:{m}" for m in members)] if sep else [arn]


def facts_with(dep, **parts) -> dict:
    """The deployment's facts with ``parts`` replaced (the column is written whole)."""
    return {**(dep.facts or {}), **parts}


def _obtain(spec, src: Source, deployment_id: str) -> tuple[dict, str]:
    """This source's blue/green deployment: ``(description, how)``, how = resumed | adopted | created.

    resumed: the one this deployment created before a crash; adopted: one bgqueue created for the
    same cluster and change (a re-run after a failed batch). Anything else on the source refuses.
    """
    existing = bluegreen.find_for_source(spec.region, src.arn)
    key = spec.change_key()
    for bg in existing:
        if bluegreen.tags(bg).get(bluegreen.TAG_DEPLOYMENT) == deployment_id:
            return bg, "resumed"
    for bg in existing:
        t = bluegreen.tags(bg)
        if t.get(bluegreen.TAG_CLUSTER) == spec.name and t.get(bluegreen.TAG_CHANGE) == key \
                and bg.get("Status") != "SWITCHOVER_IN_PROGRESS":
            return bg, "adopted"
    if existing:
        bg = existing[0]
        t = bluegreen.tags(bg)
        ident = f"blue/green deployment {bg['BlueGreenDeploymentIdentifier']} ({bg.get('Status')})"
        if bluegreen.TAG_CLUSTER not in t:
            raise Refused(f"{ident} exists for {src.identifier} and was not created by bgqueue: "
                          "let its owner finish or delete it")
        raise Refused(f"{ident} exists for {src.identifier} with another change ({t.get(bluegreen.TAG_CHANGE)}, "
                      f"this batch carries {key}; created by deployment {t.get(bluegreen.TAG_DEPLOYMENT)}): "
                      "delete it first")
    try:
        bg = bluegreen.create(spec.region, name=bluegreen.name_for(spec.name, deployment_id), source_arn=src.arn,
                              params=bluegreen.target_parameters(spec.change, src.kind),
                              tag_values={bluegreen.TAG_DEPLOYMENT: deployment_id, bluegreen.TAG_CLUSTER: spec.name,
                                          bluegreen.TAG_CHANGE: key})
    except aws.AWS_ERRORS as e:
        if aws.refused(e):
            raise Refused(f"RDS refused to create a blue/green deployment for {src.identifier}: "
                          f"{aws.explain(e)}") from None
        # Perhaps created: the next attempt finds it by its tags (resumed), or creates it then.
        raise aws.failure(f"creating a blue/green deployment for {src.identifier}", e) from None
    return bg, "created"


def _estimate(spec, src: Source) -> dict:
    try:  # green's replicas are green too: priced with it (one describe call, only when there are replicas)
        return cost.estimate_for_spec(spec, src)
    except Exception as e:  # an estimate never stops a deployment
        return {"error": f"{type(e).__name__}: {e}"}


def prepare(rt: Runtime, deployment_id: str) -> Next:
    """PENDING (or PREPARING, after a crash) → SYNCING with a blue/green deployment; NO_GO when the
    source cannot be switched by blue/green (nothing is created then)."""
    claim = claims.claim_in(rt, deployment_id, [Phase.PENDING, Phase.PREPARING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    spec = RdsClusterSpec.model_validate(dep.spec)
    deadline = deps.as_aware(dep.phase_deadline)
    if claim.phase == Phase.PENDING:  # the deadline bounds retries after transient AWS failures
        deadline = utcnow() + timedelta(seconds=spec.thresholds.sync_timeout_s)
        claim = deps.transition(rt.store, claim, Phase.PREPARING, phase_deadline=deadline)
    claims.refresh_lock(rt, dep)
    journal = Journal(rt.store, claim, "prepare")
    facts = dict(dep.facts or {})
    try:
        src = describe_spec(spec)
        problems = topology.problems(spec, src)
        facts.update(source=src.facts(), cost=_estimate(spec, src))
        if problems:
            journal.note("support", "failed", problems=[m for _, m in problems], source=src.identifier)
            _no_go(rt, claim, "; ".join(m for _, m in problems), facts=facts)
            return DONE
        bg, how = _obtain(spec, src, deployment_id)
    except AwsError as e:
        if e.transient and (deadline is None or utcnow() < deadline):
            return Next(wait_s=spec.thresholds.sync_poll_s, detail=str(e))
        journal.note("aws", "failed", error=str(e))
        _no_go(rt, claim, str(e), facts=facts)
        return DONE
    record = {"id": bg["BlueGreenDeploymentIdentifier"], "bg_name": bg.get("BlueGreenDeploymentName"), "how": how,
              "source_arn": bg.get("Source"), "target_arn": bg.get("Target"), "bg_status": bg.get("Status"),
              "created_by": bluegreen.tags(bg).get(bluegreen.TAG_DEPLOYMENT)}
    # One journal row for the support checks that passed and the blue/green deployment obtained.
    journal.note("blue_green", **record, source=src.identifier, engine=f"{src.engine} {src.engine_version}",
                 support="every support check passed")
    deadline = utcnow() + timedelta(seconds=spec.thresholds.sync_timeout_s)
    deps.transition(rt.store, claim, Phase.SYNCING, facts={**facts, "blue_green": record}, phase_deadline=deadline)
    return DONE


def wait_for_sync(rt: Runtime, deployment_id: str) -> Next:
    """SYNCING → VALIDATING when RDS reports the blue/green deployment AVAILABLE (every member too)."""
    claim = claims.claim_in(rt, deployment_id, [Phase.SYNCING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    claims.refresh_lock(rt, dep)
    spec = RdsClusterSpec.model_validate(dep.spec)
    t = spec.thresholds
    bg_id = dep.facts["blue_green"]["id"]
    deadline = deps.as_aware(dep.phase_deadline)
    try:
        bg = bluegreen.describe(spec.region, bg_id)
    except AwsError as e:  # throttling, a network blip: the deadline bounds how long this may last
        if deadline is not None and utcnow() >= deadline:
            _no_go(rt, claim, f"blue/green deployment {bg_id} unreadable at the sync deadline: {e}")
            return DONE
        return Next(wait_s=t.sync_poll_s, detail=str(e))
    journal = Journal(rt.store, claim, "sync")
    if bg is None:
        journal.note("blue_green", "failed", id=bg_id, bg_status="not found")
        _no_go(rt, claim, f"blue/green deployment {bg_id} disappeared before the switchover")
        return DONE
    a = bluegreen.assess(bg)
    if a.state == "ready":
        try:
            described = describe_arn(spec.region, bg["Target"])
            green = Green.of(described)
        except (AwsError, ValueError) as e:
            return Next(wait_s=t.sync_poll_s, detail=f"green not describable yet: {e}")
        untagged = costs.tag_green(spec.region, member_arns(described.arn, [m.identifier for m in described.members]),
                                   dep.batch_id, dep.id, spec.name)
        journal.note("available", id=bg_id, green=green.identifier, cost_tags=untagged or "tagged")
        deps.transition(rt.store, claim, Phase.VALIDATING,
                        facts=facts_with(dep, green=green.facts(),
                                         blue_green={**dep.facts["blue_green"], "bg_status": a.status}),
                        phase_deadline=utcnow() + timedelta(seconds=t.validation_timeout_s))
        return DONE
    if a.state != "waiting":
        journal.note("blue_green", "failed", id=bg_id, bg_status=a.status, reason=a.reason)
        _no_go(rt, claim, a.reason or f"blue/green deployment {bg_id} is {a.status}")
        return DONE
    if deadline is not None and utcnow() >= deadline:
        journal.note("timeout", "failed", id=bg_id, bg_status=a.status)
        _no_go(rt, claim, f"blue/green deployment {bg_id} still {a.status} after "
                                              f"{t.sync_timeout_s:g}s" + (f": {a.reason}" if a.reason else ""))
        return DONE
    return Next(wait_s=t.sync_poll_s, detail=a.status)


def _no_go(rt: Runtime, claim, reason: str, **fields) -> None:
    """NO_GO, after removing the green environment this deployment obtained."""
    on_no_go(rt, deps.get_deployment(rt.store, claim.deployment_id))
    claims.end(rt, claim, Phase.NO_GO, reason, **fields)


def on_no_go(rt: Runtime, dep) -> None:
    """After a NO_GO: delete the green environment this deployment obtained (DeleteTarget=True).

    Only one the deployment recorded as its own; never after a switchover. Never raises: a
    failure is journaled (the cluster lock is released by the caller either way)."""
    bg = (dep.facts or {}).get("blue_green")
    if not bg:
        return
    spec = RdsClusterSpec.model_validate(dep.spec)
    claim = deps.Claim(dep.id, dep.epoch, Phase(dep.phase))
    try:
        current = bluegreen.describe(spec.region, bg["id"])
        if current is None:
            detail, status = {"id": bg["id"], "note": "already gone"}, "skipped"
        elif current.get("Status") == "SWITCHOVER_COMPLETED":
            detail, status = {"id": bg["id"], "note": "switched over: green is production, kept"}, "skipped"
        else:
            bluegreen.delete(spec.region, bg["id"], delete_target=True)
            detail, status = {"id": bg["id"], "green": current.get("Target"), "delete_target": True}, "done"
    except Exception as e:  # noqa: BLE001 — reported, never raised into lifecycle.end
        log.warning("deployment=%s: could not remove blue/green deployment %s: %s", dep.id, bg["id"], e)
        detail, status = {"id": bg["id"], "error": f"{type(e).__name__}: {e}"}, "failed"
    try:
        record_step(rt.store, claim, "cleanup", "delete_green", status, detail)
    except Exception as e:  # noqa: BLE001
        log.warning("deployment=%s: cleanup not journaled: %s", dep.id, e)
