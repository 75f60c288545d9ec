"""Metrics sampler throughput: 120 clusters at 4 Hz from one process, CPU per 1,000 cluster-samples.

Runs real servers: a sandbox of P blue/green MariaDB pairs (default 12) and a redis-server.
240 mariadbd for 120 real clusters do not fit a 2-core machine, so the 120 LOGICAL clusters are
mapped round-robin onto the P pairs: logical cluster k uses pair k mod P. Each logical cluster
has its own name, its own heartbeat row (id = its name), its own stream in Redis and its own two
connections, so every per-cluster query, heartbeat write and Redis append is really done; only
the servers are shared (each serves 120/P logical clusters).

Broker messages are counted, not assumed: the sandbox's redis-server is also what a Celery
broker would be, and its command statistics show every LPUSH/RPUSH/PUBLISH (how kombu sends a
message) issued during the run. Prints one JSON object.

    python bench/sampler.py [--clusters 120] [--pairs 12] [--seconds 25] [--interval 0.25]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from bgqueue.app.sampler import Sampler  # noqa: E402
from bgqueue.model.fleet import ClusterSpec  # noqa: E402
from bgqueue.sandbox import Sandbox  # noqa: E402

_BROKER_SENDS = ("lpush", "rpush", "publish")


def command_counts(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=120)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--pool", type=int, default=16, help="sampler threads")
    ap.add_argument("--replica-status-s", type=float, default=1.0,
                    help="SHOW SLAVE STATUS period per cluster (0: every tick)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds sampled before measuring (connects)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bgq-bench-sampler-") as tmp:
        sandbox = Sandbox(Path(tmp), clusters=args.pairs, detach=False).up()
        try:
            sandbox.passwords.export_env()
            result = run(sandbox, args)
        finally:
            sandbox.down()
    print(json.dumps(result, indent=2))


def run(sandbox: Sandbox, args) -> dict:
    client = redis.Redis.from_url(sandbox.redis.url, decode_responses=True)
    specs = []
    for k in range(args.clusters):
        raw = dict(sandbox.pairs[k % args.pairs].spec_dict(), name=f"lc{k:03d}")
        specs.append(ClusterSpec.model_validate(raw))
    sampler = Sampler(client, clusters=specs, interval_s=args.interval, pool_size=args.pool,
                      replica_status_s=args.replica_status_s)
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run_forever, args=(stop,), name="sampler")
    thread.start()
    try:
        time.sleep(args.warmup)
        before, cmds0 = dict(vars(sampler.stats)), command_counts(client)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(args.seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        after, cmds1 = dict(vars(sampler.stats)), command_counts(client)
    finally:
        stop.set()
        thread.join()
    d = {k: after[k] - before[k] for k in ("ticks", "ticks_missed", "samples", "cluster_skips", "sample_errors")}
    redis_calls = {k: cmds1.get(k, 0) - cmds0.get(k, 0) for k in cmds1}
    redis_calls.pop("info", None)  # this bench's own two INFO calls
    broker_msgs = sum(redis_calls.get(k, 0) for k in _BROKER_SENDS)
    target = args.clusters / args.interval
    now = time.time()
    lags = [s.values["lag_ms"] for spec in specs for s in sampler.metrics.window(spec.name, args.seconds, now)
            if "lag_ms" in s.values]
    probes = [s.values["probe_ms"] for spec in specs for s in sampler.metrics.window(spec.name, args.seconds, now)
              if "probe_ms" in s.values]
    return {
        "clusters": args.clusters, "interval_s": args.interval, "seconds": round(wall, 2),
        "mapping": f"{args.clusters} logical clusters round-robin onto {args.pairs} real blue/green MariaDB pairs "
                   f"({args.clusters // args.pairs} per pair); each logical cluster has its own heartbeat row, "
                   "stream and 2 connections",
        "pool_size": args.pool, "replica_status_s": args.replica_status_s,
        "target_samples_per_s": target,
        "achieved_samples_per_s": round(d["samples"] / wall, 1),
        "achieved_ratio": round(d["samples"] / wall / target, 4),
        "per_cluster_hz": round(d["samples"] / wall / args.clusters, 3),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000_cluster_samples": round(1000 * cpu / max(1, d["samples"]), 3),
        "cpu_cores_used": round(cpu / wall, 3),
        "ticks": d["ticks"], "ticks_missed": d["ticks_missed"], "cluster_skips": d["cluster_skips"],
        "sample_errors": d["sample_errors"],
        "broker_messages_per_sample": broker_msgs / max(1, d["samples"]),
        "redis_commands_per_tick": round(sum(redis_calls.values()) / max(1, d["ticks"]), 1),
        "redis_commands_by_name": redis_calls,
        "lag_ms": {"p50": pct(lags, 0.5), "p99": pct(lags, 0.99), "max": max(lags, default=float("nan"))},
        "probe_ms": {"median": round(statistics.median(probes), 3) if probes else None,
                     "p99": round(pct(probes, 0.99), 3)},
    }


if __name__ == "__main__":
    main()
