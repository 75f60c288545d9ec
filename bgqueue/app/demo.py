"""`bgqueue demo`: a sandbox fleet switches blue → green under continuous writes.

Everything is real: mariadbd pairs and a redis-server on free loopback ports, Celery worker
processes, the metrics sampler process, an unprivileged application user writing through
``bgqueue.client``. The batch is enqueued through the same code path as ``bgqueue fleet
run``. One cluster gets a fault after its switchover (green refuses the application's
writes) so that the monitoring window rolls it back by itself. With three clusters or more, the
first also sits behind a real HAProxy with a plain-PyMySQL application writing through it, and
the second has maintenance mode on with an application on a SQLAlchemy pool (``demo_paths``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from bgqueue.app.demo_paths import DemoPaths
from bgqueue.app.terminal import safe
from bgqueue.model.fleet import load_fleet
from bgqueue.sandbox import Sandbox

# The demo's monitoring window: long enough to see a fault and roll back, short enough to wait for.
_FLAVOUR_NAMES = {"mariadb": "MariaDB", "mysql": "Oracle MySQL"}
DEMO_THRESHOLDS = {"monitor_window_s": 8, "monitor_tick_s": 0.25, "monitor_eval_s": 2, "rollback_error_rate": 5}


def _configure(home: Path, redis_url: str) -> dict[str, str]:
    """Point this process (and the workers it starts) at the sandbox's redis and a fresh store."""
    os.environ.update({"BGQUEUE_HOME": str(home), "BGQUEUE_REDIS_URL": redis_url,
                       "BGQUEUE_STORE_URL": f"sqlite:///{home / 'store.sqlite'}"})
    from bgqueue.adapters.runtime import get_runtime
    from config.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    get_runtime.cache_clear()
    import tasks.application

    tasks.application.configure(get_settings())
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    return env


def _demo_fleet(sandbox: Sandbox, workdir: Path, paths: DemoPaths | None = None) -> Path:
    from bgqueue.client.workload import LEDGER_PIPELINE

    raw = yaml.safe_load(sandbox.fleet_path.read_text())
    raw["defaults"]["thresholds"].update(DEMO_THRESHOLDS)
    for c in raw["clusters"]:
        c["pipelines"] = [dict(LEDGER_PIPELINE)]  # one built-in CDC consumer per cluster
    if paths is not None:
        paths.fleet_entries(raw["clusters"])
    _real_evidence(raw["clusters"], workdir)
    path = workdir / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


REPLAY_QUERIES = """USE appdb;
SELECT COUNT(*), MAX(seq) FROM bgq_writes;
SELECT writer, COUNT(*) FROM bgq_writes GROUP BY writer;
SELECT id, payload FROM bgq_writes WHERE id = 42;
SELECT id, seq FROM bgq_writes WHERE id BETWEEN 100 AND 110 ORDER BY id;
SELECT seq / 7 FROM bgq_writes WHERE id = 1;
UPDATE bgq_writes SET payload = 'x' WHERE id = 1;
"""
SIGNOFF_TEAM = "dba"


def _real_evidence(clusters: list[dict], workdir: Path) -> None:
    """Every check looks at something: the application's table is critical (checksummed), a team
    must sign off (the demo gives it), the second cluster is the third's staging twin (it must
    have switched first), and the third replays a query log on blue and green at one point."""
    queries = workdir / "replay-queries.sql"
    queries.write_text(REPLAY_QUERIES)
    for c in clusters:
        c["critical_tables"] = ["appdb.bgq_writes"]
        c["signoffs"] = [SIGNOFF_TEAM]
    if len(clusters) >= 3:
        clusters[2]["staging"] = clusters[1]["name"]
        clusters[2]["replay"] = {"source": "file", "path": str(queries), "samples_per_class": 5, "concurrency": 2}


def _sign_off(rt, specs) -> None:
    from bgqueue.adapters.store import validation

    for spec in specs:
        validation.add_signoff(rt.store, spec.name, spec.change_key(), SIGNOFF_TEAM, "demo",
                               note="signed by the demo")


def inject_app_fault(pair) -> None:
    """Green refuses the application's writes (its own grants only: not replicated to blue)."""
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("REVOKE INSERT ON appdb.* FROM 'app'@'127.0.0.1'")
        # Database privileges reach a session at its next connect: end the application's sessions.
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {int(pid)}")


