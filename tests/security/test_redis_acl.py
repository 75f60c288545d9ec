"""Redis access (issue 11, item 9): AUTH and TLS for everything bgqueue keeps in Redis, and an
application user that can only read routes and subscribe to route channels.

One redis-server for the module: TLS only (rediss://, its certificate verified against a private
CA), a password for the default user, and the two ACL users of the README.
"""
from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time

import pytest
import redis
import yaml
from celery import Celery

from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.adapters.runtime import Runtime
from bgqueue.adapters.store import deployments as deps
from bgqueue.client import RoutedClient
from bgqueue.client.workload import start_workload
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from bgqueue.sandbox import APP_DATABASE, APP_USER
from config.celery import celery_config
from config.settings import Settings
from tests.adapters.cdc.helpers import ConsumerProcess
from tests.fixtures.bgq import REPO, bgqueue_cli
from tests.security.conftest import make_ca_and_server_cert

ROUTE = "bgq:default:route:orders"
ENDPOINTS = "bgq:default:endpoints:orders"


@pytest.fixture
def app_redis(secured_redis):
    client = redis.Redis.from_url(secured_redis.app_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def worker_redis(secured_redis):
    client = redis.Redis.from_url(secured_redis.worker_url, decode_responses=True)
    yield client
    client.close()


def worker_runtime(secured_redis, tmp_path) -> Runtime:
    return Runtime.build(Settings(home=tmp_path, redis_url=secured_redis.worker_url,
                                  store_url=f"sqlite:///{tmp_path / 'store.sqlite'}"))


def test_the_application_user_can_read_routes_but_neither_flip_one_nor_enqueue_a_task(
        secured_redis, app_redis, worker_redis):
    registry = RoutingRegistry(worker_redis)
    registry.init("orders", "127.0.0.1", 3306)
    registry.allow("orders", [("127.0.0.1", 3306), ("127.0.0.1", 3307)])
    assert app_redis.hgetall(ROUTE)["port"] == "3306"
    assert app_redis.smembers(ENDPOINTS) == {"127.0.0.1:3306", "127.0.0.1:3307"}
    pubsub = app_redis.pubsub()
    pubsub.subscribe(ROUTE)
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    pubsub.close()

    refused = {
        "HSET a route": lambda: app_redis.hset(ROUTE, "host", "203.0.113.9"),
        "run the flip script": lambda: app_redis.register_script(registry.copy._flip.script)(
            keys=[ROUTE], args=["203.0.113.9", 3306, 1, "x", "orders"]),
        "publish a route": lambda: app_redis.publish(ROUTE, "{}"),
        "rewrite the allow-list": lambda: app_redis.sadd(ENDPOINTS, "203.0.113.9:3306"),
        "delete a route": lambda: app_redis.delete(ROUTE),
        "LPUSH the Celery queue": lambda: app_redis.lpush("bgqueue", "{}"),
        "read a lock": lambda: app_redis.get("bgq:lock:cluster:orders"),
        "read another namespace's route": lambda: app_redis.hgetall("bgq:staging:route:orders"),
        "list the keys": lambda: app_redis.keys("*"),
    }
    for what, attempt in refused.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
            pytest.fail(f"the application user could {what}")
    assert worker_redis.hgetall(ROUTE)["host"] == "127.0.0.1"  # nothing changed

    # Through Celery too: an application host cannot send a task.
    celery = Celery("app-host", broker=secured_redis.app_url)
    try:
        with pytest.raises(Exception) as e:
            celery.send_task("bgqueue.batch.start", args=["fleet.yaml"], retry=False)
        assert "NOPERM" in repr(e.value) or "no permissions" in str(e.value), repr(e.value)
    finally:
        celery.close()
    assert worker_redis.llen("bgqueue") == 0


def test_without_the_password_or_without_the_right_ca_nothing_is_served(secured_redis, tmp_path):
    url = secured_redis.app_url
    anonymous = "rediss://127.0.0.1:" + url.split("@127.0.0.1:", 1)[1]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(anonymous).hgetall(ROUTE)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(url.replace(secured_redis.app_password, "wrong-password")).ping()
    # A server certificate from another CA is refused (no credentials are sent before that).
    other = make_ca_and_server_cert(tmp_path / "other", "other")
    wrong_ca = url.split("&ssl_ca_certs=")[0] + f"&ssl_ca_certs={other.ca_file}"
    with pytest.raises(redis.exceptions.ConnectionError) as e:
        redis.Redis.from_url(wrong_ca).ping()
    assert "certificate verify failed" in str(e.value)
    # And plaintext is not spoken at all.
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(url.replace("rediss://", "redis://").split("?")[0], socket_timeout=2).ping()


def test_celery_and_flower_verify_the_servers_certificate_on_rediss_urls(secured_redis, worker_redis):
    settings = Settings(redis_url=secured_redis.worker_url.split("?")[0])  # no TLS parameters given
    conf = celery_config(settings)
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert conf["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert "broker_use_ssl" not in celery_config(Settings(redis_url="redis://127.0.0.1:6379/0"))
    conf = celery_config(Settings(redis_url=secured_redis.worker_url))
    assert conf["broker_use_ssl"]["ssl_ca_certs"] == str(secured_redis.server.tls.ca_file)
    # Flower reads the queues with the broker_use_ssl options only (it ignores the URL's query).
    from flower.utils.broker import Broker

    worker_redis.rpush("bgqueue", "{}")
    try:
        flower = Broker(secured_redis.worker_url.split("?")[0], broker_options=conf["broker_transport_options"],
                        broker_use_ssl=conf.get("broker_use_ssl"))
        assert asyncio.run(flower.queues(["bgqueue"])) == [{"name": "bgqueue", "messages": 1}]
    finally:
        worker_redis.delete("bgqueue")


def test_passwords_in_redis_urls_are_masked_in_log_lines_whatever_their_shape(tmp_path):
    import logging

    from bgqueue.adapters import logs

    secret = "S3cr@t-" + os.urandom(6).hex()
    encoded = secret.replace("@", "%40")
    urls = {"redis_url": f"rediss://:{encoded}@10.0.0.5:6380/0", "broker_url": f"redis://bgq:{encoded}@10.0.0.6/0"}
    Runtime.build(Settings(home=tmp_path, store_url=f"sqlite:///{tmp_path / 'store.sqlite'}", **urls))
    line = logging.LogRecord("bgqueue", logging.WARNING, __file__, 1, "cannot reach %s or %s (password %s)",
                             (urls["redis_url"], urls["broker_url"], secret), None)
    text = logs.MaskingFormatter().format(line)
    assert secret not in text and encoded not in text, text
    assert "10.0.0.5:6380" in text  # the rest of the line is kept


def test_routed_client_works_with_the_application_user(secured_redis, cluster_pair, sandbox_passwords, tmp_path,
                                                      unique_name):
    pair = cluster_pair
    name = unique_name("sec-acl")
    with pair.blue.root() as r:
        r.cursor().execute(f"CREATE TABLE {APP_DATABASE}.items (id INT PRIMARY KEY)")
    pair.wait_green_synced()
    rt = worker_runtime(secured_redis, tmp_path)
    rt.routing.init(name, pair.blue.host, pair.blue.port)
    rt.routing.allow(name, [(pair.blue.host, pair.blue.port), (pair.green.host, pair.green.port)])
    # No endpoints given: the client reads the allow-list bgqueue registered, as the app user.
    client = RoutedClient(name, secured_redis.app_url, APP_USER, sandbox_passwords.app, APP_DATABASE,
                          deadline_s=5.0)
    try:
        client.transaction(lambda cur: cur.execute(f"INSERT INTO {APP_DATABASE}.items VALUES (1)"))
        with pair.blue.root() as b:
            b.cursor().execute("SET GLOBAL read_only=1")
        pair.wait_green_synced()
        with pair.green.root() as g:
            cur = g.cursor()
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")
            cur.execute("SET GLOBAL read_only=0")
        rt.routing.flip(name, pair.green.host, pair.green.port, expect_version=1, reason="switchover")
        client.transaction(lambda cur: cur.execute(f"INSERT INTO {APP_DATABASE}.items VALUES (2)"))
        assert client.route.endpoint == (pair.green.host, pair.green.port) and client.route_changes == 1
    finally:
        client.close()
        rt.redis.close()
    with pair.green.root() as g, g.cursor() as cur:
        cur.execute(f"SELECT id FROM {APP_DATABASE}.items ORDER BY id")
        assert [i for (i,) in cur.fetchall()] == [1, 2]


def test_a_batch_switches_over_tls_with_acl_users_and_no_password_reaches_a_log(
        secured_redis, cluster_pair_factory, unique_name, sandbox_passwords, tmp_path):
    """Broker, results, routing, locks, samples and CDC streams all over rediss:// as the worker
    user; the application writes through the application user."""
    from tasks.workers import start_workers

    pair = cluster_pair_factory(unique_name("sec-tls"))
    spec_dict = pair.spec_dict()
    spec_dict["pipelines"] = [{"kind": "binlog", "name": "app", "tables": ["appdb.bgq_writes"]}]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"version": 1, "name": "tls", "clusters": [spec_dict], "defaults": {"thresholds": {
        "max_lag_s": 1.0, "sync_timeout_s": 30, "sync_poll_s": 0.2, "catchup_timeout_s": 5, "lag_window_s": 1,
        "validation_timeout_s": 30, "validation_poll_s": 0.3, "monitor_window_s": 0.5, "monitor_tick_s": 0.25,
        "monitor_eval_s": 2}}}, sort_keys=False))
    spec = load_fleet(fleet).clusters[0]
    home = tmp_path / "home"
    settings = {"BGQUEUE_HOME": str(home), "BGQUEUE_REDIS_URL": secured_redis.worker_url,
                "BGQUEUE_STORE_URL": f"sqlite:///{home / 'store.sqlite'}", "BGQUEUE_LOCK_TTL_S": "600"}
    env = {**os.environ, **settings,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    rt = Runtime.build(Settings(home=home, redis_url=secured_redis.worker_url, store_url=settings["BGQUEUE_STORE_URL"]))
    logs = tmp_path / "logs"
    logs.mkdir()
    workers, sampler, consumer, load = [], None, None, None
    try:
        workers = start_workers(env, secured_redis.worker_url, count=1, concurrency=3, logdir=logs, prefix="tls",
                                loglevel="INFO")
        with open(logs / "sampler.log", "wb") as out:
            sampler = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", "sampler", "run"], env=env,
                                       cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT)
        load = start_workload(spec, secured_redis.app_url, rt.routing, app_user=APP_USER,
                              app_password=sandbox_passwords.app, rate_hz=50)
        consumer = ConsumerProcess(fleet, env, logs / "cdc.log").start()
        state = ConsumerState(rt.redis, spec.name, spec.pipelines[0])
        assert state.wait_streaming(30), state.status()
        run = bgqueue_cli("fleet", "run", str(fleet), "--wait", "--json", env=env, timeout=180)
        time.sleep(0.5)  # writes go on, on green
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        dep = deps.latest_deployment(rt.store, spec.name)
        assert dep.phase == Phase.COMPLETED, dep.reason
        assert load.client.route.endpoint == (spec.green.host, spec.green.port)  # read as the app user
        assert rt.routing.get(spec.name).endpoint == (spec.green.host, spec.green.port)
        assert rt.redis.xlen(state.stream) > 0 and state.status()["source"] == str(spec.green)
        assert rt.redis.exists(f"bgq:samples:{spec.name}")
    finally:
        if load is not None:
            load.stop()
        if consumer is not None:
            consumer.stop()
        if sampler is not None:
            sampler.terminate()
            sampler.wait(15)
        for w in workers:
            w.stop()
        rt.redis.close()
    assert load.writer.acked_ids(), load.writer.stats()
    outputs = [run.stdout, run.stderr] + [p.read_text(errors="replace") for p in logs.iterdir()]
    assert "tls1@" in "".join(outputs)  # the worker did log
    for text in outputs:
        assert secured_redis.worker_password not in text and secured_redis.app_password not in text
    with pair.green.root() as g, g.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM appdb.bgq_writes")
        assert cur.fetchone()[0] >= len(load.writer.acked_ids())
