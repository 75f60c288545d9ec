"""Write gap of a rollback: the full bgqueue path against a bare hand-sequenced SQL floor.

One blue/green MariaDB (or, with --flavour mysql, Oracle MySQL) pair, one redis-server, one Celery worker process and the sampler,
all real. An unprivileged application writer inserts at ~500 writes/s through bgqueue.client.
In the same run:
  - full path: N times, `bgqueue fleet run` switches blue → green (the deployment then sits in
    its monitoring window), then `bgqueue rollback CLUSTER --yes` (CLI process → Celery →
    fence green, wait for blue through reverse replication, promote blue, flip the route,
    green replicates from blue again) — the gap measured is the rollback's;
  - floor: N times, a bare SQL switch blue → green, then a bare SQL switch back (measured).
Prints JSON: median / p95 / max write gap for both, the ratios, lost writes.

    python bench/rollback.py [--rollbacks 20] [--rate 500] [--flavour mariadb|mysql]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import GapBench, bare_sql_switch, summary  # noqa: E402


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgqueue.app.cli", *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=180)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rollbacks", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--flavour", choices=["mariadb", "mysql"], default="mariadb",
                    help="the pair's server (its own bare-SQL floor in the same run)")
    args = ap.parse_args()

    # A long monitoring window: each switched deployment waits there for its rollback.
    with GapBench("bgqueue-bench-rollback-", args.rate, {"monitor_window_s": 3600, "sync_poll_s": 0.1},
                  flavour=args.flavour) as b:
        from bgqueue.adapters.store import deployments as deps
        from bgqueue.adapters.store import journal

        spec = b.spec
        full, blocked = [], []
        for i in range(args.rollbacks):
            r = cli(b.env, "fleet", "run", str(b.path), "--json")
            if r.returncode != 0:
                raise SystemExit(f"fleet run {i}: {r.stderr[-2000:]}")
            dep_id = json.loads(r.stdout)["deployments"][spec.name]
            deadline = time.monotonic() + 120
            while deps.get_deployment(b.rt.store, dep_id).phase != "MONITORING":
                d = deps.get_deployment(b.rt.store, dep_id)
                if d.phase in ("NO_GO", "FAILED", "SWITCHOVER_FAILED") or time.monotonic() > deadline:
                    raise SystemExit(f"switchover {i}: {d.phase}: {d.reason}")
                time.sleep(0.05)
            time.sleep(args.settle)
            t0 = time.monotonic()
            r = cli(b.env, "rollback", spec.name, "--yes")
            t1 = time.monotonic()
            if r.returncode != 0:
                raise SystemExit(f"rollback {i}: {r.stdout} {r.stderr[-2000:]}")
            full.append(b.gap(t0, t1, args.settle))
            steps = journal.steps(b.rt.store, dep_id, "rollback")
            note = [s for s in steps if s.name == "rolled_back"][-1]
            if note.detail.get("writes_blocked_ms") is not None:
                blocked.append(note.detail["writes_blocked_ms"])
            if any(s.name == "observe" for s in steps):
                raise SystemExit(f"rollback {i} was resumed by a second runner: the measurement is not clean")

        floor = []
        for _ in range(args.rollbacks):
            time.sleep(args.settle)
            bare_sql_switch(spec, spec.blue, spec.green, b.rt.routing, b.sandbox.passwords.repl, args.flavour)
            time.sleep(args.settle)
            t0 = time.monotonic()
            bare_sql_switch(spec, spec.green, spec.blue, b.rt.routing, b.sandbox.passwords.repl, args.flavour)
            t1 = time.monotonic()
            floor.append(b.gap(t0, t1, args.settle))

        print(json.dumps(b.result("rollback_write_gap", "rollbacks_each", args.rollbacks, full, floor,
                                  new=spec.blue, old=spec.green,
                                  full_path_writes_blocked_ms=summary(blocked)), indent=2))


if __name__ == "__main__":
    main()
