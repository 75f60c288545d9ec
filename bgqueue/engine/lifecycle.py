"""The per-cluster steps of a deployment, as plain functions over the runtime.

Each step claims the deployment in the phase it expects (bumping the fencing epoch), does
its one job, records the outcome with a fenced transition, and says whether it must run
again later (``Next(wait_s=…)``). Steps never sleep: the Celery layer re-enqueues them.
A step that finds the deployment elsewhere (moved on, ended) does nothing.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

from bgqueue.model.errors import BgqueueError, FencedOut
from bgqueue.model.fleet import ClusterSpec, RdsClusterSpec, cluster_spec

AnySpec = ClusterSpec | RdsClusterSpec
from bgqueue.model.phases import TERMINAL, Phase
from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.deployments import Claim
from bgqueue.adapters.store.journal import Journal
from bgqueue.adapters.store.models import utcnow
from bgqueue.engine.mysql.switchover import SwitchPlan, switch_writer
from bgqueue.checks import sync

OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Next:
    """What the task layer does after a step: continue the chain, or run this step again later."""

    wait_s: float | None = None
    detail: str = ""


DONE = Next()


def servers(spec: ClusterSpec) -> tuple[Server, Server]:
    t = spec.thresholds
    return (Server(spec.blue, spec.admin, label="blue", connect_timeout=t.connect_timeout_s, tls=spec.tls),
            Server(spec.green, spec.admin, label="green", connect_timeout=t.connect_timeout_s, tls=spec.tls))


def _spec(dep) -> ClusterSpec:
    return ClusterSpec.model_validate(dep.spec)


def _rds_steps():
    """The rds provider's versions of the steps (RDS Blue/Green Deployments API)."""
    from bgqueue.engine.rds import steps

    return steps


def end(rt: Runtime, claim: Claim, target: Phase, reason: str | None, **fields) -> None:
    """Terminal (or side-exit) transition; releases the cluster lock when the deployment is over."""
    if target == Phase.NO_GO and deps.identity(rt.store, claim.deployment_id).provider == "rds":
        # A green environment may exist already: remove it BEFORE the phase says "over", so that
        # whoever waits for NO_GO finds nothing left behind. (on_no_go never raises.)
        _rds_steps().on_no_go(rt, deps.get_deployment(rt.store, claim.deployment_id))
    deps.transition(rt.store, claim, target, reason=reason, **fields)
    if target in TERMINAL:
        who = deps.identity(rt.store, claim.deployment_id)
        rt.locks.release(who.cluster, who.batch_id)


def refresh_lock(rt: Runtime, dep) -> None:
    rt.locks.refresh(dep.cluster, dep.batch_id, rt.settings.lock_ttl_s)


def claim_in(rt: Runtime, deployment_id: str, phases: list[Phase]) -> Claim | None:
    return deps.claim(rt.store, deployment_id, OWNER, phases)


def fail(rt: Runtime, deployment_id: str, reason: str) -> bool:
    """Record FAILED (needs a human) from whatever non-terminal phase the deployment is in."""
    live = [p for p in Phase if p not in TERMINAL]
    claim = deps.claim(rt.store, deployment_id, OWNER, live)
    if claim is None:
        return False
    end(rt, claim, Phase.FAILED, reason)
    return True


def prepare(rt: Runtime, deployment_id: str) -> Next:
    """PENDING → PREPARING → SYNCING: reach both servers, learn what they are, check the topology."""
    if deps.identity(rt.store, deployment_id).provider == "rds":
        return _rds_steps().prepare(rt, deployment_id)
    claim = deps.claim(rt.store, deployment_id, OWNER, [Phase.PENDING, Phase.PREPARING])
    if claim is None:
        return DONE
    if claim.phase == Phase.PENDING:  # PREPARING: an earlier attempt died here (it changes nothing)
        claim = deps.transition(rt.store, claim, Phase.PREPARING)
    dep = deps.get_deployment(rt.store, deployment_id)
    refresh_lock(rt, dep)
    spec = _spec(dep)
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
        journal.note("topology", "done" if not problems else "failed", problems=problems, route_version=route.version)
        if problems:
            end(rt, claim, Phase.NO_GO, "; ".join(problems), facts=facts)
            return DONE
        deadline = utcnow() + timedelta(seconds=spec.thresholds.sync_timeout_s)
        deps.transition(rt.store, claim, Phase.SYNCING, facts=facts, phase_deadline=deadline)
        return DONE
    except FencedOut:
        raise
    except BgqueueError as e:
        end(rt, claim, Phase.NO_GO, str(e))
        return DONE
    finally:
        blue.close()
        green.close()