def _fault_when_monitoring(rt, dep_id: str, pair, console: Console, stop: threading.Event) -> None:
    from bgqueue.adapters.store import deployments as deps

    while not stop.is_set():
        phase = deps.get_deployment(rt.store, dep_id).phase
        if phase == "MONITORING":
            time.sleep(1.0)  # let the window see a healthy green first
            inject_app_fault(pair)
            console.print(f"[yellow]fault injected on {pair.name}: green now refuses the application's writes[/]")
            return
        if phase in ("NO_GO", "FAILED", "SWITCHOVER_FAILED", "COMPLETED"):
            return
        stop.wait(0.1)


def run_demo(clusters: int = 4, rate: float = 100.0, keep: bool = False, console: Console | None = None,
             fault: bool = True, report_path: str | Path = "var/demo-report.html", flavour: str = "mariadb") -> int:
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    workdir = Path(tempfile.mkdtemp(prefix="bgqueue-demo-"))
    sandbox = Sandbox(workdir / "sandbox", clusters=clusters, detach=False, flavour=flavour)
    workers: list = []
    loads: list = []
    sampler = consumer = None
    paths: DemoPaths | None = None
    stop = threading.Event()
    try:
        t0 = time.perf_counter()
        sandbox.up()
        sandbox.passwords.export_env()  # the workers resolve credentials from their environment
        redis_url = sandbox.info["redis"]["url"]
        env = _configure(workdir, redis_url)
        console.print(f"sandbox: {clusters} blue/green {_FLAVOUR_NAMES[flavour]} pairs + redis-server up in "
                      f"{time.perf_counter() - t0:.1f}s ({workdir})")
        # The fault's cluster (the last) keeps the registry path only. (The HAProxy health check's
        # user is made for MariaDB; on the mysql flavour the demo keeps the registry path only.)
        if clusters >= 3 and flavour == "mariadb":
            paths = DemoPaths(sandbox, workdir)
            paths.start_proxy()
            console.print(f"haproxy: {sandbox.pairs[0].name}'s writer behind a real HAProxy (runtime API "
                          f"{paths.proxy.admin_address}); {sandbox.pairs[1].name} in maintenance mode (drain)")
        from bgqueue.adapters.runtime import get_runtime
        from bgqueue.app.progress import wait_for_batch
        from bgqueue.client.workload import start_workload, verify, wait_cdc_streaming
        from tasks.batch import enqueue_fleet
        from tasks.workers import start_workers

        t1 = time.perf_counter()
        sampler = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", "sampler", "run"], env=env,
                                   cwd=str(Path(__file__).resolve().parent.parent),
                                   stdout=open(workdir / "sampler.log", "wb"), stderr=subprocess.STDOUT)
        workers = start_workers(env, redis_url, count=2, concurrency=4, logdir=workdir)
        console.print(f"celery: 2 worker processes ready, sampler running ({time.perf_counter() - t1:.1f}s)")
        rt = get_runtime()
        fleet_path = str(_demo_fleet(sandbox, workdir, paths))
        specs = load_fleet(fleet_path).clusters
        consumer = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", "cdc", "run", "--fleet", fleet_path],
                                    env=env, cwd=str(Path(__file__).resolve().parent.parent),
                                    stdout=open(workdir / "cdc.log", "wb"), stderr=subprocess.STDOUT)
        if not all(wait_cdc_streaming(rt.redis, s) for s in specs):
            raise RuntimeError(f"the CDC consumer did not start streaming; see {workdir / 'cdc.log'}")
        console.print("cdc: one built-in binlog consumer per cluster streaming appdb.bgq_writes to Redis")
        loads = [start_workload(s, redis_url, rt.routing, app_user="app", app_password=sandbox.passwords.app,
                                rate_hz=rate) for s in specs]
        console.print(f"writers: {len(loads)} application writers at {rate:g} writes/s each (user 'app')")
        if paths is not None:
            paths.start_apps(redis_url, sandbox.passwords.app, rate)
            console.print(f"apps: plain PyMySQL through HAProxy on {paths.proxy_pair.name}, a SQLAlchemy pool in "
                          f"maintenance mode on {paths.pool_pair.name}, {rate:g} writes/s each")
        time.sleep(1.0)
        _sign_off(rt, specs)
        console.print(f"sign-off: team {SIGNOFF_TEAM!r} signed the change of every cluster; "
                      f"{specs[2].name if len(specs) >= 3 else '-'} waits for its staging twin and replays a query log")
        opened = enqueue_fleet(fleet_path)
        console.print(f"batch {opened.batch_id} enqueued (bgqueue fleet run {fleet_path})")
        if fault:
            victim = sandbox.pairs[-1]
            threading.Thread(target=_fault_when_monitoring, daemon=True,
                             args=(rt, opened.deployments[victim.name], victim, console, stop)).start()
        rows = wait_for_batch(rt, opened.batch_id, timeout=300, console=console)
        time.sleep(1.0)  # the writers go on against the new primaries
        for w in loads:
            w.stop()
        if paths is not None:
            for w in paths.writers.values():
                w.stop()
        report = _write_report(console, rt, opened.batch_id, Path(report_path))
        code = _report(console, rt, specs, loads, rows, verify, paths, flavour)
        console.print(f"report: {Path(report).resolve().as_uri()}", highlight=False)
        return code
    finally:
        stop.set()
        if paths is not None:
            paths.stop()
        for w in loads:
            try:
                w.stop()
            except Exception:
                pass
        for w in workers:
            w.stop()
        for proc in (sampler, consumer):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        sandbox.down()
        if keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _write_report(console: Console, rt, batch_id: str, out: Path) -> Path:
    """The batch's HTML report, drawn from the store: written while the sampler still runs (it
    writes the last phase's points within ~2 s of the end) and kept after the sandbox is gone."""
    from bgqueue.app.report import wait_for_metrics, write_batch_report

    if not wait_for_metrics(rt.store, batch_id, timeout=15):
        console.print("[yellow]report: the sampler has not written every last phase yet; plots may end early[/]")
    path = write_batch_report(rt.store, batch_id, out)
    return path


