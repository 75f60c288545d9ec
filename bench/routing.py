"""Write gap per application path across switchovers: bgqueue.client on the registry, plain PyMySQL
through a real HAProxy, and a SQLAlchemy QueuePool in maintenance mode — all three writing at once
into the same cluster, each switchover the full path (`bgqueue fleet run FILE --wait --json`:
CLI → Celery → validation → switchover, which flips the registry and HAProxy and drains the pool
first). Then, in the same run, the bare-SQL floor (read_only → wait → promote → registry flip →
HAProxy flip → reverse replication by hand). JSON: per path median / p95 / max write gap,
application-visible errors per switchover, lost writes.

    python bench/routing.py [--switchovers 20] [--rate 500]
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
from bgqueue.app.paths import PathWriter, create_table, lost, proxy_app, sqlalchemy_app  # noqa: E402


def _haproxy(b, proxy_dir: Path):
    from bgqueue.sandbox.haproxy import Backend, BackendServer, HAProxyServer, create_check_user

    pair = b.sandbox.pairs[0]
    for s in (pair.blue, pair.green):
        create_check_user(s)
    backend = Backend("writer", (BackendServer("blue", pair.blue.host, pair.blue.port),
                                 BackendServer("green", pair.green.host, pair.green.port, state="drain")))
    return HAProxyServer(proxy_dir, backend, admin="unix").start()


def fleet_file(b, proxy, swapped: bool, i: int) -> Path:
    doc = json.loads(json.dumps(b.raw))
    c = doc["clusters"][0]
    names = {"blue_server": "blue", "green_server": "green"}
    if swapped:
        c["blue"], c["green"] = c["green"], c["blue"]
        names = {"blue_server": "green", "green_server": "blue"}
    c["routing"] = [{"kind": "haproxy", "admin": proxy.admin_address, "backend": "writer", **names}]
    c["maintenance"] = {"mode": "drain", "ack_timeout_s": 5, "on_timeout": "proceed"}
    doc["defaults"]["thresholds"].update({"sync_poll_s": 0.1, "monitor_window_s": 0})
    path = b.workdir / f"routing-{i}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchovers", type=int, default=20)
    ap.add_argument("--rate", type=float, default=500.0, help="writes/s in all, shared by the three paths")
    ap.add_argument("--settle", type=float, default=1.5, help="seconds between switchovers")
    args = ap.parse_args()

    from bgqueue.adapters.routing.haproxy import HAProxyRuntime
    from bgqueue.client.sqlalchemy import routed_engine
    from bgqueue.sandbox import APP_DATABASE, APP_USER

    with GapBench("bgqueue-bench-routing-", args.rate / 3) as b:
        proxy = _haproxy(b, b.workdir / "haproxy")
        redis_url = b.sandbox.info["redis"]["url"]
        pw = b.sandbox.passwords.app
        _create_tables(b)
        spec = b.spec
        engine = routed_engine(spec.name, redis_url, APP_USER, pw, APP_DATABASE, maintenance=True,
                               client_id="bench-sqlalchemy", pool_size=2,
                               endpoints=[(spec.blue.host, spec.blue.port), (spec.green.host, spec.green.port)])
        port = proxy.frontend_port("writer")
        via_haproxy = proxy_app("127.0.0.1", port, APP_USER, pw, APP_DATABASE, "appdb.bench_haproxy")
        via_sqlalchemy = sqlalchemy_app(engine, "appdb.bench_sqlalchemy")

        paths = {"haproxy": PathWriter("haproxy", args.rate / 3, via_haproxy).start(),
                 "sqlalchemy_maintenance": PathWriter("sqlalchemy", args.rate / 3, via_sqlalchemy).start()}
        time.sleep(1.0)
        ends = [spec.blue, spec.green]
        windows: list[tuple[float, float]] = []
        registry_gaps: list[float] = []
        try:
            for i in range(args.switchovers):
                # The operator's preparation of the proxy: the next primary's server in drain (checked).
                nxt = "green" if ends[0] == spec.blue else "blue"
                HAProxyRuntime(proxy.admin_address).set_state("writer", nxt, "drain")
                time.sleep(2.2)  # readiness wants a settled health check (whole seconds in HAProxy)
                path = fleet_file(b, proxy, swapped=ends[0] != spec.blue, i=i)
                t0 = time.monotonic()
                p = subprocess.run([sys.executable, "-m", "bgqueue.app.cli", "fleet", "run", str(path), "--wait",
                                    "--json"], env=b.env, cwd=str(REPO), capture_output=True, text=True, timeout=180)
                t1 = time.monotonic()
                if p.returncode != 0:
                    raise SystemExit(f"switchover {i} failed ({p.returncode}): {p.stdout[-1500:]} {p.stderr[-1500:]}")
                row = json.loads(p.stdout)["clusters"][0]
                if row["phase"] != "COMPLETED":
                    raise SystemExit(f"switchover {i}: {row['phase']}: {row['reason']}")
                registry_gaps.append(b.gap(t0, t1, args.settle))
                windows.append((t0, t1 + args.settle))
                ends.reverse()
            floor = []
            for _ in range(args.switchovers):
                nxt = "green" if ends[0] == spec.blue else "blue"
                HAProxyRuntime(proxy.admin_address).set_state("writer", nxt, "ready")
                time.sleep(args.settle)
                t0 = time.monotonic()
                bare_sql_switch(spec, ends[0], ends[1], b.rt.routing, b.sandbox.passwords.repl)
                HAProxyRuntime(proxy.admin_address).flip_writer("writer", nxt, "blue" if nxt == "green" else "green",
                                                                force=True)
                t1 = time.monotonic()
                floor.append(b.gap(t0, t1, args.settle))
                ends.reverse()
        finally:
            for w in paths.values():
                w.stop()
            engine.bgqueue_close()
        out = {"benchmark": "routing_write_gap", "switchovers_each": args.switchovers,
               "target_rate_writes_per_s": args.rate, "paths": {}}
        registry = summary(registry_gaps)
        res = b.result("routing_write_gap", "switchovers_each", args.switchovers, registry_gaps, floor,
                       new=ends[0], old=ends[1])
        # Failed transactions over the whole run (the floor's switchovers too: an upper bound).
        client_errors = sum((res["writer"].get("failures") or {}).values())
        out["paths"]["registry"] = {**{k: registry[k] for k in ("median_ms", "p95_ms", "max_ms")},
                                    "app_errors_per_switchover": round(client_errors / max(1, args.switchovers), 2),
                                    "lost_writes": res["lost_writes"]}
        for name, w in paths.items():
            gaps = [w.gap_ms(t0, t1) for t0, t1 in windows]
            s = summary(gaps)
            errs = [w.errors_between(t0, t1) for t0, t1 in windows]
            out["paths"][name] = {**{k: s[k] for k in ("median_ms", "p95_ms", "max_ms")},
                                  "app_errors_per_switchover": round(sum(errs) / len(errs), 2),
                                  "lost_writes": _lost(b, name, w), "error_samples_whole_run": w.samples}
        out["bare_sql_floor"] = {k: res["bare_sql_floor"][k] for k in ("median_ms", "p95_ms", "max_ms")}
        out["targets"] = {"p95_ms": 100, "sqlalchemy_maintenance_app_errors": 0, "lost": 0}
        out["target_met"] = all(p["p95_ms"] <= 100 and p["lost_writes"] == 0 for p in out["paths"].values()) and \
            out["paths"]["sqlalchemy_maintenance"]["app_errors_per_switchover"] == 0
        proxy.stop()
        print(json.dumps(out, indent=2))


def _create_tables(b) -> None:
    pair = b.sandbox.pairs[0]
    with pair.blue.root() as c:
        for t in ("appdb.bench_haproxy", "appdb.bench_sqlalchemy"):
            create_table(c, t)
    pair.wait_green_synced()


def _lost(b, name: str, w: PathWriter) -> int:
    """Acknowledged rows missing from the current primary (they must all be there)."""
    table = "appdb.bench_haproxy" if name == "haproxy" else "appdb.bench_sqlalchemy"
    route = b.rt.routing.get(b.spec.name)
    pair = b.sandbox.pairs[0]
    server = pair.blue if route.port == pair.blue.port else pair.green
    with server.root() as c:
        return lost(c, table, w.acked_ids())


if __name__ == "__main__":
    main()
