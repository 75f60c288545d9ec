"""Query replay: bgqueue's replay against pt-upgrade on the same slow log and the same live pair.

One blue/green MariaDB sandbox pair; blue holds the test tables (tests/checks/replay_data.py) and
green carries the seeded differences (ONLY_FULL_GROUP_BY, div_precision_increment, a collation
default, a dropped index, and an optimizer_switch that only reorders rows, which must NOT be
reported). A slow log of --statements statements (default 5,500) in ≥ 50 classes is written in
MariaDB's format. While an unprivileged application user writes on blue at --rate writes/s:
  - bgqueue: ``replay_cluster`` (capture from the log, pin blue and green at one GTID, replay);
  - pt-upgrade (Debian package percona-toolkit, installed with apt-get when missing): the same
    log against the same two servers, which it takes as static.
A class reported as differing that is not one of the seeded differences is a false difference
(the reorder-only class included). Prints one JSON document.

    python bench/replay.py [--statements 5500] [--rate 300] [--concurrency 2]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bgqueue.adapters.mysql.server import servers  # noqa: E402
from bgqueue.checks.replay.fingerprint import fingerprint  # noqa: E402
from bgqueue.checks.replay.run import replay_cluster  # noqa: E402
from bgqueue.model.fleet import ClusterSpec  # noqa: E402
from bgqueue.sandbox import ADMIN_USER, ClusterPair, SandboxPasswords  # noqa: E402
from tests.checks import replay_data as data  # noqa: E402

FAMILIES = 45  # extra classes (distinct column aliases), so the log has ≥ 50 classes


def family_queries(i: int, rnd: random.Random) -> list[str]:
    out = []
    for k in range(FAMILIES):
        x = rnd.randint(1, 59_000)
        if k % 9 < 5:
            out.append(f"SELECT id AS c{k}, amount, status FROM appdb.orders WHERE id BETWEEN {x} AND {x + 3}")
        else:
            out.append(f"SELECT COUNT(*) AS n{k}, SUM(amount) FROM appdb.orders WHERE id BETWEEN {x} AND {x + 3000}")
    return out


def slow_log(statements: int, seed: int = 11) -> tuple[str, int]:
    """A MariaDB-format slow log of about ``statements`` statements; returns (text, count)."""
    rnd = random.Random(seed)
    entries: list[str] = []
    i = 0
    while len(entries) < statements:
        batch = [*data.seeded_queries(i).values(), data.reorder_only_query(i), *data.clean_queries(i, rnd),
                 *family_queries(i, rnd), *data.writes(i)]
        entries += batch
        i += 1
    out = ["/usr/sbin/mariadbd, Version: 10.11 (bench). started with:\nTcp port: 0  Unix socket: x\n"
           "Time                Id Command  Argument\n"]
    ts = 1_764_669_600
    for n, sql in enumerate(entries):
        out.append(f"# Time: 261202 10:{n // 3600 % 60:02d}:{n // 60 % 60:02d}\n# User@Host: app[app] @  [127.0.0.1]\n"
                   f"# Thread_id: 8  Schema: appdb  QC_hit: No\n# Query_time: 0.000200  Lock_time: 0.000010  "
                   f"Rows_sent: 1  Rows_examined: 1\n# Rows_affected: 0  Bytes_sent: 60\n"
                   f"SET timestamp={ts + n};\n{sql};\n")
    return "".join(out), len(entries)


def ensure_pt_upgrade() -> str:
    found = shutil.which("pt-upgrade")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("pt-upgrade is missing: sudo apt-get install -y percona-toolkit")
    subprocess.run(["apt-get", "install", "-y", "percona-toolkit"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("pt-upgrade")
    if not found:
        raise SystemExit("apt-get install percona-toolkit did not bring pt-upgrade")
    return found


def run_pt_upgrade(binary: str, pair: ClusterPair, password: str, log: Path, workdir: Path) -> dict:
    """pt-upgrade on the log; returns the classes it reported as differing (by our fingerprint of
    the examples it prints), the statements it ran and its wall time."""
    cnf = workdir / "pt.cnf"  # the password in a file of ours (mode 600), never on a command line
    cnf.write_text(f"[client]\nuser={ADMIN_USER}\npassword={password}\n")
    cnf.chmod(0o600)
    dsn = "h={},P={},F=" + str(cnf)
    t0 = time.perf_counter()
    r = subprocess.run([binary, dsn.format(pair.blue.host, pair.blue.port), dsn.format(pair.green.host, pair.green.port),
                        "--type", "slowlog", "--no-version-check", "--no-create-upgrade-table",
                        "--upgrade-table", "percona_schema.pt_upgrade", "--max-examples", "3", "--progress", "time,3600",
                        str(log)], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    (workdir / "pt-upgrade.txt").write_text(r.stdout + r.stderr)
    if r.returncode not in (0, 1) and "Query class" not in r.stdout:
        raise SystemExit(f"pt-upgrade failed ({r.returncode}): {r.stderr[-2000:]}")
    differing: dict[str, list[str]] = {}
    for block in r.stdout.split("# Query class ")[1:]:
        kinds = re.findall(r"^## (.+?) diffs?: \d+", block, re.M)
        # The examples as logged (upper case here); the lower-case line is pt's own fingerprint.
        examples = [m.strip() for m in re.findall(r"^(?:SELECT|SHOW|WITH) [^\n]*", block, re.M)]
        fps = {fingerprint(e) for e in examples}
        for fp in fps or {"?" + block[:40]}:
            differing.setdefault(fp, []).extend(kinds)
    executed = _pt_stat(r.stdout, "queries_read") - _pt_stat(r.stdout, "queries_filtered") - \
        _pt_stat(r.stdout, "not_select")
    return {"differing": differing, "seconds": seconds, "executed": executed, "stats_text": _pt_stats(r.stdout)}


def _pt_stats(text: str) -> dict:
    out = {}
    for k, v in re.findall(r"^(\w+)\s+(\d+)\s*$", text.split("# Stats")[-1] if "# Stats" in text else "", re.M):
        out[k] = int(v)
    return out


def _pt_stat(text: str, name: str) -> int:
    return _pt_stats(text).get(name, 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--statements", type=int, default=5500)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (pt-upgrade.txt, the log)")
    args = ap.parse_args()
    pt = ensure_pt_upgrade()
    workdir = Path(tempfile.mkdtemp(prefix="bgq-bench-replay-"))
    pw = SandboxPasswords.generate()
    pw.export_env()
    pair = ClusterPair(workdir / "pair", "bench", 801, 802, pw).start()
    writers = None
    try:
        with pair.blue.root() as b, pair.green.root() as g:
            data.load_blue(b.cursor())
            b.cursor().execute("CREATE DATABASE percona_schema")
            b.cursor().execute("CREATE TABLE percona_schema.pt_upgrade (id INT NOT NULL PRIMARY KEY)")
            pair.wait_green_synced()
            data.seed_green(g.cursor())
            data.load_names(b.cursor())
        pair.wait_green_synced()
        text, count = slow_log(args.statements)
        log = workdir / "slow.log"
        log.write_text(text)
        seeded = {name: fingerprint(sql) for name, sql in data.seeded_queries(0).items()}
        spec = ClusterSpec.model_validate({**pair.spec_dict(), "replay": {
            "source": "slow_log", "path": str(log), "max_classes": 1000, "samples_per_class": 100,
            "max_statements": 1_000_000, "concurrency": args.concurrency}})
        writers = data.Writers(pair, pw.app, rate=args.rate).start()
        time.sleep(1.0)
        w0, t0 = writers.writes, time.monotonic()
        blue, green = servers(spec)
        try:
            report = replay_cluster(spec, blue, green)
        finally:
            blue.close()
            green.close()
        ours = {c.qc.fingerprint for c in report.differing}
        ptr = run_pt_upgrade(pt, pair, pw.admin, log, workdir)
        rate = (writers.writes - w0) / (time.monotonic() - t0)
        theirs = set(ptr["differing"])
        seeded_fps = set(seeded.values())
        result = {
            "machine": "2 cores, shared with other engineers' test runs (loaded)",
            "log": {"statements": count, "classes_replayable": len(report.classes),
                    "skipped": sum(report.capture.skipped.values())},
            "writes_per_s": round(rate, 1),
            "bgqueue": {"statements_per_s": round(report.statements / report.seconds, 1),
                        "statements": report.statements, "seconds": round(report.seconds, 3),
                        "concurrency": args.concurrency, "classes_differing": len(ours),
                        "false_differences": len(ours - seeded_fps),
                        "false": sorted(ours - seeded_fps)[:10]},
            "pt_upgrade": {"statements_per_s": round(ptr["executed"] / ptr["seconds"], 1) if ptr["seconds"] else None,
                           "statements": ptr["executed"], "seconds": round(ptr["seconds"], 3),
                           "classes_differing": len(theirs), "false_differences": len(theirs - seeded_fps),
                           "false": sorted(theirs - seeded_fps)[:10], "stats": ptr["stats_text"]},
            "seeded": {"total": len(seeded_fps), "found_by_bgqueue": len(ours & seeded_fps),
                       "found_by_pt_upgrade": len(theirs & seeded_fps),
                       "missed_by_bgqueue": sorted(n for n, fp in seeded.items() if fp not in ours),
                       "missed_by_pt_upgrade": sorted(n for n, fp in seeded.items() if fp not in theirs),
                       "reorder_only_flagged_by_pt_upgrade": fingerprint(data.reorder_only_query(0)) in theirs},
        }
        b_rate, p_rate = result["bgqueue"]["statements_per_s"], result["pt_upgrade"]["statements_per_s"]
        result["ratio_statements_per_s"] = round(b_rate / p_rate, 2) if p_rate else None
        print(json.dumps(result, indent=2))
    finally:
        if writers is not None:
            writers.stop()
        pair.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
