"""Write gap of a switchover: the full bgqueue path against a bare hand-sequenced SQL floor.

One blue/green MariaDB pair, one redis-server and one Celery worker process, all real. An
unprivileged application writer inserts at ~500 writes/s through bgqueue.client. Then, in
the same run:
  - full path: N switchovers back and forth, each `bgqueue fleet run FILE --wait --json`
    (CLI process → Celery → prepare/sync/gate → switchover → the client follows the route);
  - floor: N switchovers back and forth by hand-sequenced SQL (read_only, kill sessions,
    MASTER_GTID_WAIT, promote, route flip, reverse replication), the same writer following.
The write gap of one switchover is the longest interval between two acknowledged writes
around it. Prints JSON: median / p95 / max for both, the ratios, lost writes.

    python bench/switchover.py [--switchovers 20] [--rate 500]
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


def fleet_file(workdir: Path, raw: dict, swapped: bool, i: int) -> Path:
    doc = json.loads(json.dumps(raw))
    c = doc["clusters"][0]
    if swapped:
        c["blue"], c["green"] = c["green"], c["blue"]
    doc["defaults"]["thresholds"].update({"sync_poll_s": 0.1, "monitor_window_s": 0})
    path = workdir / f"fleet-{i}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def full_path_switch(path: Path, env: dict) -> dict:
    p = subprocess.run([sys.executable, "-m", "bgqueue.cli", "fleet", "run", str(path), "--wait", "--json"],
                       env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"fleet run failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout)["clusters"][0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchovers", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--settle", type=float, default=0.5, help="seconds between switchovers")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-bench-"))
    sandbox = Sandbox(workdir / "sandbox", clusters=1, detach=False).up()
    workers = []
    load = None
    sampler = None
    try:
        sandbox.passwords.export_env()
        redis_url = sandbox.info["redis"]["url"]
        env = _configure(workdir, redis_url)
        from bgqueue.runtime import get_runtime
        from tasks.workers import start_workers

        workers = start_workers(env, redis_url, count=1, concurrency=2, logdir=workdir)
        sampler = start_sampler(env, workdir)
        rt = get_runtime()
        raw = yaml.safe_load(sandbox.fleet_path.read_text())
        spec = load_fleet(sandbox.fleet_path).clusters[0]
        load = start_workload(spec, redis_url, rt.routing, app_user="app", app_password=sandbox.passwords.app,
                              rate_hz=args.rate)
        time.sleep(1.0)
        ends = [spec.blue, spec.green]  # ends[0] is the current primary

        def window_gap(t0: float, t1: float) -> float:
            time.sleep(args.settle)  # let the writer ack after the switch so the gap closes
            return load.writer.max_gap_ms((t0, t1))

        full, blocked, durations = [], [], []
        for i in range(args.switchovers):
            path = fleet_file(workdir, raw, swapped=ends[0] != spec.blue, i=i)
            t0 = time.monotonic()
            row = full_path_switch(path, env)
            t1 = time.monotonic()
            if row["phase"] != "COMPLETED":
                raise SystemExit(f"switchover {i}: {row['phase']}: {row['reason']}")
            full.append(window_gap(t0, t1))
            blocked.append(row["writes_blocked_ms"])
            durations.append(row["switch_duration_ms"])
            ends.reverse()

        floor = []
        for _ in range(args.switchovers):
            time.sleep(args.settle)
            t0 = time.monotonic()
            bare_sql_switch(spec, ends[0], ends[1], rt.routing, sandbox.passwords.repl)
            t1 = time.monotonic()
            floor.append(window_gap(t0, t1))
            ends.reverse()

        load.stop()
        stats = load.writer.stats()
        v = verify(spec, load.writer.acked_ids(), new=ends[0], old=ends[1])
        load = None
        f, b = summary(full), summary(floor)
        print(json.dumps({
            "benchmark": "switchover_write_gap",
            "switchovers_each": args.switchovers,
            "target_rate_writes_per_s": args.rate,
            "achieved_rate_writes_per_s": stats["rate_hz"],
            "full_path": f,
            "full_path_writes_blocked_ms": summary(blocked),
            "full_path_switchover_duration_ms": summary(durations),
            "bare_sql_floor": b,
            "ratio_median": round(f["median_ms"] / b["median_ms"], 2),
            "ratio_p95": round(f["p95_ms"] / b["p95_ms"], 2),
            "acked_writes": v.acked,
            "lost_writes": v.lost,
            "writer": {k: stats[k] for k in ("attempted", "acked", "failures") if k in stats},
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
