"""What the write-gap benchmarks share: percentiles, the bare-SQL floor, a sandbox with a worker."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bgqueue.client.workload import admin_connection  # noqa: E402
from bgqueue.model.fleet import ClusterSpec  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(gaps: list[float]) -> dict:
    return {"n": len(gaps), "median_ms": round(statistics.median(gaps), 2), "p95_ms": round(pct(gaps, 0.95), 2),
            "max_ms": round(max(gaps), 2), "min_ms": round(min(gaps), 2)}


def bare_sql_switch(spec: ClusterSpec, old, new, routing, repl_password: str, flavour: str = "mariadb") -> None:
    """The floor: the SQL a careful DBA would type, with no journal, no store, no Celery (in the
    flavour's own words: MySQL's is ``bare_sql_switch_mysql``)."""
    if flavour == "mysql":
        return bare_sql_switch_mysql(spec, old, new, routing, repl_password)
    o = admin_connection(spec, old)
    n = admin_connection(spec, new)
    try:
        with o.cursor() as oc, n.cursor() as nc:
            oc.execute("SET GLOBAL read_only = ON")
            oc.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            for (pid,) in oc.fetchall():
                try:
                    oc.execute(f"KILL CONNECTION {int(pid)}")
                except Exception:
                    pass
            oc.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            pos = oc.fetchone()[0]
            nc.execute("SELECT MASTER_GTID_WAIT(%s, 5)", (pos,))
            if int(nc.fetchone()[0]) != 0:
                raise SystemExit("floor: the new primary did not catch up")
            nc.execute("STOP SLAVE")
            nc.execute("RESET SLAVE ALL")
            nc.execute("SET GLOBAL read_only = OFF")
            route = routing.get(spec.name)
            routing.flip(spec.name, new.host, new.port, expect_version=route.version, reason="bench floor")
            oc.execute("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")
            oc.execute(f"CHANGE MASTER TO MASTER_HOST='{new.host}', MASTER_PORT={new.port}, "
                       f"MASTER_USER='{spec.replication.user}', MASTER_PASSWORD='{repl_password}', "
                       f"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1")
            oc.execute("START SLAVE")
    finally:
        o.close()
        n.close()


def bare_sql_switch_mysql(spec: ClusterSpec, old, new, routing, repl_password: str) -> None:
    """The MySQL 8.4/9.x floor: super_read_only (read_only does not stop the admin), gtid_executed,
    WAIT_FOR_EXECUTED_GTID_SET, STOP/RESET REPLICA, CHANGE REPLICATION SOURCE with auto-position."""
    o = admin_connection(spec, old)
    n = admin_connection(spec, new)
    try:
        with o.cursor() as oc, n.cursor() as nc:
            oc.execute("SET GLOBAL super_read_only = ON")
            oc.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            for (pid,) in oc.fetchall():
                try:
                    oc.execute(f"KILL CONNECTION {int(pid)}")
                except Exception:
                    pass
            oc.execute("SELECT @@GLOBAL.gtid_executed")
            pos = oc.fetchone()[0]
            nc.execute("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, 5)", (pos,))
            if int(nc.fetchone()[0]) != 0:
                raise SystemExit("floor: the new primary did not catch up")
            nc.execute("STOP REPLICA")
            nc.execute("RESET REPLICA ALL")
            nc.execute("SET GLOBAL super_read_only = OFF")
            nc.execute("SET GLOBAL read_only = OFF")
            route = routing.get(spec.name)
            routing.flip(spec.name, new.host, new.port, expect_version=route.version, reason="bench floor")
            oc.execute("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
                       "SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1",
                       (new.host, new.port, spec.replication.user, repl_password))
            oc.execute("START REPLICA")
    finally:
        o.close()
        n.close()


def start_sampler(env: dict, workdir: Path):
    """`bgqueue sampler run` in its own process (the validation's lag check reads its samples)."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", "sampler", "run"], env=env, cwd=str(REPO),
                            stdout=open(workdir / "sampler.log", "wb"), stderr=subprocess.STDOUT)


