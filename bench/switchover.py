"""Write gap of a switchover: the full bgqueue path against a bare hand-sequenced SQL floor.

One blue/green MariaDB (or, with --flavour mysql, Oracle MySQL) pair, one redis-server and one Celery worker process, all real. An
unprivileged application writer inserts at ~500 writes/s through bgqueue.client. Then, in
the same run:
  - full path: N switchovers back and forth, each `bgqueue fleet run FILE --wait --json`
    (CLI process → Celery → prepare/sync/gate → switchover → the client follows the route);
  - floor: N switchovers back and forth by hand-sequenced SQL (read_only, kill sessions,
    MASTER_GTID_WAIT, promote, route flip, reverse replication), the same writer following.
The write gap of one switchover is the longest interval between two acknowledged writes
around it. Prints JSON: median / p95 / max for both, the ratios, lost writes.

    python bench/switchover.py [--switchovers 20] [--rate 500] [--flavour mariadb|mysql]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import GapBench, bare_sql_switch, summary  # noqa: E402


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
    p = subprocess.run([sys.executable, "-m", "bgqueue.app.cli", "fleet", "run", str(path), "--wait", "--json"],
                       env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"fleet run failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout)["clusters"][0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchovers", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--settle", type=float, default=0.5, help="seconds between switchovers")
    ap.add_argument("--flavour", choices=["mariadb", "mysql"], default="mariadb",
                    help="the pair's server (its own bare-SQL floor in the same run)")
    args = ap.parse_args()

    with GapBench("bgqueue-bench-", args.rate, flavour=args.flavour) as b:
        spec = b.spec
        ends = [spec.blue, spec.green]  # ends[0] is the current primary
        full, blocked, durations = [], [], []
        for i in range(args.switchovers):
            path = fleet_file(b.workdir, b.raw, swapped=ends[0] != spec.blue, i=i)
            t0 = time.monotonic()
            row = full_path_switch(path, b.env)
            t1 = time.monotonic()
            if row["phase"] != "COMPLETED":
                raise SystemExit(f"switchover {i}: {row['phase']}: {row['reason']}")
            full.append(b.gap(t0, t1, args.settle))
            blocked.append(row["writes_blocked_ms"])
            durations.append(row["switch_duration_ms"])
            ends.reverse()

        floor = []
        for _ in range(args.switchovers):
            time.sleep(args.settle)
            t0 = time.monotonic()
            bare_sql_switch(spec, ends[0], ends[1], b.rt.routing, b.sandbox.passwords.repl, args.flavour)
            t1 = time.monotonic()
            floor.append(b.gap(t0, t1, args.settle))
            ends.reverse()

        print(json.dumps(b.result("switchover_write_gap", "switchovers_each", args.switchovers, full, floor,
                                  new=ends[0], old=ends[1],
                                  full_path_writes_blocked_ms=summary(blocked),
                                  full_path_switchover_duration_ms=summary(durations)), indent=2))


if __name__ == "__main__":
    main()
