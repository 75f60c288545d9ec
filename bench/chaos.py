"""Chaos: N rounds (default 20) of a batch of clusters switched under continuous writes by workers on
three hosts (network namespaces) sharing a PostgreSQL store and Redis, while one fault strikes at a
random moment of each round; every round is judged by the independent checker (tests/chaos).

Faults (cycled in a shuffled order, so every kind comes up): kill -9 of a worker child or parent,
a whole host lost, a worker paused past its lease (SIGSTOP, SIGCONT after the takeover), Redis
killed and restarted empty, PostgreSQL restarted, a partition between the host running a
switchover and that cluster's blue or green. Needs root (namespaces) and the sandbox binaries.

    python bench/chaos.py [--rounds 20] [--clusters 6] [--seed 19] [--rate 25]

Prints one JSON document: rounds, deployments, faults (by kind), terminal, inconsistent,
two_writable_samples, lost_writes, failed (with reasons), max_time_to_terminal_s,
max_writes_blocked_s (by fault), zombie_actions, and each round's summary.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bgqueue.sandbox import SandboxPasswords  # noqa: E402
from bgqueue.sandbox.mariadb import template_datadir  # noqa: E402
from bgqueue.sandbox.postgres import template_datadir as pg_template  # noqa: E402
from tests.chaos.faults import FAULTS  # noqa: E402
from tests.chaos.rounds import TERMINAL_BOUND_S, run_round  # noqa: E402
from tests.chaos.world import ChaosConfig, World  # noqa: E402


def schedule(rounds: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    while len(out) < rounds:
        kinds = list(FAULTS)
        rng.shuffle(kinds)
        out += kinds
    return out[:rounds]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clusters", type=int, default=6)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--rate", type=float, default=25.0, help="writes/s per cluster")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of " + ",".join(FAULTS))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, evidence)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        ap.error(f"unknown faults: {sorted(unknown)}")
    plan = [k for k in schedule(args.rounds * 3, rng) if k in kinds][:args.rounds]
    passwords = SandboxPasswords.generate()
    passwords.export_env()
    work = Path(tempfile.mkdtemp(prefix="bgq-chaos-"))
    cache = work / "cache"
    template_datadir(cache)
    pg_template(cache)
    world = World(work, passwords, ChaosConfig(clusters=args.clusters, rate_hz=args.rate),
                  cache_dir=cache, pg_cache_dir=cache)
    results = []
    started = time.monotonic()
    with world:
        for i, kind in enumerate(plan, 1):
            r = run_round(world, i, kind, random.Random(f"{args.seed}-{i}"))
            results.append(r)
            print(json.dumps({"progress": r.summary()}, default=str), file=sys.stderr, flush=True)
    verdicts = [v for r in results for v in r.verdicts]
    blocked: dict[str, float] = {}
    for r in results:
        blocked[r.fault] = max(blocked.get(r.fault, 0.0), max(r.writes_blocked_s.values(), default=0.0))
    out = {
        "rounds": len(results), "deployments": len(verdicts), "faults": dict(Counter(r.fault for r in results)),
        "terminal": sum(v.phase in ("COMPLETED", "ROLLED_BACK", "SWITCHOVER_FAILED", "NO_GO", "FAILED")
                        for v in verdicts),
        "phases": dict(Counter(v.phase for v in verdicts)),
        "inconsistent": sum(not v.consistent for v in verdicts),
        "two_writable_samples": sum(r.two_writable for r in results),
        "samples": sum(r.samples for r in results),
        "lost_writes": sum(v.lost_writes for v in verdicts),
        "acked_writes": sum(r.acked for r in results),
        "failed": [{"round": r.index, "fault": r.fault, "cluster": v.cluster, "phase": v.phase, "reason": v.reason}
                   for r in results for v in r.verdicts if v.phase in ("FAILED", "SWITCHOVER_FAILED")],
        "max_time_to_terminal_s": max((t for r in results for t in r.time_to_terminal_s.values()), default=None),
        "terminal_bound_s": TERMINAL_BOUND_S,
        "max_writes_blocked_s": max(blocked.values(), default=None),
        "max_writes_blocked_s_by_fault": blocked,
        "zombie_actions": sum(len(v.zombies) for v in verdicts),
        "worker_restarts": world.restarts,
        "wall_s": round(time.monotonic() - started, 1),
        "per_round": [r.summary() for r in results],
    }
    print(json.dumps(out, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    ok = (out["inconsistent"] == 0 and out["two_writable_samples"] == 0 and out["lost_writes"] == 0
          and out["zombie_actions"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
