"""What one Prometheus scrape of `bgqueue exporter` costs on a store with a long history.

Fills a private SQLite store with N deployments (each with a switchover's figures, 20 check
results, 2 decisions, a journal of 12 steps with a CDC move, and one rollback in 20), then times
scrapes through the exporter's registry: the first (cold) and repeated ones (within the cache's
TTL), and the computation behind a scrape once the incremental counts have settled (what a
scrape costs after each TTL). Prints JSON.

    python bench/exporter.py [--deployments 10000] [--scrapes 20]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest
from sqlalchemy import event, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgqueue.adapters.store.db import Store  # noqa: E402
from bgqueue.adapters.store.models import Batch, CheckResultRow, DecisionRow, Deployment, Step  # noqa: E402
from bgqueue.app.exporter import SECONDS_BUCKETS, registry_for  # noqa: E402  (SECONDS_BUCKETS: for the part behind the cache)

CHECKS = ["replication", "replication_lag", "checksums", "drift", "activity", "events", "reverse_readiness",
          "signoffs", "staging", "ddl"]


def fill(store: Store, n: int) -> None:
    rnd = random.Random(7)
    now = datetime.now(UTC)
    batch = str(uuid.uuid4())
    with store.begin() as c:
        c.execute(insert(Batch), [{"id": batch, "fleet_name": "bench", "fleet_path": "/bench", "fleet_sha256": "0" * 64,
                                   "requested_by": "bench", "status": "DONE", "created_at": now}])
        deps, checks, decisions, steps = [], [], [], []
        for i in range(n):
            dep = str(uuid.uuid4())
            rolled = i % 20 == 0
            deps.append({"id": dep, "batch_id": batch, "cluster": f"c{i:05d}", "provider": "mysql",
                         "phase": "ROLLED_BACK" if rolled else "COMPLETED", "epoch": 3, "spec": {"name": f"c{i:05d}"},
                         "reason": "automatic rollback: p99" if rolled else None, "created_at": now, "updated_at": now,
                         "switch_duration_ms": rnd.uniform(20, 900), "writes_blocked_ms": rnd.uniform(5, 300)})
            for rnd_no in (1, 2):
                checks += [{"deployment_id": dep, "round": rnd_no, "name": name,
                            "status": "pass" if rnd_no == 2 else rnd.choice(["pass", "wait"]), "retryable": False,
                            "reason": "ok", "at": now} for name in CHECKS]
                decisions.append({"deployment_id": dep, "kind": "pre_switch", "round": rnd_no,
                                  "verdict": "GO" if rnd_no == 2 else "WAIT", "reasons": [], "at": now})
            for k in range(10):
                steps.append({"deployment_id": dep, "procedure": "switchover", "name": f"step{k}", "status": "done",
                              "epoch": 3, "detail": {"k": k}, "started_at": now})
            steps.append({"deployment_id": dep, "procedure": "cdc", "name": "resume", "status": "done", "epoch": 3,
                          "detail": {"down_ms": rnd.uniform(50, 5000)}, "started_at": now})
            steps.append({"deployment_id": dep, "procedure": "rollback" if rolled else "monitor",
                          "name": "rolled_back" if rolled else "window", "status": "done", "epoch": 3,
                          "detail": {"writes_blocked_ms": rnd.uniform(5, 300)} if rolled else None, "started_at": now})
        c.execute(insert(Deployment), deps)
        c.execute(insert(CheckResultRow), checks)
        c.execute(insert(DecisionRow), decisions)
        c.execute(insert(Step), steps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployments", type=int, default=10_000)
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"sqlite:///{d}/bench.sqlite")
        fill(store, args.deployments)
        statements = [0]
        event.listen(store.engine, "before_cursor_execute", lambda *a, **k: statements.__setitem__(0, statements[0] + 1))
        reg = registry_for(store)
        times, counts = [], []
        for _ in range(args.scrapes):
            before = statements[0]
            t0 = time.perf_counter()
            body = generate_latest(reg)
            times.append((time.perf_counter() - t0) * 1000)
            counts.append(statements[0] - before)
        # Behind the cache: the computation itself, with the clock moved past the settling time.
        from bgqueue.adapters.store.figures import ExporterFigures
        clock = [0.0]
        figures = ExporterFigures(store, SECONDS_BUCKETS)
        for part in figures.incremental:
            part.clock = lambda: clock[0]
        recompute = []
        for _ in range(args.scrapes):
            t0 = time.perf_counter()
            figures.compute()
            recompute.append((time.perf_counter() - t0) * 1000)
            clock[0] += 61.0
        print(json.dumps({
            "deployments": args.deployments, "scrapes": args.scrapes, "body_bytes": len(body),
            "first_scrape_ms": round(times[0], 1),
            "later_scrapes_ms_median": round(statistics.median(times[1:]), 2) if len(times) > 1 else None,
            "later_scrapes_ms_max": round(max(times[1:]), 2) if len(times) > 1 else None,
            "sql_statements_first": counts[0], "sql_statements_later_total": sum(counts[1:]),
            "computation_ms_cold": round(recompute[0], 1),
            "computation_ms_settled_median": round(statistics.median(recompute[2:]), 1) if len(recompute) > 2 else None,
        }, indent=2))


if __name__ == "__main__":
    main()
