"""The chaos world: worker hosts (network namespaces) with Celery workers inside, and on the root
side Redis, PostgreSQL (the shared store), beat (the watchdog), the sampler and the database pairs.

Shared by tests/chaos (a few rounds in ``make test``) and bench/chaos.py (the full run). A worker
that exits is restarted after ``RESTART_DELAY_S`` (what the Procfile's ``scripts/restarting`` does),
except on a host that is down.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bgqueue.sandbox.hosted import HostedPostgres, hosted_pair, hosted_redis
from bgqueue.sandbox.hosts import Host, HostNet
from bgqueue.sandbox.pair import ClusterPair, SandboxPasswords
from bgqueue.sandbox.redis_server import RedisServer
from tasks.workers import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
RESTART_DELAY_S = 1.0
# Liveness settings of the chaos world (the product's defaults for the lease and the watchdog;
# shorter stall bounds so that a round ends in minutes; the lock TTL below a pause's length).
SETTINGS = {
    "BGQUEUE_PROCEDURE_LEASE_S": "8", "BGQUEUE_WATCHDOG_INTERVAL_S": "2", "BGQUEUE_STALL_S": "15",
    "BGQUEUE_PENDING_STALL_S": "30", "BGQUEUE_LOCK_TTL_S": "10",
}
_server_ids = itertools.count(20_000)
# Armed per round by the faults that must strike inside the write-blocked window (fence → flip).
FAILPOINTS = {"switchover.after_fence": "stop-once", "switchover.after_promote": "exit-once"}


@dataclass
class ChaosConfig:
    hosts: int = 3
    clusters: int = 6
    concurrency: int = 3
    rate_hz: float = 25.0
    prefix: str = "bgqc"
    net: int = 201  # 10.{net}.0.0/16: different for worlds that may run at once (tests and bench)
    loglevel: str = "INFO"


class World:
    def __init__(self, workdir: Path, passwords: SandboxPasswords, cfg: ChaosConfig | None = None,
                 cache_dir: Path | None = None, pg_cache_dir: Path | None = None):
        self.workdir, self.passwords, self.cfg = Path(workdir), passwords, cfg or ChaosConfig()
        self.cache_dir, self.pg_cache_dir = cache_dir, pg_cache_dir
        self.net = HostNet(count=self.cfg.hosts, prefix=self.cfg.prefix, net=self.cfg.net)
        self.redis: RedisServer | None = None
        self.pg: HostedPostgres | None = None
        self.env: dict[str, str] = {}
        self.workers: dict[int, WorkerProcess] = {}
        self.down: set[int] = set()  # hosts lost (no restart until restored)
        self.restarts = 0
        self.beat: subprocess.Popen | None = None
        self.sampler: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()
        self.logdir = self.workdir / "logs"
        self.failpoint_dir = self.workdir / "failpoints"

    def arm(self, point: str) -> None:
        """The next worker that reaches ``point`` acts (once): stop-once pauses it, exit-once kills it."""
        (self.failpoint_dir / f"failpoint.{point}").unlink(missing_ok=True)

    def disarm(self, point: str) -> None:
        (self.failpoint_dir / f"failpoint.{point}").touch()

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> World:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.net.setup()
        try:
            self.redis = hosted_redis(self.net, self.workdir / "redis")
            self.redis._fixed_port = True  # a restart keeps the port the workers know
            self.pg = HostedPostgres(self.net, self.workdir / "pg", cache_dir=self.pg_cache_dir)
            self.pg.start()
            home = self.workdir / "home"
            self.env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                "PYTHONPATH": str(REPO), "BGQUEUE_HOME": str(home), "BGQUEUE_REDIS_URL": self.redis.url,
                "BGQUEUE_STORE_URL": self.pg.url, **SETTINGS, **self.passwords.env(),
            }
            # Two failpoints every worker carries, disarmed (their markers exist) until a round arms one.
            self.failpoint_dir.mkdir(parents=True, exist_ok=True)
            for point in FAILPOINTS:
                (self.failpoint_dir / f"failpoint.{point}").touch()
            self.env["BGQUEUE_FAILPOINTS"] = ",".join(f"{p}={a}" for p, a in FAILPOINTS.items())
            self.env["BGQUEUE_FAILPOINT_DIR"] = str(self.failpoint_dir)
            for h in self.net.hosts:
                self._start_worker(h)
            for w in self.workers.values():
                w.wait_ready(self.redis.url, timeout=90)
            self.beat = self._root_process("beat", [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO",
                                                    "-s", str(self.workdir / "beat-schedule")])
            self.sampler = self._root_process("sampler", [sys.executable, "-m", "bgqueue.app.cli", "sampler", "run"])
            self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)
            self._supervisor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        # Everything at once, a short grace, then SIGKILL (the namespaces' teardown kills the rest).
        procs = [p for p in (self.beat, self.sampler) if p is not None]
        procs += [w.proc for w in self.workers.values() if w.proc is not None]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.net.teardown()  # kills whatever is left in the namespaces
        if self.pg is not None:
            self.pg.remove()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- processes ---------------------------------------------------------------------------
    def _root_process(self, name: str, cmd: list[str]) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "ab")
        return subprocess.Popen(cmd, env=self.env, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _start_worker(self, h: Host) -> WorkerProcess:
        w = WorkerProcess(self.env, name=f"{h.netns}", concurrency=self.cfg.concurrency, loglevel=self.cfg.loglevel,
                          logfile=self.logdir / f"{h.netns}.log", wrap=tuple(self.net.exec_prefix(h))).start()
        self.workers[h.index] = w
        return w

    def _supervise(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                for h in self.net.hosts:
                    w = self.workers.get(h.index)
                    if h.index in self.down or w is None or w.proc is None or w.proc.poll() is None:
                        continue
                    died = getattr(w, "died_at", None)
                    if died is None:
                        w.died_at = time.monotonic()  # type: ignore[attr-defined]
                    elif time.monotonic() - died >= RESTART_DELAY_S:
                        self._start_worker(h)
                        self.restarts += 1
            for p in (self.beat, self.sampler):  # the restart policy of the root side's processes
                if p is not None and p.poll() is not None:
                    name = "beat" if p is self.beat else "sampler"
                    new = self._root_process(name, list(p.args))  # type: ignore[arg-type]
                    if name == "beat":
                        self.beat = new
                    else:
                        self.sampler = new

    def worker_of_pid(self, pid: int) -> tuple[int, WorkerProcess] | None:
        for index, w in self.workers.items():
            if w.proc is not None and (w.proc.pid == pid or pid in w.child_pids()):
                return index, w
        return None

    def host_down(self, index: int) -> None:
        with self._lock:
            self.down.add(index)
        h = self.net.host(index)
        self.net.kill_all(h)
        self.net.cut(h)

    def host_up(self, index: int) -> None:
        h = self.net.host(index)
        self.net.restore(h)
        with self._lock:
            self.down.discard(index)

    def restart_redis(self) -> None:
        """SIGKILL and start again on the same port and address: it comes back EMPTY (no persistence)."""
        assert self.redis is not None
        if self.redis._proc is not None:
            self.redis._proc.kill()
            self.redis._proc.wait()
            self.redis._proc = None
        time.sleep(1.0)
        self.redis.start()

    def restart_postgres(self) -> None:
        """Immediate shutdown (as a crash) and a start on the same port: every session breaks."""
        assert self.pg is not None
        self.pg.kill()
        time.sleep(1.0)
        self.pg.start()

    # --- clusters ----------------------------------------------------------------------------
    def make_pairs(self, names: list[str]) -> list[ClusterPair]:
        from concurrent.futures import ThreadPoolExecutor

        def make(name: str) -> ClusterPair:
            return hosted_pair(self.net, self.workdir / "pairs" / name, name, next(_server_ids), next(_server_ids),
                               self.passwords, self.cache_dir)

        with ThreadPoolExecutor(3) as pool:
            return list(pool.map(make, names))
