"""Flower as the Procfile runs it (``celery -A tasks flower --conf=config/flower.py``), a real process
against the session's broker and real worker processes: authentication required by default,
credentials from the environment only, workers listed, task arguments shown as ids."""
from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bgqueue.sandbox.ports import free_port
from tests.fixtures.bgq import REPO

FLOWER = [sys.executable, "-m", "celery", "-A", "tasks", "flower", "--conf=config/flower.py"]
AUTH_VARS = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER", "FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET",
             "FLOWER_OAUTH2_REDIRECT_URI", "FLOWER_UNAUTHENTICATED_API", "BGQUEUE_FLOWER_ALLOW_NO_AUTH")


def _env(bgq_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in bgq_env.items() if k not in AUTH_VARS}
    env.update(extra)
    return env


def _get(url: str, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextmanager
def flower(env: dict[str, str], tmp_path, *args: str) -> Iterator[str]:
    """A Flower process on a free loopback port; yields its base URL once /healthcheck answers."""
    port = free_port()
    log = tmp_path / f"flower-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*FLOWER, f"--port={port}", *args], env=env, cwd=str(REPO), stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"flower exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if _get(f"{base}/healthcheck", timeout=1)[0] == 200:  # the one URL without auth
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"flower did not answer within 30s:\n{log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _refused(*cases: tuple[dict[str, str], tuple[str, ...]]) -> list[str]:
    """Each Flower (started together: each takes ~2.5 s to load) must exit by itself with 2, before
    serving anything; returns their stderr, in order."""
    procs = [subprocess.Popen([*FLOWER, f"--port={free_port()}", *args], env=env, cwd=str(REPO), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for env, args in cases]
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("flower started without authentication")
        assert proc.returncode == 2, (proc.returncode, out, err)
        outs.append(err)
    return outs


def test_flower_refuses_to_start_without_authentication(bgq_env):
    secret = secrets.token_urlsafe(16)
    none, short, half, argv = _refused(
        (_env(bgq_env), ()),
        (_env(bgq_env, FLOWER_BASIC_AUTH="admin:short"), ()),
        (_env(bgq_env, FLOWER_AUTH=".*@example\\.com"), ()),
        (_env(bgq_env, FLOWER_BASIC_AUTH=f"admin:{secret}"), (f"--basic_auth=other:{secret}",)))
    assert "no authentication is set: export FLOWER_BASIC_AUTH=user:password" in none
    assert "password of at least 12 characters" in short
    assert "Flower OAuth is half configured" in half and "FLOWER_OAUTH2_KEY" in half
    assert "--basic_auth on the command line is visible to every user" in argv and secret not in argv


def test_flower_requires_credentials_lists_workers_and_shows_ids_only(bgq_env, redis_url, celery_workers, tmp_path):
    user, password = "ops", secrets.token_urlsafe(18)
    with flower(_env(bgq_env, FLOWER_BASIC_AUTH=f"{user}:{password}"), tmp_path) as base:
        assert _get(f"{base}/api/workers")[0] == 401
        assert _get(f"{base}/api/workers", auth=(user, password + "x"))[0] == 401
        assert _get(f"{base}/", auth=None)[0] == 401  # the UI too, not only the API
        status, body = _get(f"{base}/api/workers?refresh=1", auth=(user, password))
        assert status == 200, body
        assert {w.nodename for w in celery_workers} <= set(json.loads(body)), body

        # A real task through a real worker: what Flower shows as its arguments is the id it carries.
        from tasks.batch import start_batch

        _wait_until_flower_receives_events(base, (user, password))
        batch_id = str(uuid.uuid4())  # no such batch: the task finds nothing to start and returns 0
        task_id = start_batch.apply_async((batch_id,), ignore_result=True).id
        deadline = time.monotonic() + 30
        while True:
            status, body = _get(f"{base}/api/task/info/{task_id}", auth=(user, password))
            info = json.loads(body) if status == 200 else {}
            if info.get("state") == "SUCCESS":
                break
            assert time.monotonic() < deadline, (status, body)
            time.sleep(0.3)
        assert info["args"] == repr((batch_id,)) and info["kwargs"] == "{}"
        assert info["name"] == "bgqueue.batch.start" and info["worker"] in {w.nodename for w in celery_workers}
        tasks = json.loads(_get(f"{base}/api/tasks", auth=(user, password))[1])
        assert task_id in tasks
    logs = list(tmp_path.glob("flower-*.log"))
    assert logs and all(password not in log.read_text() for log in logs)  # Flower never logs the credentials


def test_flower_opt_out_starts_but_its_api_stays_closed(bgq_env, tmp_path):
    with flower(_env(bgq_env, BGQUEUE_FLOWER_ALLOW_NO_AUTH="1"), tmp_path) as base:
        status, body = _get(f"{base}/api/workers")
        assert status == 401 and b"FLOWER_UNAUTHENTICATED_API" in body


def _wait_until_flower_receives_events(base: str, auth, timeout: float = 60) -> None:
    """Flower answers HTTP before its event receiver is consuming: a task sent earlier would
    never be known to it. Send harmless tasks until Flower has seen one."""
    from tasks.batch import start_batch

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = start_batch.apply_async((str(uuid.uuid4()),), ignore_result=True).id  # no such batch: a no-op
        for _ in range(10):
            if _get(f"{base}/api/task/info/{probe}", auth=auth)[0] == 200:
                return
            time.sleep(0.3)
    raise AssertionError("Flower never received a task event")


def test_chord_results_are_not_shown_as_task_arguments(bgq_env, redis_url, celery_workers, tmp_path):
    """A chord callback gets its header's results prepended to its arguments: Flower must still
    show ids only (BgqueueTask's argsrepr), never the results themselves."""
    from tasks.validation import validation_round

    user, password = "ops", secrets.token_urlsafe(18)
    dep_id = str(uuid.uuid4())  # no such deployment: the check returns an error result, decide finds nothing
    with flower(_env(bgq_env, FLOWER_BASIC_AUTH=f"{user}:{password}"), tmp_path) as base:
        _wait_until_flower_receives_events(base, (user, password))
        decide = validation_round(dep_id, ["staging"]).apply_async()
        decide.get(timeout=30, propagate=False)  # it ran (and failed: there is no such deployment)
        deadline = time.monotonic() + 30
        while True:
            status, body = _get(f"{base}/api/task/info/{decide.id}", auth=(user, password))
            info = json.loads(body) if status == 200 else {}
            # Events arrive in any order: wait for the one that names the task and its arguments too.
            if info.get("state") in ("SUCCESS", "FAILURE") and info.get("name") and info.get("args"):
                break
            assert time.monotonic() < deadline, (status, body)
            time.sleep(0.3)
    assert info["name"] == "bgqueue.validation.decide"
    assert info["args"] == f"(<list of 1>, {dep_id!r})"
