"""Nightly validations: on demand (`bgqueue nightly --now`) and through Celery beat's fan-out task."""
from __future__ import annotations

import json
import time

from sqlalchemy import update

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.engine import nightly
from bgqueue.model.phases import Phase
from tests.fixtures.bgq import bgqueue_cli
from tests.fixtures.servers import both_flavours


@both_flavours
def test_nightly_now_finds_drift_and_overdue_decommissions(cluster_pair_factory, fleet_file, unique_name, runtime,
                                                           bgq_env):
    good, drifted = cluster_pair_factory(unique_name("ngood")), cluster_pair_factory(unique_name("ndrift"))
    with drifted.green.root() as c, c.cursor() as cur:
        cur.execute("SET GLOBAL time_zone = '+02:00'")
    path = fleet_file([good, drifted])
    assert bgqueue_cli("fleet", "register", str(path), env=bgq_env).returncode == 0
    # The session's store holds other tests' COMPLETED deployments: they are not this test's findings.
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.phase == Phase.COMPLETED,
                                           Deployment.decommissioned_at.is_(None)).values(decommissioned_at=utcnow()))
    # a COMPLETED deployment whose retention ended, not decommissioned: overdue
    _, ids = deps.create_batch(runtime.store, fleet_name="n", fleet_path=str(path), fleet_text="",
                               clusters=[dict(good.spec_dict())])
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == ids[good.name])
                  .values(phase=Phase.COMPLETED, retention_until=utcnow()))
    try:
        r = bgqueue_cli("nightly", "--now", "--json", env=bgq_env)
        assert r.returncode == 1, r.stderr
        summary = json.loads(r.stdout)
        by = {(x["cluster"], x["check"]): x for x in summary["results"]}
        assert by[(good.name, "replication_health")]["status"] == "pass"
        assert by[(good.name, "parameter_drift")]["status"] == "pass"
        assert by[(drifted.name, "parameter_drift")]["status"] == "fail"
        assert "time_zone differs" in by[(drifted.name, "parameter_drift")]["reason"]
        assert by[(good.name, "decommission_overdue")]["status"] == "fail"
        assert ("*", "coexistence_cost") in by
        assert summary["findings"] == 2
        st = bgqueue_cli("status", env=bgq_env)
        assert "2 finding(s)" in st.stdout and "time_zone differs" in st.stdout
    finally:
        with runtime.store.session() as s:
            s.execute(update(Deployment).where(Deployment.id == ids[good.name]).values(phase=Phase.NO_GO))
        nightly.unregister(runtime, str(path))


def test_beat_fan_out_runs_one_task_per_cluster_with_an_expiry(cluster_pair_factory, fleet_file, unique_name,
                                                               runtime, celery_workers):
    import tasks.application
    from tasks.nightly import CHILD_EXPIRES_S, fan_out

    entry = tasks.application.app.conf.beat_schedule["nightly-validations"]
    assert entry["task"] == "bgqueue.nightly.fan_out" and entry["options"]["expires"] > 0
    assert CHILD_EXPIRES_S > 0
    pairs = [cluster_pair_factory(unique_name("nbeat")) for _ in range(2)]
    path = fleet_file(pairs)
    nightly.register(runtime, str(path))
    try:
        started = utcnow()
        fan_out.apply_async(ignore_result=True)
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline:
            run = nightly.latest_run(runtime)
            if run and run["trigger"] == "beat" and run["started_at"] >= started.isoformat()[:19]:
                break
            time.sleep(0.3)
        assert run and run["trigger"] == "beat", run
        checked = {(x["cluster"], x["check"]) for x in run["results"]}
        for p in pairs:
            assert {(p.name, "replication_health"), (p.name, "parameter_drift"), (p.name, "checksum")} <= checked
        assert run["clusters"] == 2 and run["findings"] == 0, run
    finally:
        nightly.unregister(runtime, str(path))