def wait_for_sync(rt: Runtime, deployment_id: str) -> Next:
    """SYNCING → VALIDATING once green's lag is below the threshold; NO_GO at the deadline."""
    if deps.identity(rt.store, deployment_id).provider == "rds":
        return _rds_steps().wait_for_sync(rt, deployment_id)
    claim = deps.claim(rt.store, deployment_id, OWNER, [Phase.SYNCING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    refresh_lock(rt, dep)
    spec = _spec(dep)
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
        end(rt, claim, Phase.NO_GO, f"green not in sync after {t.sync_timeout_s:g}s: {why}")
        return DONE
    return Next(wait_s=t.sync_poll_s, detail=f"lag={state.lag_s} behind={state.transactions_behind}")


def switch(rt: Runtime, deployment_id: str) -> Next:
    """READY → SWITCHING → CDC_MIGRATING, or SWITCHOVER_FAILED (fence undone) or FAILED (needs a human).

    Picked up in SWITCHING (a worker died mid-procedure): resume, observing the servers first.
    """
    if deps.identity(rt.store, deployment_id).provider == "rds":
        return _rds_steps().switch(rt, deployment_id)
    claim = deps.claim(rt.store, deployment_id, OWNER, [Phase.READY, Phase.SWITCHING])
    if claim is None:
        return DONE
    resume = claim.phase == Phase.SWITCHING
    if not resume:
        claim = deps.transition(rt.store, claim, Phase.SWITCHING, switch_started_at=utcnow())
    dep = deps.get_deployment(rt.store, deployment_id)
    refresh_lock(rt, dep)
    spec = _spec(dep)
    blue, green = servers(spec)
    journal = Journal(rt.store, claim, "switchover")
    try:
        blue.connect()
        green.connect()
        plan = SwitchPlan(cluster=spec, old=blue, new=green, repl=spec.replication)
        result = switch_writer(plan, rt.store, journal, rt.routing, spec.thresholds.catchup_timeout_s, resume=resume)
    except FencedOut:
        raise
    except BgqueueError as e:  # could not even connect: nothing was changed on this attempt
        if resume:
            raise  # the task layer tries again (bounded): the servers may be back in a moment
        end(rt, claim, Phase.SWITCHOVER_FAILED, f"not started: {e}")
        return DONE
    finally:
        blue.close()
        green.close()
    timing = dict(switch_ended_at=utcnow(), switch_duration_ms=result.duration_ms,
                  writes_blocked_ms=result.writes_blocked_ms)
    if result.switched:
        deps.transition(rt.store, claim, Phase.CDC_MIGRATING, reason=result.reason or None, **timing)
    elif result.undone:
        end(rt, claim, Phase.SWITCHOVER_FAILED, result.reason, **timing)
    else:
        end(rt, claim, Phase.FAILED, result.reason, **timing)
    return DONE


def move_pipelines(rt: Runtime, claim: Claim, spec: AnySpec, kind: str) -> Next:
    """Move the cluster's CDC pipelines to the new primary from the latest ``kind`` checkpoint.
    Re-entrant: returns a wait while a pipeline is still moving."""
    journal = Journal(rt.store, claim, "cdc")
    if not spec.pipelines:
        journal.note(f"{kind}_pipelines", "skipped", pipelines=0)
        return DONE
    from bgqueue.adapters.cdc.migration import migrate_pipelines
    from bgqueue.adapters.store.journal import latest_checkpoint

    checkpoint = latest_checkpoint(rt.store, claim.deployment_id, kind)
    if checkpoint is None:
        journal.note(f"{kind}_pipelines", "failed", reason=f"no {kind} checkpoint recorded")
        return DONE
    progress = migrate_pipelines(spec, checkpoint, journal, None, redis=rt.redis)
    if not progress.done:
        return Next(wait_s=progress.wait_s or 0.5, detail="CDC pipelines moving")
    # Green is the writer already: a CDC problem is recorded (and watched by monitoring), not undone.
    return DONE


def migrate_cdc(rt: Runtime, deployment_id: str) -> Next:
    """CDC_MIGRATING → MONITORING: move the cluster's CDC pipelines to the new primary."""
    claim = deps.claim(rt.store, deployment_id, OWNER, [Phase.CDC_MIGRATING])
    if claim is None:
        return DONE
    dep = deps.claimed(rt.store, claim)
    spec = cluster_spec(dep.spec)
    nxt = move_pipelines(rt, claim, spec, "switchover")
    if nxt.wait_s:
        return nxt
    deps.transition(rt.store, claim, Phase.MONITORING,
                    phase_deadline=utcnow() + timedelta(seconds=spec.thresholds.monitor_window_s))
    return DONE
