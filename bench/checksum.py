"""Checksum throughput: bgqueue's checksum check against pt-table-checksum on the same pair and table.

One blue/green MariaDB sandbox pair; a table of --rows rows (default 1,000,000) loaded on blue
and replicated to green. Then, in the same run and alternating so neither tool gets warmer
caches than the other:
  - idle: --repeat runs of each tool (median rows/s reported);
  - under writes: --repeat runs of each while an unprivileged application user updates and
    inserts on blue at --rate writes/s (any mismatch reported there is a false mismatch: must be 0);
  - drift: one row changed on green only (sql_log_bin=0); each tool must report it.
pt-table-checksum (Debian package percona-toolkit) is optional: without it the JSON says so.
Prints one JSON document.

    python bench/checksum.py [--rows 1000000] [--repeat 3] [--rate 200] [--chunk-time 0.5]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymysql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bgqueue.adapters.mysql.server import Server  # noqa: E402
from bgqueue.checks.checksum import checksum_tables  # noqa: E402
from bgqueue.model.schema_base import Credentials, Endpoint  # noqa: E402
from bgqueue.sandbox import (  # noqa: E402
    ADMIN_PASSWORD_ENV,
    ADMIN_USER,
    APP_DATABASE,
    APP_USER,
    ClusterPair,
    SandboxPasswords,
)

TABLE = f"{APP_DATABASE}.bench"
DDL = (f"CREATE TABLE {TABLE} (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL, "
       "amount DECIMAL(12,2) NOT NULL, status VARCHAR(16) NOT NULL, note VARCHAR(64) NULL, "
       "created DATETIME(6) NOT NULL, updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB")
LOAD_BATCH = 100_000


def load(pair: ClusterPair, rows: int) -> float:
    """Fill the table from MariaDB's sequence engine in batches (one huge transaction replicates badly)."""
    t0 = time.monotonic()
    with pair.blue.root() as r:
        c = r.cursor()
        c.execute(DDL)
        for lo in range(1, rows + 1, LOAD_BATCH):
            hi = min(rows, lo + LOAD_BATCH - 1)
            c.execute(f"INSERT INTO {TABLE} (id, account, amount, status, note, created) "
                      f"SELECT seq, seq % 9973, (seq * 7919 % 1000000) / 100, ELT(1 + seq % 4, 'new', 'paid', "
                      f"'shipped', 'void'), IF(seq % 5 = 0, NULL, CONCAT('note ', seq)), "
                      f"'2024-01-01' + INTERVAL seq SECOND FROM {APP_DATABASE}.seq_{lo}_to_{hi}")
    pair.wait_green_synced(timeout=600)
    return time.monotonic() - t0


class Writer(threading.Thread):
    """The application: updates random rows and appends new ones at ``rate`` writes/s, as ``app``."""

    def __init__(self, pair: ClusterPair, pw: SandboxPasswords, rate: float, max_id: int):
        super().__init__(daemon=True)
        self.conn = pymysql.connect(host=pair.blue.host, port=pair.blue.port, user=APP_USER, password=pw.app,
                                    database=APP_DATABASE, autocommit=True, ssl_disabled=True)
        self.rate, self.max_id, self.writes, self.errors = rate, max_id, 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        cur, rnd, period = self.conn.cursor(), random.Random(7), 1.0 / self.rate
        nxt = time.monotonic()
        while not self.halt.is_set():
            try:
                if self.writes % 2:
                    cur.execute("UPDATE bench SET amount = amount + 1, note = %s WHERE id = %s",
                                (f"w{self.writes}", rnd.randint(1, self.max_id)))
                else:
                    cur.execute("INSERT INTO bench (account, amount, status, created) VALUES (%s, 1, 'new', NOW(6))",
                                (rnd.randint(1, 9973),))
                self.writes += 1
            except pymysql.err.MySQLError:
                self.errors += 1  # a lock wait behind a checksum chunk; the next write goes on
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.conn.close()


def run_ours(blue: Server, green: Server, chunk_time: float) -> dict:
    run = checksum_tables(blue, green, [TABLE], chunk_time_s=chunk_time, catchup_timeout_s=120)
    return {"seconds": round(run.seconds, 3), "rows": run.rows, "rows_per_s": round(run.rows / run.seconds),
            "chunks": len(run.chunks), "mismatched_chunks": len(run.mismatches)}


def pt_available() -> str | None:
    exe = shutil.which("pt-table-checksum")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return out or "unknown"


def pt_setup(pair: ClusterPair, workdir: Path, pw: SandboxPasswords) -> Path:
    """A 0600 option file (the password stays off the command line) and the DSN table naming green:
    on loopback pairs pt finds no replica through the processlist (FACTS)."""
    cnf = workdir / "pt.cnf"
    cnf.write_text(f"[client]\nuser={ADMIN_USER}\npassword={pw.admin}\n")
    cnf.chmod(0o600)
    with pair.blue.root() as r:
        c = r.cursor()
        c.execute("CREATE DATABASE IF NOT EXISTS percona")
        c.execute("CREATE TABLE IF NOT EXISTS percona.dsns (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT, "
                  "dsn VARCHAR(255) NOT NULL)")
        c.execute("INSERT INTO percona.dsns (dsn) VALUES (%s)", (f"h=127.0.0.1,P={pair.green.port}",))
    pair.wait_green_synced()
    return cnf


