"""Helpers for the CDC tests: fleet files with pipelines, consumer processes, driving a switchover."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import yaml

from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.cdc.migration import MigrationProgress, migrate_pipelines
from bgqueue.adapters.mysql.dialects import Dialect, parse_version
from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.deployments import Claim
from bgqueue.adapters.store.journal import Journal, latest_checkpoint
from bgqueue.engine.mysql.switchover import SwitchPlan, switch_writer
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import Phase
from tests.fixtures.bgq import REPO

CDC_USER = "bgq_cdc"
CDC_PASSWORD_ENV = "BGQ_TEST_CDC_PASSWORD"
THRESHOLDS = {"max_lag_s": 1.0, "sync_timeout_s": 30, "sync_poll_s": 0.1, "catchup_timeout_s": 5, "lag_window_s": 1,
              "validation_timeout_s": 20, "validation_poll_s": 0.3}
LEDGER_PIPELINE = {"kind": "binlog", "name": "app", "tables": ["appdb.bgq_writes"]}


def write_cdc_fleet(path: Path, pairs, pipelines: list[dict] | None = None, swapped: bool = False) -> Path:
    """A fleet file for sandbox pairs, each cluster with ``pipelines`` (default: the ledger table's)."""
    clusters = []
    for p in pairs:
        c = p.spec_dict()
        if swapped:
            c["blue"], c["green"] = c["green"], c["blue"]
        c["pipelines"] = pipelines if pipelines is not None else [dict(LEDGER_PIPELINE)]
        clusters.append(c)
    path.write_text(yaml.safe_dump({"version": 1, "name": "cdc-test", "defaults": {"thresholds": THRESHOLDS},
                                    "clusters": clusters}, sort_keys=False))
    return path


def create_cdc_user(pair, password: str) -> None:
    """A dedicated binlog reader on both servers (kept out of the binlog, like the replication user)."""
    for server in (pair.blue, pair.green):
        with server.root() as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin=0")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER '{CDC_USER}'@'{host}' IDENTIFIED BY %s", (password,))
                cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '{CDC_USER}'@'{host}'")


class ConsumerProcess:
    """``python -m bgqueue.app.cdc_runner --fleet FILE`` in its own process (as in production)."""

    def __init__(self, fleet: Path, env: dict, log: Path):
        self.fleet, self.env, self.log = fleet, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> ConsumerProcess:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cdc_runner", "--fleet", str(self.fleet)],
                                     env=self.env, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait: the exit code (0 on a clean stop)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"consumer did not stop on SIGTERM within {timeout}s; log: {self.log}") from None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ConsumerThread:
    """run_consumers in a thread of this process, stopped through its stop_event."""

    def __init__(self, settings, fleet: Path | None):
        from bgqueue.adapters.runtime import Runtime
        from bgqueue.app.cdc_runner import run_consumers

        self.stop_event, self.ready = threading.Event(), threading.Event()
        self.error: BaseException | None = None

        def run():
            try:
                run_consumers(Runtime.build(settings), str(fleet) if fleet else None, self.stop_event,
                              ready=self.ready)
            except BaseException as e:  # surfaced by stop()
                self.error = e
                self.ready.set()
        self.thread = threading.Thread(target=run, daemon=True)

    def start(self) -> ConsumerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_streaming(state: ConsumerState, source: str, timeout: float = 15) -> None:
    """Until the consumer reports it streams from ``source`` with its position stored."""
    wait_until(lambda: state.status().get("state") == "streaming" and state.status().get("source") == source
               and "gtid" in state.position(), timeout,
               f"consumer streaming from {source} (status {state.status()})")


def server_gtid(endpoint, password: str, user: str = "bgq_admin") -> str:
    conn = pymysql.connect(host=endpoint.host, port=endpoint.port, user=user, password=password, ssl_disabled=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            cur.execute(Dialect(*parse_version(cur.fetchone()[0])).gtid_position_sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


def wait_delivered(state: ConsumerState, target: str, timeout: float = 30) -> None:
    """Until the consumer's stored position includes the server position ``target``."""
    assert state.wait_delivered(target, timeout), \
        f"consumer did not deliver up to {target} in {timeout}s (at {state.position()}, status {state.status()})"


def claim_deployment(runtime, spec: ClusterSpec) -> Claim:
    """A deployment of ``spec`` in the store, claimed: what a journal needs (its writes are fenced)."""
    _, ids = deps.create_batch(runtime.store, fleet_name="cdc-test", fleet_path="-", fleet_text="",
                               clusters=[spec.model_dump(mode="json")])
    claim = deps.claim(runtime.store, ids[spec.name], "cdc-test", [Phase.PENDING])
    assert claim is not None
    return claim


def drive_cdc_phase(spec: ClusterSpec, cp, journal, redis_client, *, now: float = 1000.0, step_s: float = 1.0,
                    calls: int = 60, **kwargs) -> MigrationProgress:
    """Re-invoke migrate_pipelines on a simulated clock (``now`` advances ``step_s`` per call) until done."""
    for _ in range(calls):
        progress = migrate_pipelines(spec, cp, journal, None, redis=redis_client, now=now, **kwargs)
        if progress.done:
            return progress
        assert progress.wait_s is not None and progress.wait_s > 0
        now += step_s
    raise AssertionError(f"CDC phase not done after {calls} calls: {progress.state}")


def switch_over(runtime, spec: ClusterSpec) -> Claim:
    """Switch ``spec``'s writer from its blue to its green with the domain procedure (fence,
    checkpoint, wait, promote, flip the route, reverse replication), journaled under a deployment
    of its own. Returns the claim, for the CDC phase's journal."""
    claim = claim_deployment(runtime, spec)
    old, new = servers(spec)
    try:
        plan = SwitchPlan(cluster=spec, old=old, new=new, repl=spec.replication)
        result = switch_writer(plan, runtime.store, Journal(runtime.store, claim, "switchover"), runtime.routing,
                               spec.thresholds.catchup_timeout_s)
    finally:
        old.close()
        new.close()
    assert result.switched and result.reverse_replication, result
    return claim


def run_cdc_phase(runtime, claim: Claim, spec: ClusterSpec, timeout: float = 60, **kwargs) -> MigrationProgress:
    """The CDC phase as a Celery task runs it: re-invoked after wait_s until done (state via Redis)."""
    journal = Journal(runtime.store, claim, "cdc")
    cp = latest_checkpoint(runtime.store, claim.deployment_id, "switchover")
    deadline = time.monotonic() + timeout
    while True:
        progress = migrate_pipelines(spec, cp, journal, None, redis=runtime.redis, **kwargs)
        if progress.done:
            return progress
        assert time.monotonic() < deadline, f"CDC phase not done after {timeout}s: {progress.state}"
        time.sleep(progress.wait_s)
