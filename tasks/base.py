"""The one way tasks are declared: dotted name, acks, time limits, retries, logging.

``bgqueue_task`` fixes the options every task shares. ``deployment_task`` wraps one
``bgqueue.lifecycle`` step: it passes only the id, calls the step, and either returns (the
chain goes on) or re-enqueues itself with a countdown when the step must wait. No task sleeps.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable

import redis.exceptions
import sqlalchemy.exc

from bgqueue import lifecycle, logs
from bgqueue.errors import FencedOut
from bgqueue.lifecycle import Next
from bgqueue.runtime import Runtime, get_runtime
from tasks.application import app

log = logging.getLogger("bgqueue.tasks")

# Worth another try after a short wait; anything else is a bug or a server problem that the
# step itself already turned into a recorded outcome.
TRANSIENT = (sqlalchemy.exc.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
MAX_TRANSIENT_RETRIES = 5

Step = Callable[[Runtime, str], Next]


_SHOWN_MAX = 64  # longer strings are not ids


def _shown(value):
    """An argument as Flower and the broker's task-sent events may show it: ids and small plain
    values as they are; anything else (a chord's results, a dict) as its kind and size only."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= _SHOWN_MAX else _Hidden(f"<str of {len(value)} chars>")
    if isinstance(value, (list, tuple)) and len(value) <= 16 and all(
            isinstance(v, str) and len(v) <= _SHOWN_MAX for v in value):
        return value  # a chord body's list of deployment ids
    size = f" of {len(value)}" if hasattr(value, "__len__") else ""
    return _Hidden(f"<{type(value).__name__}{size}>")


class _Hidden(str):
    def __repr__(self) -> str:
        return str(self)


class BgqueueTask(app.Task):
    """Every bgqueue task: its ``argsrepr``/``kwargsrepr`` (what Flower shows) carry ids only, also
    for chord callbacks, whose results are prepended to their arguments by the worker."""

    def apply_async(self, args=None, kwargs=None, **options):
        options.setdefault("argsrepr", repr(tuple(_shown(a) for a in (args or ()))))
        options.setdefault("kwargsrepr", repr({k: _shown(v) for k, v in (kwargs or {}).items()}))
        return super().apply_async(args, kwargs, **options)


def bgqueue_task(name: str, *, time_limit: int = 120, **options):
    """``@app.task`` with the project's fixed options: late acks, explicit limits, unlimited
    countdown re-enqueues (each step bounds its own waiting by a deadline in the store)."""
    return app.task(name=name, base=BgqueueTask, acks_late=True, max_retries=None, time_limit=time_limit,
                    soft_time_limit=max(10, time_limit - 15), **options)


def _bind_cluster(deployment_id: str) -> None:
    """Put the cluster and batch ids on every log line of this task."""
    try:
        from bgqueue.store import deployments as deps

        who = deps.identity(get_runtime().store, deployment_id)
        logs.bind(cluster=who.cluster, batch=who.batch_id)
    except Exception:  # logging context must never fail a task
        pass


def guarded(name: str):
    """Turn what escapes a deployment task into a recorded outcome: FencedOut stops quietly,
    transient errors retry a few times, anything else marks the deployment FAILED (known state)."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(self, *args):
            deployment_id = args[-1]
            with logs.log_context(deployment=deployment_id, task=name):
                return _run(self, args, deployment_id)

        def _run(self, args, deployment_id):
            try:
                _bind_cluster(deployment_id)
                return fn(self, *args)
            except FencedOut as e:
                log.info("deployment=%s task=%s fenced out: %s", deployment_id, name, e)
                return deployment_id
            except TRANSIENT as e:
                attempt = self.request.retries or 0
                if attempt < MAX_TRANSIENT_RETRIES:
                    log.warning("deployment=%s task=%s transient error, retry %d: %s", deployment_id, name,
                                attempt + 1, e)
                    raise self.retry(countdown=min(2 ** attempt, 30))
                lifecycle.fail(get_runtime(), deployment_id, f"{name}: gave up after {attempt} transient errors: {e}")
                return deployment_id
        return run

    return decorate


def deployment_task(name: str, *, time_limit: int = 120) -> Callable[[Step], object]:
    """Declare ``bgqueue.deployment.<name>`` around a lifecycle step ``step(runtime, deployment_id)``."""

    def decorate(step: Step):
        @bgqueue_task(f"bgqueue.deployment.{name}", time_limit=time_limit, bind=True)
        @guarded(name)
        def run(self, deployment_id: str) -> str:
            rt = get_runtime()
            try:
                nxt = step(rt, deployment_id)
            except (FencedOut, *TRANSIENT):
                raise
            except Exception as e:  # a bug: leave the deployment in a known, recorded state
                log.exception("deployment=%s step=%s failed", deployment_id, name)
                lifecycle.fail(rt, deployment_id, f"{name}: unexpected {type(e).__name__}: {e}")
                return deployment_id
            if nxt.wait_s:
                countdown = min(nxt.wait_s, rt.settings.max_countdown_s)
                log.debug("deployment=%s step=%s waits %.1fs (%s)", deployment_id, name, countdown, nxt.detail)
                raise self.retry(countdown=countdown)
            return deployment_id

        run.step = step  # type: ignore[attr-defined]
        return run

    return decorate
