"""Validation: a round of checks (results, not exceptions, carry failures) → decide.

A round with a heavy check (a chunked checksum runs for minutes) is a chord: one task per
check, spread over the workers, and ``decide`` as its body; on WAIT the decide task replaces
itself with the next round (its header delayed by the countdown). A round of light checks only
(a few SQL, AWS or store reads each: the rds provider's) runs in the ``validate`` task itself:
a chord's messages and bookkeeping would cost more than the checks, and a fleet of 120 clusters
would send 6 more tasks per cluster and round. On WAIT ``validate`` re-enqueues itself. Either
way the chain goes on to the switchover only after GO.
"""
from __future__ import annotations

import time

from celery import chord

from bgqueue.adapters.runtime import get_runtime
from bgqueue.engine import validation
from bgqueue.engine.decision import WAIT
from tasks.base import bgqueue_task, guarded

# A checksum of large critical tables is the longest check.
CHECK_TIME_LIMIT = 1800
# Checks that may run for minutes: a round with one of them is a chord.
HEAVY = frozenset({"checksum", "query_replay"})
# A round of light checks in the validate task: each is bounded by its connect/read timeouts (an
# AWS call with its retries: ~100 s at worst). Checks not started within the budget are not run
# (retryable errors), so the round is always decided well inside the task's limit.
LIGHT_ROUND_BUDGET_S = 240
LIGHT_ROUND_TIME_LIMIT = 600


@bgqueue_task("bgqueue.validation.check", time_limit=CHECK_TIME_LIMIT)
def run_check(deployment_id: str, name: str) -> dict:
    return validation.run_named_check(get_runtime(), deployment_id, name)


def validation_round(deployment_id: str, names: list[str], countdown: float = 0.0):
    header = [run_check.si(deployment_id, n).set(countdown=countdown) if countdown else run_check.si(deployment_id, n)
              for n in names]
    return chord(header, decide.s(deployment_id))


@bgqueue_task("bgqueue.validation.decide", time_limit=60, bind=True)
@guarded("decide")
def decide(self, results: list[dict], deployment_id: str) -> str:
    rt = get_runtime()
    decision = validation.conclude(rt, deployment_id, results)
    if decision is not None and decision.verdict == WAIT:
        names = validation.begin(rt, deployment_id)
        if names:
            countdown = min(decision.retry_in_s or 1.0, rt.settings.max_countdown_s)
            raise self.replace(validation_round(deployment_id, names, countdown=countdown))
    return deployment_id


@bgqueue_task("bgqueue.deployment.validate", time_limit=LIGHT_ROUND_TIME_LIMIT, bind=True)
@guarded("validate")
def validate(self, deployment_id: str) -> str:
    rt = get_runtime()
    names = validation.begin(rt, deployment_id)
    if not names:
        return deployment_id  # not VALIDATING (NO_GO earlier, or already decided): the chain goes on
    if HEAVY.intersection(names):
        raise self.replace(validation_round(deployment_id, names))
    results = validation.run_named_checks(rt, deployment_id, names, deadline=time.monotonic() + LIGHT_ROUND_BUDGET_S)
    decision = validation.conclude(rt, deployment_id, results)
    if decision is not None and decision.verdict == WAIT:
        raise self.retry(countdown=min(decision.retry_in_s or 1.0, rt.settings.max_countdown_s), kwargs={})
    return deployment_id