def _report(console: Console, rt, specs, loads, rows, verify, paths: DemoPaths | None = None,
            flavour: str = "mariadb") -> int:
    from bgqueue.adapters.store import journal
    from bgqueue.adapters.store import validation as records
    from bgqueue.client.workload import cdc_audit

    by_cluster = {d.cluster: d for d in rows}
    checks = Table(title="pre-switchover checks and decision", title_justify="left")
    for col in ("cluster", "decision", "rounds", "checks"):
        checks.add_column(col, no_wrap=col != "checks", overflow="fold")
    table = Table(title="demo: per-cluster outcome", title_justify="left")
    for col in ("cluster", "phase", "switch ms", "blocked ms", "switch gap ms", "acked", "rows new", "lost",
                "cdc lost/dup", "reverse replication"):
        table.add_column(col, justify="left" if col in ("cluster", "phase", "reverse replication") else "right",
                         no_wrap=True)
    apps = Table(title="application paths: what each application saw", title_justify="left")
    for col in ("cluster", "path", "application", "acked", "errors", "max gap ms", "lost"):
        apps.add_column(col, justify="left" if col in ("cluster", "path", "application") else "right", no_wrap=True)
    switched = rolled_back = lost_total = cdc_lost = cdc_dup = 0
    samples: list[str] = []
    evidence: list[str] = []  # what the checks that look at data said (not just ✓)
    app_errors: dict[str, int] = {}
    max_gap = 0.0
    for spec, load in zip(specs, loads, strict=False):
        d = by_cluster[spec.name]
        decisions = records.decisions(rt.store, d.id, "pre_switch")
        results = records.check_results(rt.store, d.id, decisions[-1].round if decisions else None)
        checks.add_row(spec.name, decisions[-1].verdict if decisions else "-", str(len(decisions)),
                       ", ".join(f"{r.name} {'✓' if r.status == 'pass' else r.status}" for r in results))
        evidence += [f"{spec.name} {r.name}: {r.reason}" for r in results
                     if r.name in ("query_replay", "checksum", "staging", "signoffs") and
                     (r.name != "query_replay" or spec.replay is not None)]
        did_switch = d.switch_ended_at is not None and d.phase in ("COMPLETED", "ROLLED_BACK", "MONITORING")
        switched += did_switch
        rolled_back += d.phase == "ROLLED_BACK"
        on_green = d.phase == "COMPLETED"
        new, old = (spec.green, spec.blue) if on_green else (spec.blue, spec.green)
        v = verify(spec, load.writer.acked_ids(), new=new, old=old)
        gap = max((load.writer.max_gap_ms(w) for w in _switch_windows(rt, d.id)), default=0.0)
        lost_total += v.lost
        max_gap = max(max_gap, gap)
        reverse = _replication_state(spec, replica=old) if did_switch else "-"
        audit = cdc_audit(rt.redis, spec, load.writer.acked_ids(), primary=new)
        cdc_lost += audit.lost
        cdc_dup += audit.duplicates
        table.add_row(spec.name, d.phase, _f(d.switch_duration_ms), _f(d.writes_blocked_ms), f"{gap:.1f}",
                      str(v.acked), str(v.rows_on_new), str(v.lost), f"{audit.lost}/{audit.duplicates}",
                      safe(reverse))
        apps.add_row(spec.name, "registry", "bgqueue.client", str(v.acked), str(sum(load.writer.failures.values())),
                     f"{load.writer.max_gap_ms():.0f}", str(v.lost))
        if paths is not None and spec.name in paths.writers:
            app = paths.outcome(spec.name, on_green)
            lost_total += app.lost
            apps.add_row(spec.name, app.path, app.application, str(app.acked), str(app.errors),
                         f"{app.max_gap_ms:.0f}", str(app.lost))
            samples.extend(f"{spec.name} {app.application}: {e}" for e in app.samples)
            app_errors[app.application] = app.errors
        if d.reason and d.phase != "COMPLETED":
            console.print(safe(f"{spec.name}: {d.phase}: {d.reason}"))
        for note in (s for s in journal.steps(rt.store, d.id, "rollback") if s.name == "rolled_back"):
            console.print(f"{spec.name}: rollback blocked writes for {note.detail['writes_blocked_ms']:.1f} ms")
    console.print(checks)
    for line in evidence:
        console.print(safe(f"  {line}"), highlight=False)
    console.print(table)
    console.print(apps)
    for line in samples:
        console.print(safe(f"  e.g. {line}"))
    console.print(f"demo: clusters={len(specs)} switched={switched} lost_writes={lost_total} "
                  f"max_write_gap_ms={max_gap:.1f} rolled_back={rolled_back} cdc_lost={cdc_lost} "
                  f"cdc_duplicates={cdc_dup} flavour={flavour}"
                  + "".join(f" {_key(a)}_errors={n}" for a, n in app_errors.items()), highlight=False)
    sys.stdout.flush()
    return 0 if (switched == len(specs) and lost_total == 0 and cdc_lost == 0 and cdc_dup == 0) else 1


