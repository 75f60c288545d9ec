"""Write gap of a rollback: the full bgqueue path against a bare hand-sequenced SQL floor.

One blue/green MariaDB pair, one redis-server, one Celery worker process and the sampler,
all real. An unprivileged application writer inserts at ~500 writes/s through bgqueue.client.
In the same run:
  - full path: N times, `bgqueue fleet run` switches blue → green (the deployment then sits in
    its monitoring window), then `bgqueue rollback CLUSTER --yes` (CLI process → Celery →
    fence green, wait for blue through reverse replication, promote blue, flip the route,
    green replicates from blue again) — the gap measured is the rollback's;
  - floor: N times, a bare SQL switch blue → green, then a bare SQL switch back (measured).
Prints JSON: median / p95 / max write gap for both, the ratios, lost writes.

    python bench/rollback.py [--rollbacks 20] [--rate 500]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import bare_sql_switch, start_sampler, summary  # noqa: E402
from bgqueue.demo import _configure  # noqa: E402
from bgqueue.fleet import load_fleet  # noqa: E402
from bgqueue.sandbox import Sandbox  # noqa: E402
from bgqueue.workload import start_workload, verify  # noqa: E402


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgqueue.cli", *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=180)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rollbacks", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--settle", type=float, default=0.5)
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-bench-rollback-"))
    sandbox = Sandbox(workdir / "sandbox", clusters=1, detach=False).up()
    workers, load, sampler = [], None, None
    try:
        sandbox.passwords.export_env()
        redis_url = sandbox.info["redis"]["url"]
        env = _configure(workdir, redis_url)
        from bgqueue.runtime import get_runtime
        from bgqueue.store import deployments as deps
        from tasks.workers import start_workers

        workers = start_workers(env, redis_url, count=1, concurrency=2, logdir=workdir)
        sampler = start_sampler(env, workdir)
        rt = get_runtime()
        raw = yaml.safe_load(sandbox.fleet_path.read_text())
        raw["defaults"]["thresholds"].update({"monitor_window_s": 3600, "sync_poll_s": 0.1})
        path = workdir / "fleet.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        spec = load_fleet(path).clusters[0]
        load = start_workload(spec, redis_url, rt.routing, app_user="app", app_password=sandbox.passwords.app,
                              rate_hz=args.rate)
        time.sleep(1.0)

        def gap(t0: float, t1: float) -> float:
            time.sleep(args.settle)
            return load.writer.max_gap_ms((t0, t1))

        full, blocked = [], []
        for i in range(args.rollbacks):
            r = cli(env, "fleet", "run", str(path), "--json")
            if r.returncode != 0:
                raise SystemExit(f"fleet run {i}: {r.stderr[-2000:]}")
            dep_id = json.loads(r.stdout)["deployments"][spec.name]
            deadline = time.monotonic() + 120
            while deps.get_deployment(rt.store, dep_id).phase != "MONITORING":
                d = deps.get_deployment(rt.store, dep_id)
                if d.phase in ("NO_GO", "FAILED", "SWITCHOVER_FAILED") or time.monotonic() > deadline:
                    raise SystemExit(f"switchover {i}: {d.phase}: {d.reason}")
                time.sleep(0.05)
            time.sleep(args.settle)
            t0 = time.monotonic()
            r = cli(env, "rollback", spec.name, "--yes")
            t1 = time.monotonic()
            if r.returncode != 0:
                raise SystemExit(f"rollback {i}: {r.stdout} {r.stderr[-2000:]}")
            full.append(gap(t0, t1))
            from bgqueue.store import journal

            note = [s for s in journal.steps(rt.store, dep_id, "rollback") if s.name == "rolled_back"][-1]
            if note.detail.get("writes_blocked_ms") is not None:
                blocked.append(note.detail["writes_blocked_ms"])
            resumed = any(s.name == "observe" for s in journal.steps(rt.store, dep_id, "rollback"))
            if resumed:
                raise SystemExit(f"rollback {i} was resumed by a second runner: the measurement is not clean")

        floor = []
        for _ in range(args.rollbacks):
            time.sleep(args.settle)
            bare_sql_switch(spec, spec.blue, spec.green, rt.routing, sandbox.passwords.repl)
            time.sleep(args.settle)
            t0 = time.monotonic()
            bare_sql_switch(spec, spec.green, spec.blue, rt.routing, sandbox.passwords.repl)
            t1 = time.monotonic()
            floor.append(gap(t0, t1))

        load.stop()
        stats = load.writer.stats()
        v = verify(spec, load.writer.acked_ids(), new=spec.blue, old=spec.green)
        load = None
        f, b = summary(full), summary(floor)
        print(json.dumps({
            "benchmark": "rollback_write_gap",
            "rollbacks_each": args.rollbacks,
            "target_rate_writes_per_s": args.rate,
            "achieved_rate_writes_per_s": stats["rate_hz"],
            "full_path": f,
            "full_path_writes_blocked_ms": summary(blocked),
            "bare_sql_floor": b,
            "ratio_median": round(f["median_ms"] / b["median_ms"], 2),
            "ratio_p95": round(f["p95_ms"] / b["p95_ms"], 2),
            "acked_writes": v.acked,
            "lost_writes": v.lost,
            "writer": {k: stats[k] for k in ("attempted", "acked", "failures")},
            "target_p95_ms": 100,
            "target_met": f["p95_ms"] <= 100 and v.lost == 0,
        }, indent=2))
    finally:
        if load is not None:
            load.stop()
        for w in workers:
            w.stop()
        if sampler is not None:
            sampler.terminate()
            sampler.wait(10)
        sandbox.down()


if __name__ == "__main__":
    main()
