"""The mysql provider's steps of the per-cluster chain: servers bgqueue reaches by SQL.

    prepare        PENDING → PREPARING → SYNCING: reach both servers, learn what they are, check
                   the topology and the route (nothing is changed)
    wait_for_sync  SYNCING → VALIDATING once green's lag is under the threshold; NO_GO at the deadline
    switch         READY → SWITCHING → CDC_MIGRATING, or SWITCHOVER_FAILED (fence undone), or FAILED;
                   picked up in SWITCHING it resumes by observing the servers (``switchover``)

Each step claims the deployment in the phase it expects, does its one job, records the outcome
with a fenced transition, and says whether it must run again later (``Next(wait_s=…)``).
"""
from __future__ import annotations

from datetime import timedelta

from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow
from bgqueue.checks import sync
from bgqueue.engine import claims
from bgqueue.engine.mysql.switchover import SwitchPlan, hold_procedure_locks, switch_writer
from bgqueue.model.errors import BgqueueError, FencedOut
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.outcomes import DONE, Next
from bgqueue.model.phases import Phase


def prepare(rt: Runtime, deployment_id: str) -> Next:
    """PENDING → PREPARING → SYNCING: reach both servers, learn what they are, check the topology."""
    claim = claims.claim_in(rt, deployment_id, [Phase.PENDING, Phase.PREPARING])
    if claim is None:
        return DONE
    if claim.phase == Phase.PENDING:  # PREPARING: an earlier attempt died here (it changes nothing)
        claim = deps.transition(rt.store, claim, Phase.PREPARING)
    dep = deps.get_deployment(rt.store, deployment_id)
    claims.refresh_lock(rt, dep)
    spec = ClusterSpec.model_validate(dep.spec)
    journal = Journal(rt.store, claim, "prepare")
    blue, green = servers(spec)
    try:
        with journal.step("observe") as f:
            blue.connect()
            green.connect()
            facts = {"blue": {"version": blue.version(), "flavour": blue.flavour, "server_id": blue.server_id(),
                              "read_only": blue.is_read_only()},
                     "green": {"version": green.version(), "flavour": green.flavour,
                               "server_id": green.server_id(), "read_only": green.is_read_only()}}
            f.update(facts)
        problems = []
        if facts["blue"]["read_only"]:
            problems.append(f"blue {spec.blue} is read-only: it is not the writer")
        state = sync.assess(blue, green, spec.blue)
        problems += state.problems
        route = rt.routing.get(spec.name)
        if route is None:
            route = rt.routing.init(spec.name, spec.blue.host, spec.blue.port, reason=f"init by {deployment_id}")
        elif (route.host, route.port) != (spec.blue.host, spec.blue.port):
            problems.append(f"routing names {route.host}:{route.port} as the writer, not blue {spec.blue}")
        if (route.host, route.port) == (spec.blue.host, spec.blue.port):
            # The allow-list clients without their own accept routes from: this cluster's two servers.
            rt.routing.allow(spec.name, [spec.blue, spec.green])
        journal.note("topology", "done" if not problems else "failed", problems=problems, route_version=route.version)
        if problems:
            claims.end(rt, claim, Phase.NO_GO, "; ".join(problems), facts=facts)
            return DONE
        deadline = utcnow() + timedelta(seconds=spec.thresholds.sync_timeout_s)
        deps.transition(rt.store, claim, Phase.SYNCING, facts=facts, phase_deadline=deadline)
        return DONE
    except FencedOut:
        raise
    except BgqueueError as e:
        claims.end(rt, claim, Phase.NO_GO, str(e))
        return DONE
    finally:
        blue.close()
        green.close()


def wait_for_sync(rt: Runtime, deployment_id: str) -> Next:
    """SYNCING → VALIDATING once green's lag is below the threshold; NO_GO at the deadline."""
    claim = claims.claim_in(rt, deployment_id, [Phase.SYNCING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    claims.refresh_lock(rt, dep)
    spec = ClusterSpec.model_validate(dep.spec)
    blue, green = servers(spec)
    try:
        state = sync.assess(blue, green, spec.blue)
    except BgqueueError as e:
        state = sync.SyncState(False, None, None, [str(e)])
    finally:
        blue.close()
        green.close()
    t = spec.thresholds
    if state.in_sync(t.max_lag_s):
        Journal(rt.store, claim, "sync").note("in_sync", **state.as_dict())
        deps.transition(rt.store, claim, Phase.VALIDATING,
                        phase_deadline=utcnow() + timedelta(seconds=t.validation_timeout_s))
        return DONE
    deadline = deps.as_aware(dep.phase_deadline)
    if deadline is not None and utcnow() >= deadline:
        Journal(rt.store, claim, "sync").note("timeout", "failed", **state.as_dict())
        why = "; ".join(state.problems) or f"lag {state.lag_s}s above {t.max_lag_s}s"
        claims.end(rt, claim, Phase.NO_GO, f"green not in sync after {t.sync_timeout_s:g}s: {why}")
        return DONE
    return Next(wait_s=t.sync_poll_s, detail=f"lag={state.lag_s} behind={state.transactions_behind}")


def switch(rt: Runtime, deployment_id: str) -> Next:
    """READY → SWITCHING → CDC_MIGRATING, or SWITCHOVER_FAILED (fence undone) or FAILED (needs a human).

    Picked up in SWITCHING (a worker died mid-procedure): resume, observing the servers first.
    """
    claim = claims.claim_in(rt, deployment_id, [Phase.READY, Phase.SWITCHING])
    if claim is None:
        return DONE
    resume = claim.phase == Phase.SWITCHING
    if not resume:
        claim = deps.transition(rt.store, claim, Phase.SWITCHING, switch_started_at=utcnow())
    dep = deps.get_deployment(rt.store, deployment_id)
    claims.refresh_lock(rt, dep)
    spec = ClusterSpec.model_validate(dep.spec)
    blue, green = servers(spec)
    journal = Journal(rt.store, claim, "switchover")
    try:
        hold_procedure_locks(spec.name, blue, green)
        plan = SwitchPlan(cluster=spec, old=blue, new=green, repl=spec.replication)
        result = switch_writer(plan, rt.store, journal, rt.routing, spec.thresholds.catchup_timeout_s, resume=resume)
    except FencedOut:
        raise
    except BgqueueError as e:  # could not even connect: nothing was changed on this attempt
        if resume:
            raise  # the task layer tries again (bounded): the servers may be back in a moment
        claims.end(rt, claim, Phase.SWITCHOVER_FAILED, f"not started: {e}")
        return DONE
    finally:
        blue.close()
        green.close()
    timing = dict(switch_ended_at=utcnow(), switch_duration_ms=result.duration_ms,
                  writes_blocked_ms=result.writes_blocked_ms)
    if result.switched:
        deps.transition(rt.store, claim, Phase.CDC_MIGRATING, reason=result.reason or None, **timing)
    elif result.undone:
        claims.end(rt, claim, Phase.SWITCHOVER_FAILED, result.reason, **timing)
    else:
        claims.end(rt, claim, Phase.FAILED, result.reason, **timing)
    return DONE