def _switch_windows(rt, deployment_id: str) -> list[tuple[float, float]]:
    """Each switchover/rollback's fence → route flip, in this process's monotonic clock, with a
    second of margin after it (the writers' gaps around the switch, not a fault's outage)."""
    from bgqueue.adapters.store import deployments as deps
    from bgqueue.adapters.store import journal

    offset = time.time() - time.monotonic()
    windows = []
    # Only the switchover: before a fault-driven rollback the application's writes were already
    # failing, so that gap measures the fault, not the rollback (bench/rollback.py measures those).
    for kind in ("switchover",):
        steps = {s.name: s for s in journal.steps(rt.store, deployment_id, kind)}
        if "fence" in steps and "flip_routing" in steps and steps["flip_routing"].ended_at:
            t0 = deps.as_aware(steps["fence"].started_at).timestamp() - offset
            t1 = deps.as_aware(steps["flip_routing"].ended_at).timestamp() - offset
            windows.append((t0, t1 + 1.0))
    return windows


def _replication_state(spec, replica) -> str:
    """The old primary replicating from the new one: 'running, lag Ns' or what is wrong."""
    from bgqueue.adapters.mysql.server import Server

    with Server(replica, spec.admin, label="replica", tls=spec.tls) as server:
        st = server.replica_status()
    if st is None:
        return "not configured"
    if not st.healthy:
        return f"broken: {st.last_error or 'threads stopped'}"
    return f"running, lag {st.seconds_behind}s"


def _key(application: str) -> str:
    return {"plain PyMySQL via HAProxy": "haproxy_app", "SQLAlchemy pool": "sqlalchemy_maintenance_app"}.get(
        application, application.replace(" ", "_"))


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
