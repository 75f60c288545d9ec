"""The one way tasks are declared: dotted name, acks, time limits, retries, logging.

``bgqueue_task`` fixes the options every task shares. ``deployment_task`` wraps one
``bgqueue.engine.lifecycle`` step: it passes only the id, calls the step, and either returns (the
chain goes on) or re-enqueues itself with a countdown when the step must wait. No task sleeps.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import redis.exceptions
import sqlalchemy.exc
from celery.exceptions import Ignore, Retry

from bgqueue.adapters import logs
from bgqueue.adapters.runtime import Runtime, get_runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.engine import claims
from bgqueue.model.errors import FencedOut
from bgqueue.model.outcomes import Next
from bgqueue.model.phases import SERVER_CHANGING, Phase
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
        from bgqueue.adapters.store import deployments as deps

        who = deps.identity(get_runtime().store, deployment_id)
        logs.bind(cluster=who.cluster, batch=who.batch_id)
    except Exception:  # logging context must never fail a task
        pass


def _heartbeat(deployment_id: str) -> None:
    """A task works on this deployment now: the watchdog's owner-liveness mark (never fails a task)."""
    try:
        deps.heartbeat(get_runtime().store, deployment_id)
    except Exception as e:
        log.debug("heartbeat of %s not recorded: %s", deployment_id, e)


# Mid-procedure (SWITCHING, ROLLING_BACK) an error is never the end: the next attempt observes
# the servers and finishes or undoes. Only after this many attempts (~10 min) does a human get it.
MAX_RESUME_ATTEMPTS = 25


_MISSING = "missing"


def _phase_of(deployment_id: str) -> Phase | str | None:
    """The deployment's phase; ``_MISSING`` when there is no such deployment; None when the
    store itself cannot be read (then the error is treated like a transient one)."""
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.model.errors import BadInput

    try:
        return Phase(deps.get_deployment(get_runtime().store, deployment_id).phase)
    except BadInput:
        return _MISSING
    except Exception:
        return None


def _epoch_of(deployment_id: str) -> int | None:
    try:
        return int(deps.get_deployment(get_runtime().store, deployment_id).epoch)
    except Exception:
        return None


def _lost(deployment_id: str, baseline: int | None) -> bool:
    """Has another worker claimed the deployment since this task began (or since its own last claim)?"""
    if baseline is None:
        return False
    mine = deps.claimed_here(deployment_id)
    expected = mine if mine is not None and mine > baseline else baseline
    now = _epoch_of(deployment_id)
    return now is not None and now > expected


def guarded(name: str):
    """Turn what escapes a deployment task into a recorded outcome. FencedOut stops quietly.
    In a server-changing phase any error re-enqueues the task (it resumes by observing the
    servers). Elsewhere transient errors (store, Redis) retry a few times and anything else
    marks the deployment FAILED (a known state). Error attempts are counted in the ``errors``
    keyword, apart from the re-enqueues of waiting steps (Celery's retries counts both)."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(self, *args, errors: int = 0):
            deployment_id = args[-1]
            with logs.log_context(deployment=deployment_id, task=name):
                return _run(self, args, deployment_id, errors)

        def _run(self, args, deployment_id, errors):
            baseline = None
            try:
                _bind_cluster(deployment_id)
                _heartbeat(deployment_id)
                baseline = _epoch_of(deployment_id)
                return fn(self, *args)
            except (Retry, Ignore):
                raise
            except FencedOut as e:
                log.info("task=%s fenced out: %s", name, e)
                return deployment_id
            except Exception as e:
                phase = _phase_of(deployment_id)
                if phase == _MISSING:  # nothing to record it on: the task fails, visibly
                    log.error("task=%s: no deployment %s: %s: %s", name, deployment_id, type(e).__name__, e)
                    raise
                if _lost(deployment_id, baseline):
                    # Claimed by another worker since this task began (it was paused, cut off, its
                    # sessions were ended by the takeover): the error is the fence working, not the
                    # deployment's failure. The owner goes on; nothing is recorded or retried.
                    log.warning("task=%s lost the deployment to another worker; records nothing: %s: %s", name,
                                type(e).__name__, e)
                    return deployment_id
                changing = phase is None or phase in SERVER_CHANGING
                limit = MAX_RESUME_ATTEMPTS if changing else MAX_TRANSIENT_RETRIES
                if (changing or isinstance(e, TRANSIENT)) and errors < limit:
                    log.warning("task=%s error in %s, attempt %d of %d, again shortly: %s: %s", name, phase,
                                errors + 1, limit, type(e).__name__, e)
                    raise self.retry(countdown=min(2 ** errors, 30), kwargs={"errors": errors + 1}) from e
                log.exception("task=%s failed in %s", name, phase)
                claims.fail(get_runtime(), deployment_id, f"{name}: {type(e).__name__}: {e}"
                               + (f" (after {errors} attempts)" if errors else ""))
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
            nxt = step(rt, deployment_id)
            if nxt.wait_s:
                countdown = min(nxt.wait_s, rt.settings.max_countdown_s)
                log.debug("step=%s waits %.1fs (%s)", name, countdown, nxt.detail)
                raise self.retry(countdown=countdown, kwargs={})  # a wait is not an error: reset the count
            return deployment_id

        run.step = step  # type: ignore[attr-defined]
        return run

    return decorate
