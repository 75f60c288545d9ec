"""The Prometheus endpoint, served by a real `bgqueue exporter` process from the session's store."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from bgqueue.sandbox import free_port
from tests.fixtures.bgq import REPO

NAMES = ["bgqueue_deployments", "bgqueue_switchover_duration_seconds_bucket", "bgqueue_write_block_seconds_bucket",
         "bgqueue_check_results_total", "bgqueue_decisions_total", "bgqueue_rollbacks_total",
         "bgqueue_cdc_downtime_seconds_count", "bgqueue_nightly_findings"]


def test_exporter_serves_every_documented_metric(bgq_env, runtime, cluster_pair_factory, fleet_file, unique_name,
                                                 celery_workers, sampler_process):
    from bgqueue.app.progress import wait_for_batch
    from tasks.batch import enqueue_fleet

    pair = cluster_pair_factory(unique_name("prom"))
    opened = enqueue_fleet(str(fleet_file([pair])))
    [dep] = wait_for_batch(runtime, opened.batch_id, timeout=90)
    assert dep.phase == "COMPLETED", dep.reason
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", "exporter", "--port", str(port)], env=bgq_env,
                            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and body is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        proc.wait(10)
    for name in NAMES:
        assert name in body, name
    completed = [line for line in body.splitlines() if line.startswith('bgqueue_deployments{phase="COMPLETED"}')]
    assert completed and float(completed[0].split()[-1]) >= 1
    assert 'bgqueue_decisions_total{kind="pre_switch",verdict="GO"}' in body
    count = [line for line in body.splitlines() if line.startswith("bgqueue_switchover_duration_seconds_count")]
    assert float(count[0].split()[-1]) >= 1
