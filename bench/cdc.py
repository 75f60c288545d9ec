"""CDC gap of the built-in consumer across switchovers back and forth, with lost/duplicate counts.

One blue/green MariaDB (or, with --flavour mysql, Oracle MySQL) pair and one redis-server (a sandbox), all real. An unprivileged
application writer inserts at ~500 writes/s through bgqueue.client; the built-in consumer
(``python -m bgqueue.app.cdc_runner``, its own process, as ``bgqueue cdc run`` runs it) streams the
ledger table to Redis. N switchovers back and forth are driven through the domain procedure
(``switchover.switch_writer``: fence, checkpoint, wait, promote, flip the route, reverse
replication), each followed by the CDC phase (``migrate_pipelines``) until it confirms the move.

The CDC gap of one switchover is the time between the delivery of the last event written on the
old primary and the delivery of the first event written on the new one (measured by the consumer
in the same atomic write as the delivery, Redis time). It includes the switchover's
write-blocked window, so it is set beside the writers' own gap (the longest interval between
two acknowledged writes around the switchover): the part that is CDC's own is the difference.
The consumer's change of source (last event read from the old primary → first read from the
new one) is reported too; it is shorter, because after the flip reverse replication puts green's
first writes into blue's binlog and the consumer may deliver them from blue. At the end every
acknowledged write is looked for in the stream: lost and duplicated events are counted.

    python bench/cdc.py [--switchovers 12] [--rate 500] [--settle 1.0] [--flavour mariadb|mysql]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bgqueue.adapters.cdc.consumer_state import ConsumerState  # noqa: E402
from bgqueue.adapters.cdc.migration import migrate_pipelines  # noqa: E402
from bgqueue.adapters.mysql.server import Server  # noqa: E402
from bgqueue.adapters.store import deployments as deps  # noqa: E402
from bgqueue.adapters.store.journal import Journal, latest_checkpoint  # noqa: E402
from bgqueue.app.demo import _configure  # noqa: E402
from bgqueue.client.audit import audit_stream  # noqa: E402
from bgqueue.client.workload import start_workload  # noqa: E402
from bgqueue.engine.mysql.switchover import SwitchPlan, switch_writer  # noqa: E402
from bgqueue.model.fleet import ClusterSpec, load_fleet  # noqa: E402
from bgqueue.model.phases import Phase  # noqa: E402
from bgqueue.sandbox import Sandbox  # noqa: E402

PIPELINE = {"kind": "binlog", "name": "bench", "tables": ["appdb.bgq_writes"]}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median_ms": round(statistics.median(values), 2), "p95_ms": round(pct(values, 0.95), 2),
            "max_ms": round(max(values), 2), "min_ms": round(min(values), 2)}


def fleet_files(sandbox: Sandbox, workdir: Path) -> tuple[Path, Path]:
    """The sandbox fleet with a binlog pipeline, as written and with blue and green swapped."""
    raw = yaml.safe_load(sandbox.fleet_path.read_text())
    raw["clusters"][0]["pipelines"] = [PIPELINE]
    there = workdir / "fleet.yaml"
    there.write_text(yaml.safe_dump(raw, sort_keys=False))
    c = raw["clusters"][0]
    c["blue"], c["green"] = c["green"], c["blue"]
    back = workdir / "fleet-back.yaml"
    back.write_text(yaml.safe_dump(raw, sort_keys=False))
    return there, back


def switch_and_migrate(rt, spec: ClusterSpec) -> tuple[float, float, dict, tuple[float, float]]:
    """One switchover of ``spec`` (blue → green) and its CDC phase: (switch ms, phase ms, progress)."""
    _, ids = deps.create_batch(rt.store, fleet_name="bench-cdc", fleet_path="-", fleet_text="",
                               clusters=[spec.model_dump(mode="json")])
    claim = deps.claim(rt.store, ids[spec.name], "bench", [Phase.PENDING])
    old = Server(spec.blue, spec.admin, label="blue", tls=spec.tls)
    new = Server(spec.green, spec.admin, label="green", tls=spec.tls)
    t0, m0 = time.perf_counter(), time.monotonic()
    try:
        result = switch_writer(SwitchPlan(cluster=spec, old=old, new=new, repl=spec.replication), rt.store,
                               Journal(rt.store, claim, "switchover"), rt.routing, spec.thresholds.catchup_timeout_s)
    finally:
        old.close()
        new.close()
    switch_ms = (time.perf_counter() - t0) * 1000
    if not result.switched:
        raise SystemExit(f"switchover failed: {result.reason}")
    cp = latest_checkpoint(rt.store, claim.deployment_id, "switchover")
    journal = Journal(rt.store, claim, "cdc")
    t1 = time.perf_counter()
    while True:  # what the Celery task does: re-invoke after wait_s
        progress = migrate_pipelines(spec, cp, journal, None, redis=rt.redis)
        if progress.done:
            break
        if time.perf_counter() - t1 > 120:
            raise SystemExit(f"CDC phase not done after 120 s: {progress.state}")
        time.sleep(progress.wait_s)
    if progress.problems:
        raise SystemExit(f"CDC phase problems: {progress.problems}")
    return switch_ms, (time.perf_counter() - t1) * 1000, progress.downtime_ms, (m0, time.monotonic())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchovers", type=int, default=12)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between switchovers")
    ap.add_argument("--flavour", choices=["mariadb", "mysql"], default="mariadb", help="the pair's server")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-bench-cdc-"))
    sandbox = Sandbox(workdir / "sandbox", clusters=1, detach=False, flavour=args.flavour).up()
    consumer = load = None
    try:
        sandbox.passwords.export_env()
        env = _configure(workdir, sandbox.info["redis"]["url"])
        from bgqueue.adapters.runtime import get_runtime

        rt = get_runtime()
        there, back = fleet_files(sandbox, workdir)
        specs = [load_fleet(there).clusters[0], load_fleet(back).clusters[0]]
        state = ConsumerState(rt.redis, specs[0].name, specs[0].pipelines[0])
        log = open(workdir / "consumer.log", "ab")
        consumer = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cdc_runner", "--fleet", str(there)], env=env,
                                    cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
        if not state.wait_streaming(30):
            raise SystemExit(f"consumer did not start; see {workdir / 'consumer.log'}")
        load = start_workload(specs[0], sandbox.info["redis"]["url"], rt.routing, app_user="app",
                              app_password=sandbox.passwords.app, rate_hz=args.rate)
        time.sleep(args.settle)
        switch_ms, phase_ms, down, windows = [], [], [], []
        for i in range(args.switchovers):
            s, p, d, window = switch_and_migrate(rt, specs[i % 2])
            switch_ms.append(s)
            phase_ms.append(p)
            down.append(d[PIPELINE["name"]])
            windows.append(window)
            time.sleep(args.settle)
        write_gaps = [load.writer.max_gap_ms(w) for w in windows]
        load.stop()
        stats = load.writer.stats()
        writer = specs[args.switchovers % 2].blue  # the current primary
        with Server(writer, specs[0].admin, label="writer", tls=specs[0].tls) as srv:
            final = srv.gtid_position()
        if not state.wait_delivered(final, 60):
            raise SystemExit(f"consumer did not deliver up to {final}")
        audit = audit_stream(rt.redis, state.stream, load.writer.acked_ids())
        moves = list(reversed(state.moves(args.switchovers)))
        changes = list(reversed(state.origin_changes(args.switchovers)))
        gap = summary([c.gap_ms for c in changes])
        print(json.dumps({
            "benchmark": "cdc_gap",
            "flavour": args.flavour,
            "switchovers": args.switchovers,
            "target_rate_writes_per_s": args.rate,
            "achieved_rate_writes_per_s": stats["rate_hz"],
            "cdc_gap": gap,
            "writers_gap": summary(write_gaps),
            "cdc_gap_minus_writers_gap_median_ms": round(statistics.median(
                c.gap_ms - w for c, w in zip(changes, write_gaps, strict=False)), 2) if len(changes) == len(write_gaps) else None,
            "consumer_source_switch_gap": summary([m.gap_ms for m in moves]),
            "cdc_phase_downtime_ms": summary(down),
            "cdc_phase_duration_ms": summary(phase_ms),
            "switchover_duration_ms": summary(switch_ms),
            "moves": [f"{m.source_from}->{m.source_to}" for m in moves][:2],
            "acked_writes": audit.acked,
            "delivered_events": audit.delivered,
            "lost": audit.lost,
            "duplicates": audit.duplicates,
            "unacknowledged_delivered": audit.unacknowledged,
            "writer_failures": stats["failures"],
            "target": {"median_ms": 1000, "lost": 0, "duplicates": 0},
            "target_met": gap["median_ms"] <= 1000 and audit.ok and len(changes) == args.switchovers,
        }, indent=2))
    finally:
        if load is not None:
            load.stop()
        if consumer is not None and consumer.poll() is None:
            consumer.terminate()
            consumer.wait(20)
        sandbox.down()


if __name__ == "__main__":
    main()
