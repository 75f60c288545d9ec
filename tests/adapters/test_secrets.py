"""No secret in a log line, the store or Redis after an end-to-end run (issue 7, item 6)."""
from __future__ import annotations

import time
from pathlib import Path

from bgqueue.adapters.logs import MASK, mask
from bgqueue.app.progress import wait_for_batch
from bgqueue.client.workload import start_workload
from bgqueue.model.fleet import load_fleet
from bgqueue.model.secrets import register_secret


def test_masking_of_registered_values_and_shapes():
    register_secret("hunter2-hunter2")
    line = mask("connect hunter2-hunter2 CHANGE MASTER TO MASTER_PASSWORD='x1y2z3' url redis://u:pw9@h:1/0")
    assert "hunter2" not in line and "x1y2z3" not in line and "pw9" not in line and line.count(MASK) == 3


def test_an_end_to_end_run_leaves_no_password_anywhere(cluster_pair_factory, fleet_file, unique_name, runtime,
                                                       celery_workers, sampler_process, redis_url, sandbox_passwords):
    from tasks.batch import enqueue_fleet

    pair = cluster_pair_factory(unique_name("sec"))
    path = fleet_file([pair])
    spec = load_fleet(path).clusters[0]
    load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                          rate_hz=50)
    try:
        opened = enqueue_fleet(str(path))
        [dep] = wait_for_batch(runtime, opened.batch_id, timeout=90)
    finally:
        load.stop()
    assert dep.phase == "COMPLETED", dep.reason
    time.sleep(0.5)  # let the workers flush their logs

    secrets = [sandbox_passwords.admin, sandbox_passwords.repl, sandbox_passwords.app, sandbox_passwords.monitor]
    logdir = celery_workers[0].logdir
    logs = b"".join(p.read_bytes() for p in logdir.iterdir()) + sampler_process.logfile.read_bytes()
    assert b"switchover.flip_routing done" in logs and f"deployment={dep.id}".encode() in logs  # logs say things
    assert f"cluster={spec.name}".encode() in logs
    store_file = runtime.settings.effective_store_url.split("///", 1)[1]
    runtime.store.engine.dispose()
    store_bytes = b"".join(Path(p).read_bytes() for p in (store_file, store_file + "-wal") if Path(p).exists())
    assert spec.name.encode() in store_bytes
    redis_dump = b""
    for key in runtime.redis.scan_iter("*"):
        kind = runtime.redis.type(key)
        value = {"string": lambda k=key: runtime.redis.get(k), "hash": lambda k=key: runtime.redis.hgetall(k),
                 "stream": lambda k=key: runtime.redis.xrange(k, count=200),
                 "list": lambda k=key: runtime.redis.lrange(k, 0, 200)}.get(kind, lambda: "")()
        redis_dump += f"{key} {value}".encode()
    for secret in secrets:
        assert secret.encode() not in logs, "a password reached a log line"
        assert secret.encode() not in store_bytes, "a password reached the store"
        assert secret.encode() not in redis_dump, "a password reached Redis (task arguments, results, routes)"
