"""Issue 11, item 7: leaks. Check evidence carries no other session's statement text, the log masker
covers the shapes secrets come in, and the HTML report is the operator's only.

Attacks tried: a password in a statement another session runs on blue while bgqueue validates
(``ALTER USER … IDENTIFIED BY '…'`` waiting on a lock, a long-open transaction beside it), looked
for in the check's result (what the result backend carries), the store, ``bgqueue status --json``
and the report; the same password quoted by a replica's SQL-thread error; log lines with
IDENTIFIED BY and redis:// URLs; a report written under umask 022.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import time
from pathlib import Path

import pymysql
import pytest

from bgqueue.adapters.logs import MASK, mask
from bgqueue.adapters.mysql.server import servers
from bgqueue.adapters.store import deployments as deps
from bgqueue.app.report import write_batch_report
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.replication import replication_health
from bgqueue.engine import validation
from bgqueue.model.fleet import ClusterSpec
from bgqueue.model.phases import Phase
from tests.fixtures.bgq import bgqueue_cli
from tests.security.conftest import put_in_phase


@pytest.mark.parametrize("line,secret", [
    ("CREATE USER 'x'@'%' IDENTIFIED BY 'hunter2-secret'", "hunter2-secret"),
    ("alter user x identified by \"dq-secret-1\" password expire never", "dq-secret-1"),
    ("CREATE USER x IDENTIFIED BY 'it''s-a-secret'", "s-a-secret"),
    ("CREATE USER x IDENTIFIED WITH mysql_native_password BY 'plugin-secret'", "plugin-secret"),
    ("CREATE USER x IDENTIFIED VIA ed25519 USING PASSWORD('ed-secret')", "ed-secret"),
    ("SET PASSWORD FOR x = PASSWORD('fn-secret')", "fn-secret"),
    ("broker redis://:only-a-password@10.0.0.5:6379/0 is down", "only-a-password"),
    ("results rediss://worker:user-and-pass@redis.internal:6380/1", "user-and-pass"),
    ("redis://worker:p@ss@word@redis.internal/0", "p@ss@word"),
    ('{"message": "connect redis://:json-pw@h:6379/0", "cluster": "c01"}', "json-pw"),
])
def test_the_log_masker_masks_these_shapes(line, secret):
    masked = mask(line)
    assert secret not in masked and MASK in masked, masked


def test_the_masker_leaves_the_rest_of_the_line_readable():
    assert mask("redis://:pw-123456@redis.internal:6379/0") == "redis://:***@redis.internal:6379/0"
    assert mask("CREATE USER 'app'@'%' IDENTIFIED BY 'pw' REQUIRE SSL") == \
        "CREATE USER 'app'@'%' IDENTIFIED BY *** REQUIRE SSL"
    assert mask("redis://redis.internal:6379/0 (no password)") == "redis://redis.internal:6379/0 (no password)"


def test_the_report_file_is_the_operators_only_whatever_the_umask(runtime, tmp_path):
    batch_id, _ = deps.create_batch(runtime.store, fleet_name="leaks", fleet_path="/leaks.yaml", fleet_text="",
                                    clusters=[])
    out = tmp_path / "reports" / "batch.html"
    old = os.umask(0o022)
    try:
        path = write_batch_report(runtime.store, batch_id, out)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o644)  # an existing world-readable report is replaced by a private one
        write_batch_report(runtime.store, batch_id, out)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def _store_bytes(runtime) -> bytes:
    store_file = runtime.settings.effective_store_url.split("///", 1)[1]
    runtime.store.engine.dispose()
    return b"".join(Path(p).read_bytes() for p in (store_file, store_file + "-wal") if Path(p).exists())


def test_a_password_in_another_sessions_statement_reaches_no_evidence(cluster_pair_factory, unique_name, fleet_file,
                                                                      runtime, bgq_env, sandbox_passwords, tmp_path):
    secret = f"hunter2-secret-{secrets.token_hex(6)}"
    pair = cluster_pair_factory(unique_name("leak"))
    path = fleet_file([pair], max_trx_age_s=1)
    dep_id = put_in_phase(runtime, path, Phase.VALIDATING)
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute("CREATE TABLE appdb.t (id INT PRIMARY KEY)")
    # A long-open transaction of the application, and account statements queued behind a table lock.
    app = pymysql.connect(host=pair.blue.host, port=pair.blue.port, user="app", password=sandbox_passwords.app,
                          database="appdb", ssl_disabled=True)
    locker, alter, create = pair.blue.root(), pair.blue.root(), pair.blue.root()
    blocked = []
    try:
        with app.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO t VALUES (1)")
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES mysql.global_priv READ")
        for conn, sql in ((alter, f"ALTER USER 'app'@'127.0.0.1' IDENTIFIED BY '{secret}'"),
                          (create, f"CREATE USER 'intruder'@'%' IDENTIFIED BY '{secret}'")):
            blocked.append(conn.thread_id())
            threading.Thread(target=_quietly, args=(conn, sql), daemon=True).start()
        time.sleep(2.2)  # older than max_trx_age_s (whole seconds on the server)
        with pair.blue.root() as c, c.cursor() as cur:  # the attack is in place: blue's processlist shows it
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s "
                        "AND ID <> CONNECTION_ID()", (f"%{secret}%",))
            assert cur.fetchone()[0] == 2

        result = validation.run_named_check(runtime, dep_id, "blue_activity")  # what the result backend carries
        validation.conclude(runtime, dep_id, [result])  # recorded in the store
    finally:
        with pair.blue.root() as c, c.cursor() as cur:
            for pid in blocked:  # never let the queued statements run
                cur.execute(f"KILL {int(pid)}")
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        for conn in (locker, alter, create, app):
            try:
                conn.close()
            except Exception:
                pass

    assert result["status"] == "fail", result
    assert "DDL in flight on blue" in result["reason"] and "ALTER USER (digest " in result["reason"], result
    assert "1 transaction(s) open longer than 1s" in result["reason"]
    assert result["evidence"]["ddl"][0]["statement"].startswith("ALTER USER (digest ")
    assert secret not in json.dumps(result), "a password reached the check's result"
    assert secret.encode() not in _store_bytes(runtime), "a password reached the store"

    spec = ClusterSpec.model_validate(deps.get_deployment(runtime.store, dep_id).spec)
    p = bgqueue_cli("status", spec.name, "--json", env=bgq_env)
    assert p.returncode == 0 and "blue_activity" in p.stdout and "ALTER USER (digest" in p.stdout, p.stderr
    assert secret not in p.stdout + p.stderr, "a password reached bgqueue status"
    batch_id = deps.get_deployment(runtime.store, dep_id).batch_id
    html = write_batch_report(runtime.store, batch_id, tmp_path / "report.html").read_text()
    assert "ALTER USER (digest" in html and secret not in html, "a password reached the report"


def test_a_replication_error_quoting_a_statement_reaches_no_evidence(cluster_pair_factory, unique_name, runtime):
    secret = f"quoted-secret-{secrets.token_hex(6)}"
    pair = cluster_pair_factory(unique_name("leakrepl"))
    with pair.green.root() as c, c.cursor() as cur:  # green already has the account: replaying it fails
        cur.execute("SET SESSION sql_log_bin=0")
        cur.execute("CREATE USER 'dup'@'%' IDENTIFIED BY 'x'")
    with pair.blue.root() as c, c.cursor() as cur:
        cur.execute(f"CREATE USER 'dup'@'%' IDENTIFIED BY '{secret}'")
    with pair.green.root(cursorclass=pymysql.cursors.DictCursor) as c, c.cursor() as cur:
        deadline = time.monotonic() + 10
        while True:
            cur.execute("SHOW SLAVE STATUS")
            raw = cur.fetchone()["Last_SQL_Error"]
            if raw or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert secret in raw  # the server's own message quotes the statement, password and all
    spec = ClusterSpec.model_validate(pair.spec_dict())
    blue, green = servers(spec)
    ctx = CheckContext(spec=spec, blue=blue, green=green, store=runtime.store)
    try:
        result = run_check("replication_health", replication_health, ctx)
    finally:
        ctx.close()
    text = json.dumps(result.as_dict(), default=str)
    assert result.status == "fail" and "Query: CREATE USER (digest " in text, text
    assert secret not in text


def _quietly(conn, sql: str) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except pymysql.MySQLError:
        pass  # killed by the test, as intended