class GapBench:
    """What the write-gap benchmarks stand on: a 1-cluster sandbox, a Celery worker process, the
    sampler, and an application writer at ``rate`` writes/s through bgqueue.client. The fleet file
    (``path``) carries ``thresholds`` over the sandbox's defaults. Torn down on exit."""

    def __init__(self, prefix: str, rate: float, thresholds: dict | None = None, flavour: str = "mariadb"):
        import tempfile

        self.prefix, self.rate, self.thresholds, self.flavour = prefix, rate, thresholds or {}, flavour
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self.workers: list = []
        self.sampler = self.load = self.sandbox = None

    def __enter__(self) -> GapBench:
        import time

        import yaml

        from bgqueue.app.demo import _configure
        from bgqueue.client.workload import start_workload
        from bgqueue.model.fleet import load_fleet
        from bgqueue.sandbox import Sandbox

        self.sandbox = Sandbox(self.workdir / "sandbox", clusters=1, detach=False, flavour=self.flavour).up()
        try:
            self.sandbox.passwords.export_env()
            redis_url = self.sandbox.info["redis"]["url"]
            self.env = _configure(self.workdir, redis_url)
            from bgqueue.adapters.runtime import get_runtime
            from tasks.workers import start_workers

            self.workers = start_workers(self.env, redis_url, count=1, concurrency=2, logdir=self.workdir)
            self.sampler = start_sampler(self.env, self.workdir)
            self.rt = get_runtime()
            self.raw = yaml.safe_load(self.sandbox.fleet_path.read_text())
            self.raw["defaults"]["thresholds"].update(self.thresholds)
            self.path = self.workdir / "fleet.yaml"
            self.path.write_text(yaml.safe_dump(self.raw, sort_keys=False))
            self.spec = load_fleet(self.path).clusters[0]
            self.load = start_workload(self.spec, redis_url, self.rt.routing, app_user="app",
                                       app_password=self.sandbox.passwords.app, rate_hz=self.rate)
            time.sleep(1.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def gap(self, t0: float, t1: float, settle: float) -> float:
        """The longest interval between acknowledged writes around [t0, t1] (after the writer
        has had ``settle`` seconds to acknowledge past the switch, so that the gap closes)."""
        import time

        time.sleep(settle)
        return self.load.writer.max_gap_ms((t0, t1))

    def result(self, benchmark: str, count_key: str, count: int, full: list[float], floor: list[float],
               new, old, **extra) -> dict:
        """Stop the writer, look for every acknowledged write, and build the benchmark's JSON."""
        from bgqueue.client.workload import verify

        self.load.stop()
        stats = self.load.writer.stats()
        v = verify(self.spec, self.load.writer.acked_ids(), new=new, old=old)
        self.load = None
        f, b = summary(full), summary(floor)
        return {
            "benchmark": benchmark, "flavour": self.flavour, count_key: count,
            "target_rate_writes_per_s": self.rate, "achieved_rate_writes_per_s": stats["rate_hz"],
            "full_path": f, **extra, "bare_sql_floor": b,
            "ratio_median": round(f["median_ms"] / b["median_ms"], 2),
            "ratio_p95": round(f["p95_ms"] / b["p95_ms"], 2),
            "acked_writes": v.acked, "lost_writes": v.lost,
            "writer": {k: stats[k] for k in ("attempted", "acked", "failures") if k in stats},
            "target_p95_ms": 100, "target_met": f["p95_ms"] <= 100 and v.lost == 0,
        }

    def __exit__(self, *exc) -> None:
        if self.load is not None:
            self.load.stop()
        for w in self.workers:
            w.stop()
        if self.sampler is not None:
            self.sampler.terminate()
            self.sampler.wait(10)
        if self.sandbox is not None:
            self.sandbox.down()