def run_pt(pair: ClusterPair, cnf: Path, chunk_time: float) -> dict:
    dsn = f"h=127.0.0.1,P={pair.blue.port},F={cnf}"
    cmd = ["pt-table-checksum", dsn, "--tables", TABLE, "--chunk-time", str(chunk_time), "--no-version-check",
           "--recursion-method", f"dsn={dsn},D=percona,t=dsns", "--no-check-binlog-format",
           "--replicate", "percona.checksums"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    lines = [ln.split() for ln in p.stdout.splitlines() if ln.strip()]
    head = next((i for i, ln in enumerate(lines) if ln and ln[0] == "TS"), None)
    if head is None or head + 1 >= len(lines):
        raise SystemExit(f"pt-table-checksum printed no result ({p.returncode}): {(p.stdout + p.stderr)[-1500:]}")
    row = dict(zip(lines[head], lines[head + 1], strict=False))
    rows = int(row["ROWS"])
    own = float(row["TIME"])
    return {"seconds": round(seconds, 3), "reported_time_s": own, "rows": rows, "rows_per_s": round(rows / seconds),
            "rows_per_s_by_own_time": round(rows / own) if own > 0 else None,
            "chunks": int(row["CHUNKS"]), "diffs": int(row["DIFFS"]),
            "errors": int(row["ERRORS"]), "exit_code": p.returncode,
            "warnings": [ln for ln in p.stderr.splitlines() if ln.strip()][:5]}


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0, help="concurrent writes/s on blue in the 'under writes' runs")
    ap.add_argument("--chunk-time", type=float, default=0.5, help="target seconds per chunk, for both tools")
    ap.add_argument("--buffer-pool-mb", type=int, default=512,
                    help="both servers' InnoDB buffer pool: the sandbox's 16 MB would measure the OS page cache")
    args = ap.parse_args()

    pw = SandboxPasswords.generate()
    pw.export_env()
    pt_version = pt_available()
    workdir = Path(tempfile.mkdtemp(prefix="bgq-bench-checksum-"))
    pair = ClusterPair(workdir / "pair", "bench", 1, 2, pw)
    result: dict = {"rows_loaded": args.rows, "table": TABLE, "chunk_time_s": args.chunk_time,
                    "pt_table_checksum": {"available": pt_version is not None, "version": pt_version}}
    try:
        pair.start()
        for server in (pair.blue, pair.green):
            with server.root() as r:
                r.cursor().execute(f"SET GLOBAL innodb_buffer_pool_size = {args.buffer_pool_mb * 1024 * 1024}")
        result["load_seconds"] = round(load(pair, args.rows), 2)
        admin = Credentials(user=ADMIN_USER, password_env=ADMIN_PASSWORD_ENV)
        blue = Server(Endpoint(host=pair.blue.host, port=pair.blue.port), admin, label="blue", tls="disabled",
                      read_timeout=600)
        green = Server(Endpoint(host=pair.green.host, port=pair.green.port), admin, label="green", tls="disabled",
                       read_timeout=600)
        cnf = pt_setup(pair, workdir, pw) if pt_version else None
        run_ours(blue, green, args.chunk_time)  # warm-up: both tools then read from a warm buffer pool
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(run_ours(blue, green, args.chunk_time))
            if cnf:
                theirs.append(run_pt(pair, cnf, args.chunk_time))
        result["bgqueue"] = {"rows_per_s_median": median_of(ours, "rows_per_s"), "runs": ours}
        if cnf:
            pt = result["pt_table_checksum"]
            pt.update({"rows_per_s_median": median_of(theirs, "rows_per_s"),
                       "rows_per_s_by_own_time_median": median_of(theirs, "rows_per_s_by_own_time"), "runs": theirs})
            ours_rate = result["bgqueue"]["rows_per_s_median"]
            # Both ours and pt's wall times include connecting and set-up (pt's also Perl's start-up);
            # pt's own TIME column leaves those out, so the second ratio is the harder comparison.
            result["ratio_bgqueue_over_pt"] = round(ours_rate / pt["rows_per_s_median"], 2)
            result["ratio_bgqueue_over_pt_own_time"] = round(ours_rate / pt["rows_per_s_by_own_time_median"], 2)

        writer = Writer(pair, pw, args.rate, args.rows)
        writer.start()
        time.sleep(0.5)
        under: dict = {"rate": args.rate, "bgqueue": [], **({"pt_table_checksum": []} if cnf else {})}
        for _ in range(args.repeat):
            for tool, run in (("bgqueue", lambda: run_ours(blue, green, args.chunk_time)),
                              ("pt_table_checksum", lambda: run_pt(pair, cnf, args.chunk_time))):
                if tool in under:
                    w0 = writer.writes
                    under[tool].append({**run(), "writes_during": writer.writes - w0})
        writer.stop()
        under["writer_errors"] = writer.errors
        under["false_mismatches"] = {"bgqueue": sum(r["mismatched_chunks"] for r in under["bgqueue"])}
        if cnf:
            under["false_mismatches"]["pt_table_checksum"] = sum(r["diffs"] for r in under["pt_table_checksum"])
        result["under_writes"] = under

        with pair.green.root() as g:  # a real drift: both tools must see it
            c = g.cursor()
            c.execute("SET SESSION sql_log_bin = 0")
            c.execute(f"UPDATE {TABLE} SET amount = amount + 0.01 WHERE id = %s", (args.rows // 2,))
        drift = {"bgqueue": run_ours(blue, green, args.chunk_time)["mismatched_chunks"] > 0}
        if cnf:
            drift["pt_table_checksum"] = run_pt(pair, cnf, args.chunk_time)["diffs"] > 0
        result["detects_one_drifted_row"] = drift
        blue.close()
        green.close()
    finally:
        pair.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
