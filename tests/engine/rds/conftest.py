"""Fixtures of the rds provider's tests: one moto server (server mode, on loopback) that this process
and the Celery worker processes share, the AWS environment pointing at it, and two worker
processes of our own.

Our workers consume from their own broker database (``BGQUEUE_BROKER_URL`` = the session's
redis-server, db 5) and batches are started by sending ``bgqueue.batch.start`` there: the
session's shared ``celery_workers`` (started without the moto environment) listen on db 0 and
so can never pick up an rds task, whatever order the tests run in. Store and Redis state (locks,
routes) stay shared through BGQUEUE_STORE_URL and BGQUEUE_REDIS_URL.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from bgqueue.sandbox import free_port
from tests.engine.rds.helpers import REGION, moto_client

BROKER_DB = 5


class SerialMotoServer(ThreadedMotoServer):
    """moto's server mode, answering one request at a time: its backends are not thread-safe (two
    concurrent switchovers fail with "OrderedDict mutated during iteration", a 500)."""

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial(environ, start_response):
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(self._ip_address, self._port, serial, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@pytest.fixture(scope="package")
def moto_url() -> Iterator[str]:
    """http://127.0.0.1:PORT of a (serialised) ThreadedMotoServer started once for the rds tests."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = SerialMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="package")
def aws_env(moto_url: str) -> Iterator[dict[str, str]]:
    """AWS_ENDPOINT_URL (honoured by boto3 itself), dummy credentials, the region, retries off —
    exported in this process for the rds tests and given to the worker processes."""
    from bgqueue.adapters.aws import clients as aws

    values = {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": REGION, aws.RETRIES_ENV: "0"}
    mp = pytest.MonkeyPatch()
    for k, v in values.items():
        mp.setenv(k, v)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", aws.ENDPOINT_ENV):
        mp.delenv(k, raising=False)
    aws.reset()
    yield values
    mp.undo()
    aws.reset()


@pytest.fixture(scope="package")
def rds_broker(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{BROKER_DB}"


@pytest.fixture(scope="package")
def rds_workers(bgq_env, aws_env, rds_broker, tmp_path_factory) -> Iterator[list]:
    """Two real `celery worker` processes (3 children each) with the moto environment."""
    from tasks.workers import start_workers

    env = {**bgq_env, **aws_env, "BGQUEUE_BROKER_URL": rds_broker, "BGQUEUE_RESULT_BACKEND": rds_broker}
    logdir = tmp_path_factory.mktemp("rds-worker-logs")
    workers = start_workers(env, rds_broker, count=2, concurrency=3, logdir=logdir, prefix="rds")
    yield workers
    for w in workers:
        w.stop()


@pytest.fixture(scope="package")
def rds_celery(rds_broker):
    """A Celery client on our workers' broker: sends ``bgqueue.batch.start`` (what enqueue_fleet sends)."""
    from celery import Celery

    app = Celery("rds-tests", broker=rds_broker, backend=rds_broker)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="bgqueue")
    yield app
    app.close()


@pytest.fixture
def rds(aws_env, moto_url):
    return moto_client("rds", moto_url)


@pytest.fixture
def run_batch(runtime, rds_celery, rds_workers):
    """``run(fleet_path, timeout) -> (opened, rows)``: open_batch (preflight, budget, lock, record) as
    ``fleet run`` does, start it on our workers, wait until every deployment is terminal."""
    from bgqueue.app.progress import wait_for_batch
    from bgqueue.engine.batches import open_batch

    def run(path: Path, timeout: float = 60):
        opened = open_batch(runtime, str(path))
        rds_celery.send_task("bgqueue.batch.start", args=(opened.batch_id,), queue="bgqueue")
        return opened, wait_for_batch(runtime, opened.batch_id, timeout=timeout)

    return run


@pytest.fixture(autouse=True)
def _fresh_proxy_cache():
    """Each test sees the RDS Proxies of its moment (the provider caches them for a minute per process)."""
    from bgqueue.adapters.aws import topology

    topology._proxies.clear()
    yield
