"""`bgqueue demo`: a sandbox fleet switches blue → green under continuous writes.

Everything is real: mariadbd pairs and a redis-server on free loopback ports, Celery worker
processes, an unprivileged application user writing through ``bgqueue.client``. The batch is
enqueued through the same code path as ``bgqueue fleet run``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bgqueue.fleet import load_fleet
from bgqueue.sandbox import Sandbox


def _configure(home: Path, redis_url: str) -> dict[str, str]:
    """Point this process (and the workers it starts) at the sandbox's redis and a fresh store."""
    os.environ.update({"BGQUEUE_HOME": str(home), "BGQUEUE_REDIS_URL": redis_url,
                       "BGQUEUE_STORE_URL": f"sqlite:///{home / 'store.sqlite'}"})
    from bgqueue.runtime import get_runtime
    from config.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    get_runtime.cache_clear()
    import tasks.application

    tasks.application.configure(get_settings())
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    return env


def run_demo(clusters: int = 4, rate: float = 100.0, keep: bool = False, console: Console | None = None) -> int:
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)
    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-demo-"))
    sandbox = Sandbox(workdir / "sandbox", clusters=clusters, detach=False)
    workers: list = []
    loads: list = []
    try:
        t0 = time.perf_counter()
        sandbox.up()
        passwords = sandbox.passwords
        passwords.export_env()  # the workers resolve credentials from their environment
        redis_url = sandbox.info["redis"]["url"]
        env = _configure(workdir, redis_url)
        console.print(f"sandbox: {clusters} blue/green MariaDB pairs + redis-server up in "
                      f"{time.perf_counter() - t0:.1f}s ({workdir})")
        from bgqueue.progress import wait_for_batch
        from bgqueue.runtime import get_runtime
        from bgqueue.workload import start_workload, verify
        from tasks.batch import enqueue_fleet
        from tasks.workers import start_workers

        t1 = time.perf_counter()
        workers = start_workers(env, redis_url, count=2, concurrency=4, logdir=workdir)
        console.print(f"celery: 2 worker processes ready in {time.perf_counter() - t1:.1f}s")
        rt = get_runtime()
        fleet_path = str(sandbox.fleet_path)
        specs = load_fleet(fleet_path).clusters
        loads = [start_workload(s, redis_url, rt.routing, app_user="app", app_password=passwords.app, rate_hz=rate)
                 for s in specs]
        console.print(f"writers: {len(loads)} application writers at {rate:g} writes/s each (user 'app')")
        time.sleep(1.0)
        opened = enqueue_fleet(fleet_path)
        console.print(f"batch {opened.batch_id} enqueued (bgqueue fleet run {fleet_path})")
        rows = wait_for_batch(rt, opened.batch_id, timeout=300, console=console)
        time.sleep(1.0)  # the writers go on against the new primaries
        for w in loads:
            w.stop()
        return _report(console, rt, specs, loads, rows, verify)
    finally:
        for w in loads:
            try:
                w.stop()
            except Exception:
                pass
        for w in workers:
            w.stop()
        sandbox.down()
        if keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _report(console: Console, rt, specs, loads, rows, verify) -> int:
    by_cluster = {d.cluster: d for d in rows}
    table = Table(title="demo: per-cluster outcome", title_justify="left")
    for col in ("cluster", "phase", "switch ms", "blocked ms", "max gap ms", "acked", "rows new", "lost",
                "reverse replication"):
        table.add_column(col, justify="left" if col in ("cluster", "phase", "reverse replication") else "right",
                         no_wrap=True)
    switched = lost_total = 0
    max_gap = 0.0
    for spec, load in zip(specs, loads):
        d = by_cluster[spec.name]
        ok = d.phase == "COMPLETED"
        new, old = (spec.green, spec.blue) if ok else (spec.blue, spec.green)
        v = verify(spec, load.writer.acked_ids(), new=new, old=old)
        gap = load.writer.max_gap_ms()
        switched += ok
        lost_total += v.lost
        max_gap = max(max_gap, gap)
        reverse = _reverse_state(spec) if ok else "-"
        table.add_row(spec.name, d.phase, _f(d.switch_duration_ms), _f(d.writes_blocked_ms), f"{gap:.1f}",
                      str(v.acked), str(v.rows_on_new), str(v.lost), reverse)
        if d.reason and not ok:
            console.print(f"{spec.name}: {d.reason}")
    console.print(table)
    console.print(f"demo: clusters={len(specs)} switched={switched} lost_writes={lost_total} "
                  f"max_write_gap_ms={max_gap:.1f}", highlight=False)
    sys.stdout.flush()
    return 0 if (switched == len(specs) and lost_total == 0) else 1


def _reverse_state(spec) -> str:
    """Blue replicating from green, both threads running and no error → 'running, lag Ns'."""
    from bgqueue.providers.mysql import Server

    with Server(spec.blue, spec.admin, label="blue", tls=spec.tls) as blue:
        st = blue.replica_status()
    if st is None:
        return "not configured"
    if not st.healthy:
        return f"broken: {st.last_error or 'threads stopped'}"
    return f"running, lag {st.seconds_behind}s"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
