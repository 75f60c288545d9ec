"""One chaos round: a batch of clusters switched under continuous writes while one fault strikes,
then judged by the independent checker.

The writers are the application (unprivileged user ``app`` through ``bgqueue.client``, on the root
side) and keep the ledger of acknowledged writes. The batch is enqueued with the real CLI.
"""
from __future__ import annotations

import json
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis

from tests.chaos import checker
from tests.chaos.faults import inject
from tests.chaos.world import REPO, World
from tests.fixtures.bgq import write_fleet

# Every deployment must be terminal within this (the chaos world's stall bounds are 15 s / 30 s,
# the lease 8 s; a paused or cut-off worker holds a switchover at most ~lease + watchdog).
TERMINAL_BOUND_S = 150.0


class StoreReader:
    """Reads the store's tables with its own SQL (reconnects: PostgreSQL may be restarted)."""

    def __init__(self, url: str, batch_id: str | None = None):
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.batch_id = batch_id
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _query(self, sql: str, args=()) -> list[dict]:
        with self._lock:
            for attempt in range(2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                    with self._conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
                        cur.execute(sql, args)
                        return list(cur.fetchall())
                except psycopg.OperationalError:
                    self._conn = None
                    if attempt:
                        return []
                    time.sleep(0.5)
        return []

    def deployments(self) -> list[dict]:
        if self.batch_id is None:
            return []
        return self._query("SELECT id, cluster, phase, epoch, owner, reason, writes_blocked_ms FROM deployments "
                           "WHERE batch_id = %s", (self.batch_id,))

    def deployment(self, dep_id: str) -> dict | None:
        rows = self._query("SELECT id, cluster, phase, epoch, owner, reason FROM deployments WHERE id = %s", (dep_id,))
        return rows[0] if rows else None

    def steps(self, dep_id: str) -> list[dict]:
        return self._query("SELECT procedure, name, status, epoch, started_at FROM steps WHERE deployment_id = %s "
                           "ORDER BY id", (dep_id,))

    def route(self, cluster: str) -> tuple[str, int] | None:
        rows = self._query("SELECT host, port FROM routes WHERE namespace = 'default' AND cluster = %s", (cluster,))
        return (rows[0]["host"], int(rows[0]["port"])) if rows else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass
class RoundResult:
    index: int
    fault: str
    fault_detail: dict
    verdicts: list[checker.ClusterVerdict] = field(default_factory=list)
    samples: int = 0
    two_writable: int = 0
    time_to_terminal_s: dict[str, float] = field(default_factory=dict)
    writes_blocked_s: dict[str, float] = field(default_factory=dict)
    acked: int = 0
    duration_s: float = 0.0

    @property
    def inconsistent(self) -> int:
        return sum(not v.consistent for v in self.verdicts)

    @property
    def zombies(self) -> int:
        return sum(len(v.zombies) for v in self.verdicts)

    def summary(self) -> dict:
        return {"round": self.index, "fault": self.fault, "fault_detail": self.fault_detail,
                "phases": {v.cluster: v.phase for v in self.verdicts}, "inconsistent": self.inconsistent,
                "reasons": {v.cluster: v.reason for v in self.verdicts if v.phase != "COMPLETED"},
                "problems": {v.cluster: v.problems for v in self.verdicts if v.problems},
                "zombies": {v.cluster: v.zombies for v in self.verdicts if v.zombies},
                "two_writable_samples": self.two_writable, "samples": self.samples, "acked": self.acked,
                "max_time_to_terminal_s": max(self.time_to_terminal_s.values(), default=None),
                "max_writes_blocked_s": max(self.writes_blocked_s.values(), default=None),
                "duration_s": round(self.duration_s, 1)}


def _runtime(world: World):
    from bgqueue.adapters.runtime import Runtime
    from config.settings import Settings

    settings = Settings(home=Path(world.env["BGQUEUE_HOME"]), redis_url=world.env["BGQUEUE_REDIS_URL"],
                        store_url=world.env["BGQUEUE_STORE_URL"])
    return Runtime.build(settings)


def _redis_route(client: redis.Redis, cluster: str) -> tuple[str, int] | None:
    try:
        fields = client.hgetall(f"bgq:default:route:{cluster}")
    except redis.RedisError:
        return None
    return (fields["host"], int(fields["port"])) if fields.get("host") else None


def run_round(world: World, index: int, fault: str, rng: random.Random, timeout_s: float = TERMINAL_BOUND_S) -> RoundResult:
    from bgqueue.client.workload import start_workload
    from bgqueue.model.fleet import load_fleet

    started = time.monotonic()
    tag = secrets.token_hex(2)
    names = [f"k{index:02d}{tag}c{i}" for i in range(world.cfg.clusters)]
    pairs = world.make_pairs(names)
    by_name = {p.name: p for p in pairs}
    store = StoreReader(world.env["BGQUEUE_STORE_URL"])
    result = RoundResult(index, fault, {})
    loads = []
    try:
        for p in pairs:
            checker.enable_general_log(p)
        path = write_fleet(world.workdir / f"fleet-{index:02d}.yaml", pairs)
        specs = load_fleet(path).clusters
        rt = _runtime(world)
        loads = [start_workload(s, world.env["BGQUEUE_REDIS_URL"], rt.routing, app_user="app",
                                app_password=world.passwords.app, rate_hz=world.cfg.rate_hz) for s in specs]
        sampler = checker.WritableSampler(pairs)
        sampler.start()
        time.sleep(0.5)
        r = subprocess.run([sys.executable, "-m", "bgqueue.app.cli", "fleet", "run", str(path), "--json"],
                           env=world.env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"fleet run failed ({r.returncode}): {r.stdout}{r.stderr}")
        opened = json.loads(r.stdout)
        store.batch_id = opened["batch"]
        t0 = time.monotonic()
        done = threading.Event()
        box: dict = {}

        def strike() -> None:
            try:
                box["inj"] = inject(world, fault, rng, t0, store, by_name, done.is_set)
            except Exception as e:  # the report says so
                box["error"] = repr(e)

        striker = threading.Thread(target=strike, name="chaos-fault", daemon=True)
        striker.start()
        terminal_at: dict[str, float] = {}
        while time.monotonic() - t0 < timeout_s:
            for d in store.deployments():
                if d["phase"] in checker.TERMINAL and d["cluster"] not in terminal_at:
                    terminal_at[d["cluster"]] = round(time.monotonic() - t0, 1)
            if len(terminal_at) == len(names) and not striker.is_alive():
                break
            time.sleep(0.2)
        done.set()
        striker.join(60)
        inj = box.get("inj")
        if inj is not None:
            inj.undo()
            result.fault_detail = {"at_s": inj.at_s, **inj.detail}
        if "error" in box:
            result.fault_detail["error"] = box["error"]
        time.sleep(1.0)  # writes go on against the final writer
        for w in loads:
            w.writer.stop(timeout=30)
        sampler.stop()
        result.samples, result.two_writable = sampler.samples, len(sampler.two_writable)
        result.time_to_terminal_s = terminal_at
        red = redis.Redis.from_url(world.env["BGQUEUE_REDIS_URL"], decode_responses=True, socket_timeout=5)
        # The Redis copy is republished from the store every 10 s (beat) after a Redis restart.
        deadline = time.monotonic() + 25
        deps = {d["cluster"]: d for d in store.deployments()}
        for load in loads:
            name = load.spec.name
            dep = deps.get(name, {"phase": "MISSING", "reason": None, "id": None})
            steps = store.steps(dep["id"]) if dep.get("id") else []
            while _redis_route(red, name) != store.route(name) and time.monotonic() < deadline:
                time.sleep(0.5)
            acked = load.writer.acked_ids()
            result.acked += len(acked)
            gaps = load.writer.gaps_ms()
            result.writes_blocked_s[name] = round(max(gaps, default=0.0) / 1000, 2)
            v = checker.check_cluster(by_name[name], dep, steps, store.route(name), _redis_route(red, name), acked)
            if name not in terminal_at:
                v.problems.append(f"not terminal within {timeout_s:g}s")
            starts = _run_starts(steps)
            lock = _lock_name(name)
            for server in (by_name[name].blue, by_name[name].green):
                rows = checker.general_log(server)
                found = checker.zombie_statements(rows, lock, starts)
                v.zombies += [(server.name, *z) for z in found]
                if found:  # the evidence, for a look (statements redacted)
                    evidence = world.workdir / f"zombies-{server.name}.json"
                    evidence.write_text(json.dumps({
                        "general_log": [(str(a), t, c, checker.redact(x)) for a, t, c, x in rows],
                        "steps": steps, "run_starts": starts}, default=str, indent=1))
            result.verdicts.append(v)
        red.close()
    finally:
        for w in loads:
            try:
                w.stop()
            except Exception:
                pass
        store.close()
        for p in pairs:
            p.stop()
            for s in (p.blue, p.green):
                world.net.release_address(s.host)
            shutil.rmtree(p.workdir, ignore_errors=True)  # ~100 MB a pair; a long run makes hundreds
        result.duration_s = time.monotonic() - started
    return result


def _run_starts(steps: list[dict]) -> list[datetime]:
    """When each procedure run (switchover/rollback epoch) wrote its first journal row."""
    firsts: dict[tuple, datetime] = {}
    for s in steps:
        if s["procedure"] in ("switchover", "rollback"):
            key = (s["procedure"], s["epoch"])
            at = s["started_at"]
            if at.tzinfo is not None:  # naive UTC, as the servers' general log (this machine runs in UTC)
                at = at.astimezone(UTC).replace(tzinfo=None)
            firsts[key] = min(firsts.get(key, at), at)
    return sorted(firsts.values())


def _lock_name(cluster: str) -> str:
    return f"bgq:procedure:{cluster}"[:64]
