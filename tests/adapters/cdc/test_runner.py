"""``bgqueue cdc run`` (bgqueue.app.cdc_runner): its inputs and where it takes the fleet from."""
from __future__ import annotations

import subprocess
import sys

from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.store import deployments as deps
from bgqueue.model.fleet import load_fleet
from tests.adapters.cdc.helpers import ConsumerThread, wait_streaming, write_cdc_fleet
from tests.fixtures.bgq import REPO


def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "bgqueue.app.cdc_runner", *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)


def test_bad_input_exits_2_and_names_the_problem(cluster_pair_factory, unique_name, tmp_path, cdc_env):
    pair = cluster_pair_factory(unique_name("cdcrun"))
    none = write_cdc_fleet(tmp_path / "none.yaml", [pair], pipelines=[])
    p = _run(cdc_env, "--fleet", str(none))
    assert p.returncode == 2 and "no binlog pipeline" in p.stderr, p.stderr
    missing = write_cdc_fleet(tmp_path / "missing.yaml", [pair], pipelines=[{
        "kind": "binlog", "name": "app", "tables": ["appdb.t"],
        "user": {"user": "cdc", "password_env": "BGQ_TEST_UNSET_PASSWORD"}}])
    p = _run(cdc_env, "--fleet", str(missing))
    assert p.returncode == 2 and "BGQ_TEST_UNSET_PASSWORD is not set" in p.stderr and "pipelines.0.user" in p.stderr
    p = _run(cdc_env, "--fleet", str(tmp_path / "nowhere.yaml"))
    assert p.returncode == 2 and "nowhere.yaml" in p.stderr


def test_without_a_fleet_file_it_runs_the_fleet_of_the_latest_batch(cluster_pair_factory, unique_name, tmp_path,
                                                                     runtime):
    pair = cluster_pair_factory(unique_name("cdclatest"))
    fleet = write_cdc_fleet(tmp_path / "fleet.yaml", [pair])
    spec = load_fleet(fleet).clusters[0]
    deps.create_batch(runtime.store, fleet_name="cdc-test", fleet_path=str(fleet), fleet_text=fleet.read_text(),
                      clusters=[spec.model_dump(mode="json")])
    consumer = ConsumerThread(runtime.settings, None).start()
    try:
        wait_streaming(ConsumerState(runtime.redis, spec.name, spec.pipelines[0]), str(spec.blue))
    finally:
        consumer.stop()
    assert ConsumerState(runtime.redis, spec.name, spec.pipelines[0]).status()["state"] == "stopped"
