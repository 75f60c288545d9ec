"""Query replay on a live pair: no false difference under ~300 writes/s while green lags, and
green's replication resumes when the replay process is killed (kill -9) while green is paused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bgqueue.adapters.mysql.server import servers
from bgqueue.checks.replay.run import replay_cluster
from bgqueue.model.fleet import ClusterSpec
from tests.checks import replay_data as data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def live(cluster_pair_factory, unique_name, tmp_path):
    pair = cluster_pair_factory(unique_name("rpl"))
    with pair.blue.root() as b:
        data.load_blue(b.cursor())
    pair.wait_green_synced()
    log = tmp_path / "queries.sql"
    log.write_text(data.query_log(8, seeded=False))
    spec = ClusterSpec.model_validate({**pair.spec_dict(), "replay": {"source": "file", "path": str(log),
                                                                      "samples_per_class": 8}})
    return pair, spec


def _naive_differences(spec, queries: list[str]) -> int:
    """What a comparison without a common point sees: each query on blue, then on green, now."""
    blue, green = servers(spec)
    try:
        return sum(sorted(blue.rows(q)) != sorted(green.rows(q)) for q in queries)
    finally:
        blue.close()
        green.close()


def test_no_false_difference_over_5_runs_under_300_writes_per_s_with_green_lagging(live, sandbox_passwords):
    pair, spec = live
    with pair.green.root() as g:
        # Green a second behind: blue and green differ at any instant, so only a pinned point can agree.
        for sql in ("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 1", "START SLAVE"):
            g.cursor().execute(sql)
    writers = data.Writers(pair, sandbox_passwords.app).start()
    try:
        time.sleep(1.5)
        assert _naive_differences(spec, ["SELECT COUNT(*), SUM(amount), MAX(id) FROM appdb.orders"]) == 1
        positions = []
        for run in range(5):
            before, t0 = writers.writes, time.monotonic()
            blue, green = servers(spec)
            try:
                report = replay_cluster(spec, blue, green)
                status = green.replica_status()
            finally:
                blue.close()
                green.close()
            rate = (writers.writes - before) / (time.monotonic() - t0)
            assert report.differing == [], (run, [c.as_dict(spec.replay) for c in report.differing])
            assert report.statements >= 40 and len(report.classes) == 7, report.as_dict()
            assert all(c.not_run == 0 for c in report.classes)
            assert status.io_running and status.sql_running and not status.last_error
            assert rate >= 150, f"the application wrote only {rate:.0f}/s during run {run}"  # ~300/s asked; loaded host
            positions.append(report.positions[0])
        assert len(set(positions)) == 5  # every run pinned a new point: the writes really went on
    finally:
        writers.stop()
    assert not writers.errors


_REPLAY_IN_A_CHILD = """
import json, sys
from bgqueue.adapters.mysql.server import servers
from bgqueue.checks.replay.run import replay_cluster
from bgqueue.model.fleet import ClusterSpec
spec = ClusterSpec.model_validate(json.loads(sys.argv[1]))
blue, green = servers(spec)
replay_cluster(spec, blue, green)
print("finished")
"""


def _replication(pair) -> tuple[str, str]:
    with pair.green.root() as g, g.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=False))
    return row["Slave_IO_Running"], row["Slave_SQL_Running"]


def _wait_replicating(pair, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout  # the IO thread shows "Preparing"/"Connecting" first
    while _replication(pair) != ("Yes", "Yes"):
        assert time.monotonic() < deadline, f"green still not replicating: {_replication(pair)}"
        time.sleep(0.1)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_replay_process_killed_while_green_is_paused_leaves_green_replicating(live, sandbox_passwords):
    pair, spec = live
    env = {**os.environ, "BGQUEUE_FAILPOINTS": "replay.green_paused=stop",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _REPLAY_IN_A_CHILD, json.dumps(spec.model_dump(mode="json"))],
                             env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _state(child.pid) != "T":  # stopped at the failpoint: green paused at blue's snapshot point
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the replay never reached the failpoint"
            time.sleep(0.05)
        assert _replication(pair) == ("No", "No")  # paused by the replay, as the failpoint says
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        _wait_replicating(pair, 30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # And replication really goes on: a write on blue reaches green.
    with pair.blue.root() as b:
        b.cursor().execute("INSERT INTO appdb.t VALUES (999999, 1)")
    pair.wait_green_synced()
    assert "finished" not in child.stdout.read().decode()


def test_pin_that_times_out_resumes_green_and_a_stopped_replica_is_left_alone(live, runtime):
    from bgqueue.checks.context import CheckContext
    from bgqueue.checks.replay.check import query_replay

    pair, spec = live
    with pair.green.root() as g:
        for sql in ("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 5", "START SLAVE"):
            g.cursor().execute(sql)
    with pair.blue.root() as b:
        b.cursor().execute("INSERT INTO appdb.t VALUES (777777, 1)")  # green cannot apply it for 5 s
    slow = spec.model_copy(update={"replay": spec.replay.model_copy(update={"pin_timeout_s": 0.5})})
    ctx = CheckContext(spec=slow, blue=servers(slow)[0], green=servers(slow)[1], store=runtime.store)
    try:
        result = query_replay(ctx)
    finally:
        ctx.close()
    assert result.status == "error" and result.retryable
    assert "could not be pinned" in result.reason and "within 0.5s" in result.reason
    _wait_replicating(pair)  # resumed by the replay itself

    with pair.green.root() as g:
        g.cursor().execute("STOP SLAVE")  # an operator's stop: replay must not undo it
    ctx = CheckContext(spec=spec, blue=servers(spec)[0], green=servers(spec)[1], store=runtime.store)
    try:
        result = query_replay(ctx)
    finally:
        ctx.close()
    assert result.status == "error" and "not replicating cleanly" in result.reason
    time.sleep(1.5)  # the guard had its chance to act: it must not have
    assert _replication(pair) == ("No", "No")
