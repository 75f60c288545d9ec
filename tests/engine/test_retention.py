"""After the window: the old primary stays a reverse replica for the retention period, then is
decommissioned (reverse replication stopped, reported free). Never earlier unless forced with
an explicit confirmation. Time is moved in the store, not waited for."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from bgqueue.adapters.mysql.server import Server
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import Deployment, utcnow
from bgqueue.app.progress import wait_for_batch
from bgqueue.engine import retention
from bgqueue.model.fleet import load_fleet
from tests.fixtures.bgq import bgqueue_cli


def _completed(runtime, cluster_pair_factory, fleet_file, unique_name, retention_s):
    from tasks.batch import enqueue_fleet

    pair = cluster_pair_factory(unique_name("ret"))
    path = fleet_file([pair], retention_s=retention_s)
    spec = load_fleet(path).clusters[0]
    [dep] = wait_for_batch(runtime, enqueue_fleet(str(path)).batch_id, timeout=90)
    assert dep.phase == "COMPLETED", dep.reason
    return pair, spec, dep


def _reverse_running(spec) -> bool:
    with Server(spec.blue, spec.admin, label="blue", tls=spec.tls) as blue:
        st = blue.replica_status()
    return st is not None and st.healthy


def test_decommission_waits_for_the_retention_period_or_an_explicit_force(
        cluster_pair_factory, fleet_file, unique_name, runtime, bgq_env, celery_workers, sampler_process):
    _pair, spec, dep = _completed(runtime, cluster_pair_factory, fleet_file, unique_name, retention_s=3600)
    until = deps.as_aware(deps.get_deployment(runtime.store, dep.id).retention_until)
    assert until > utcnow() + timedelta(minutes=59)
    st = bgqueue_cli("status", spec.name, env=bgq_env)
    assert "reverse replica (rollback possible) until" in st.stdout

    r = bgqueue_cli("decommission", spec.name, env=bgq_env)
    assert r.returncode == 2 and "rollback stays possible until" in r.stderr and "--force --yes" in r.stderr
    r = bgqueue_cli("decommission", spec.name, "--force", env=bgq_env)
    assert r.returncode == 2 and "confirm with --yes" in r.stderr
    assert retention.decommission_due(runtime) == [] and _reverse_running(spec)  # the beat job leaves it too

    with runtime.store.session() as s:  # the retention period is over
        s.execute(update(Deployment).where(Deployment.id == dep.id).values(retention_until=utcnow()))
    assert dep.id in retention.decommission_due(runtime)
    assert not _reverse_running(spec)
    st = bgqueue_cli("status", spec.name, env=bgq_env)
    assert f"old primary {spec.blue}: decommissioned at" in st.stdout and "free" in st.stdout
    r = bgqueue_cli("rollback", spec.name, "--yes", env=bgq_env)
    assert r.returncode == 1 and "decommissioned" in r.stderr


def test_forced_decommission_with_confirmation(cluster_pair_factory, fleet_file, unique_name, runtime, bgq_env,
                                               celery_workers, sampler_process):
    _pair, spec, dep = _completed(runtime, cluster_pair_factory, fleet_file, unique_name, retention_s=3600)
    r = bgqueue_cli("decommission", spec.name, "--force", "--yes", env=bgq_env)
    assert r.returncode == 0, r.stderr
    assert "reverse replication stopped, the server is free" in r.stdout
    assert not _reverse_running(spec)
    assert deps.get_deployment(runtime.store, dep.id).decommissioned_at is not None
