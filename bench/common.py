"""What the write-gap benchmarks share: percentiles, the bare-SQL floor, a sandbox with a worker."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bgqueue.fleet import ClusterSpec  # noqa: E402
from bgqueue.workload import admin_connection  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(gaps: list[float]) -> dict:
    return {"n": len(gaps), "median_ms": round(statistics.median(gaps), 2), "p95_ms": round(pct(gaps, 0.95), 2),
            "max_ms": round(max(gaps), 2), "min_ms": round(min(gaps), 2)}


def bare_sql_switch(spec: ClusterSpec, old, new, routing, repl_password: str) -> None:
    """The floor: the SQL a careful DBA would type, with no journal, no store, no Celery."""
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


def start_sampler(env: dict, workdir: Path):
    """`bgqueue sampler run` in its own process (the validation's lag check reads its samples)."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "bgqueue.cli", "sampler", "run"], env=env, cwd=str(REPO),
                            stdout=open(workdir / "sampler.log", "wb"), stderr=subprocess.STDOUT)
