"""Whole validation rounds (every check + the decision engine) on a real pair sampled by the real
sampler process: injected lag is caught with its figure, and a clean pair under steady writes is
GO every time (no false no-go)."""
from __future__ import annotations

import time

import pytest

from bgqueue.adapters.store import deployments as deps
from bgqueue.client.workload import start_workload
from bgqueue.engine import lifecycle, validation
from bgqueue.engine.batches import open_batch
from bgqueue.engine.decision import GO, decide
from bgqueue.model.fleet import load_fleet
from bgqueue.model.phases import Phase
from bgqueue.model.results import CheckResult


@pytest.fixture
def validating(cluster_pair_factory, fleet_file, unique_name, runtime, redis_url, sandbox_passwords, sampler_process):
    """A deployment in VALIDATING (the sampler samples it) on a pair with a steady writer."""
    pair = cluster_pair_factory(unique_name("val"))
    path = fleet_file([pair], lag_window_s=1.5)
    text = path.read_text().replace("critical_tables: []", "critical_tables: [appdb.bgq_writes]")
    path.write_text(text)
    spec = load_fleet(path).clusters[0]
    load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                          rate_hz=150)
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    for step in (lifecycle.prepare, lifecycle.wait_for_sync):
        while (nxt := step(runtime, dep_id)).wait_s:
            time.sleep(nxt.wait_s)
    assert deps.get_deployment(runtime.store, dep_id).phase == Phase.VALIDATING
    yield pair, spec, dep_id
    load.stop()
    claim = deps.claim(runtime.store, dep_id, "test", [Phase.VALIDATING])
    if claim is not None:
        lifecycle.end(runtime, claim, Phase.NO_GO, "test over")


def _round(runtime, dep_id) -> list[CheckResult]:
    names = validation.begin(runtime, dep_id)
    return [CheckResult.from_dict(validation.run_named_check(runtime, dep_id, n)) for n in names]


def _wait_for_lag_evidence(runtime, dep_id, timeout=15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lag = {r.name: r for r in _round(runtime, dep_id)}["replication_lag"]
        if lag.status == "pass":
            return
        time.sleep(0.3)
    raise AssertionError(f"no lag evidence: {lag.reason}")


def test_a_clean_pair_under_steady_writes_is_go_20_times_in_a_row(validating, runtime):
    _pair, spec, dep_id = validating
    _wait_for_lag_evidence(runtime, dep_id)
    for run in range(20):
        results = _round(runtime, dep_id)
        d = decide(results, now=time.time(), deadline=time.time() + 60, poll_s=1)
        assert d.verdict == GO, (run, d.reasons)
    by = {r.name: r for r in results}
    assert by["checksum"].evidence["rows"] > 100  # the ledger table really was compared


def test_injected_lag_is_caught_with_its_figure(validating, runtime):
    pair, spec, dep_id = validating
    _wait_for_lag_evidence(runtime, dep_id)
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")  # writes go on on blue: green falls behind
        time.sleep(2.0)
        cur.execute("START SLAVE SQL_THREAD")
    lag = {r.name: r for r in _round(runtime, dep_id)}["replication_lag"]
    assert lag.status == "fail" and lag.retryable
    assert lag.reason.startswith("lag ") and "is not below 1s" in lag.reason
    assert lag.value >= 1.0
