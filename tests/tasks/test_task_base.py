"""What the one task decorator does with errors: resume mid-procedure, retry transient ones with
their own count (apart from waits), record FAILED for the rest. The wrapped functions are called
directly with a minimal task stand-in: what is under test is the decision, not Celery."""
from __future__ import annotations

import pymysql
import pytest
import redis.exceptions
from celery.exceptions import Retry
from sqlalchemy import update

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import Deployment
from bgqueue.model.phases import Phase
from tasks.base import MAX_RESUME_ATTEMPTS, MAX_TRANSIENT_RETRIES, guarded


class _Task:
    """Stands in for the bound Celery task: records what retry() was asked."""

    def __init__(self):
        self.retried = None

    def retry(self, countdown=None, kwargs=None):
        self.retried = {"countdown": countdown, "kwargs": kwargs}
        return Retry()


def _deployment(runtime, phase: Phase) -> str:
    _, ids = deps.create_batch(runtime.store, fleet_name="t", fleet_path="/t", fleet_text="",
                               clusters=[{"name": "tb", "provider": "mysql"}])
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == ids["tb"]).values(phase=phase))
    return ids["tb"]


def _raising(exc):
    @guarded("probe")
    def fn(self, deployment_id):
        raise exc
    return fn


def test_mid_switchover_any_error_is_resumed_not_failed(runtime):
    dep = _deployment(runtime, Phase.SWITCHING)
    task = _Task()
    with pytest.raises(Retry):
        _raising(pymysql.err.OperationalError(2013, "Lost connection"))(task, dep)
    assert task.retried["kwargs"] == {"errors": 1}
    with pytest.raises(Retry):
        _raising(ValueError("a bug"))(task, dep, errors=MAX_RESUME_ATTEMPTS - 1)
    assert deps.get_deployment(runtime.store, dep).phase == Phase.SWITCHING
    _raising(ValueError("a bug"))(task, dep, errors=MAX_RESUME_ATTEMPTS)  # a human's turn now
    d = deps.get_deployment(runtime.store, dep)
    assert d.phase == Phase.FAILED and "after 25 attempts" in d.reason


def test_transient_errors_retry_with_their_own_count_then_fail(runtime):
    dep = _deployment(runtime, Phase.MONITORING)
    task = _Task()
    with pytest.raises(Retry):
        _raising(redis.exceptions.ConnectionError("blip"))(task, dep)  # however many waits came before
    assert task.retried["kwargs"] == {"errors": 1}
    _raising(redis.exceptions.ConnectionError("blip"))(task, dep, errors=MAX_TRANSIENT_RETRIES)
    assert deps.get_deployment(runtime.store, dep).phase == Phase.FAILED


def test_a_bug_outside_a_procedure_is_recorded_as_failed(runtime):
    dep = _deployment(runtime, Phase.PREPARING)
    _raising(KeyError("oops"))(_Task(), dep)
    d = deps.get_deployment(runtime.store, dep)
    assert d.phase == Phase.FAILED and d.reason == "probe: KeyError: 'oops'"


def test_only_the_last_link_of_a_cluster_chain_stores_its_result():
    """The batch chord reads the last link's result; the others pass the id on in their messages."""
    from tasks.batch import cluster_chain

    links = cluster_chain("dep-1").tasks
    assert [t.task for t in links][-1] == "bgqueue.deployment.monitor"
    assert [bool(t.options.get("ignore_result")) for t in links] == [True] * (len(links) - 1) + [False]
    assert {tuple(t.args) for t in links} == {("dep-1",)}


def _claim_then_raise(runtime, exc, *, taken_over: bool):
    """A task that claims the deployment, then (``taken_over``) another worker claims it meanwhile
    (as a takeover does, from another process: the row's epoch and owner change), then it raises."""
    from bgqueue.engine import claims

    @guarded("probe")
    def fn(self, deployment_id):
        assert claims.claim_in(runtime, deployment_id, [Phase.SWITCHING, Phase.MONITORING]) is not None
        if taken_over:
            with runtime.store.session() as s:
                s.execute(update(Deployment).where(Deployment.id == deployment_id)
                          .values(epoch=Deployment.epoch + 1, owner="other-host:4242"))
        raise exc
    return fn


@pytest.mark.parametrize("phase", [Phase.SWITCHING, Phase.MONITORING])
def test_a_task_that_lost_the_deployment_records_nothing_and_retries_nothing(runtime, phase):
    """A worker paused mid-switchover wakes up after a takeover: its next statement fails on the
    session the takeover ended. That is the fence working: the deployment, now another worker's
    (in MONITORING by then, or still SWITCHING), must not be FAILED or re-driven by the old worker
    (a chaos round saw exactly this: 'switch: OperationalError: (2013, Lost connection …)' → FAILED)."""
    dep = _deployment(runtime, phase)
    task = _Task()
    _claim_then_raise(runtime, pymysql.err.OperationalError(2013, "Lost connection"), taken_over=True)(task, dep)
    d = deps.get_deployment(runtime.store, dep)
    assert d.phase == phase and d.owner == "other-host:4242" and task.retried is None


def test_a_task_that_still_owns_the_deployment_fails_it_as_before(runtime):
    dep = _deployment(runtime, Phase.MONITORING)
    _claim_then_raise(runtime, KeyError("oops"), taken_over=False)(_Task(), dep)
    d = deps.get_deployment(runtime.store, dep)
    assert d.phase == Phase.FAILED and d.reason == "probe: KeyError: 'oops'"
