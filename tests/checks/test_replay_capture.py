"""Capture: fingerprints and the read-only filter (pure), logs written by a real mariadbd (slow and
general, file and table output; performance_schema's history), and MySQL 8's log formats."""
from __future__ import annotations

import os
from collections import Counter

import pymysql
import pytest

from bgqueue.adapters.mysql.server import Server
from bgqueue.checks.replay import capture as cap
from bgqueue.checks.replay.compare import latency
from bgqueue.checks.replay.fingerprint import classify, fingerprint
from bgqueue.model.replay import ReplaySpec
from bgqueue.model.schema_base import Credentials, Endpoint
from bgqueue.sandbox import ADMIN_PASSWORD_ENV, ADMIN_USER, MariaDBServer


def test_fingerprint_replaces_literals_and_collapses_in_lists():
    a = fingerprint("SELECT  *  FROM `appdb`.`orders` WHERE id IN (1, 2, 3) AND s = 'it''s' AND x > -5 -- c\n LIMIT 10")
    b = fingerprint("select * from appdb.orders where id in (7) and s = \"q\" and x > 3.5e2 /* other */ limit 1;")
    assert a == b == "select * from appdb.orders where id in (?+) and s = ? and x > ? limit ?"
    assert fingerprint("SELECT a - 1 FROM t WHERE b = 0x1F") == "select a - ? from t where b = ?"
    assert fingerprint("SELECT a FROM t WHERE id IN (SELECT b FROM u)") == "select a from t where id in (select b from u)"


@pytest.mark.parametrize("sql, reason", [
    ("UPDATE t SET a = 1", "not a read-only statement (UPDATE)"),
    ("INSERT INTO t VALUES (1)", "not a read-only statement (INSERT)"),
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", "takes row locks (FOR UPDATE / FOR SHARE)"),
    ("SELECT * FROM t LOCK IN SHARE MODE", "takes row locks (FOR UPDATE / FOR SHARE)"),
    ("SELECT a INTO @x FROM t", "not read-only: INTO"),
    ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "not read-only: INTO"),
    ("SELECT GET_LOCK('x', 10)", "calls GET_LOCK: waits, locks or has side effects"),
    ("SELECT SLEEP(5)", "calls SLEEP: waits, locks or has side effects"),
    ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE executes the statement"),
    ("SET SESSION sql_mode = ''", "not a read-only statement (SET)"),
])
def test_statements_that_are_not_reads_are_skipped_with_a_reason(sql, reason):
    c = classify(sql)
    assert not c.replayable and c.skip_reason == reason


def test_reads_are_replayable_and_classified():
    for sql, kind in [("SELECT REPLACE(name, 'a', 'b') FROM t", "select"), ("(SELECT 1) UNION (SELECT 2)", "select"),
                      ("WITH x AS (SELECT 1) SELECT * FROM x", "select"), ("SHOW TABLES", "show"),
                      ("EXPLAIN SELECT * FROM t", "explain"), ("DESCRIBE t", "explain")]:
        c = classify(sql)
        assert c.replayable and c.kind == kind, (sql, c)
    assert not classify("SELECT NOW(), id FROM t").deterministic and not classify("SELECT @@hostname").deterministic
    c = classify("SELECT id, name FROM appdb.t WHERE x = 1 ORDER BY t.name DESC, id LIMIT 5")
    assert c.ordered and c.order_columns == ("name", "id") and c.tables == ("appdb.t",)
    assert classify("SELECT a FROM t ORDER BY a + 1").order_columns == ()
    for sql in ("SELECT * FROM information_schema.PROCESSLIST", "SELECT sql_text FROM mysql.slow_log",
                "SELECT * FROM performance_schema.threads"):
        assert classify(sql).server_state and not classify(sql).deterministic  # columns compared, not rows
    assert not classify("SELECT * FROM appdb.slow_log").server_state


def test_classes_are_bounded_most_frequent_first():
    spec = ReplaySpec(source="file", path="/x", max_classes=2, samples_per_class=2)
    sts = [cap.Statement("db", f"SELECT * FROM t WHERE id = {i}") for i in range(5)]
    sts += [cap.Statement("db", "SELECT 1"), cap.Statement("db", "SELECT 2"), cap.Statement("db", "SELECT * FROM u")]
    sts += [cap.Statement("db", "DELETE FROM t")]
    got = cap.group(sts, spec)
    assert [c.fingerprint for c in got.classes] == ["select * from t where id = ?", "select ?"]
    assert [len(c.samples) for c in got.classes] == [2, 2] and got.classes[0].seen == 5
    assert got.dropped_classes == 1 and got.skipped == Counter({"not a read-only statement (DELETE)": 1})


def test_latency_regression_is_judged_on_p50_and_on_p95_only_with_enough_samples():
    assert latency([0.001] * 5, [0.02] * 5, ratio=10, floor_ms=1).regressed
    assert latency([0.001] * 4 + [0.05, 0.06], [0.02] * 6, ratio=10, floor_ms=1).regressed  # blue hiccups
    assert not latency([0.001] * 20, [0.001] * 19 + [0.05], ratio=10, floor_ms=1).regressed  # 1 slow sample in 20
    assert latency([0.001] * 20, [0.001] * 17 + [0.05] * 3, ratio=10, floor_ms=1).regressed  # p95, 20 samples
    assert not latency([0.0001] * 5, [0.0009] * 5, ratio=5, floor_ms=1).regressed  # ×9 but under 1 ms
    assert not latency([0.001] * 9 + [0.1], [0.001] * 9 + [0.1], ratio=10, floor_ms=1).regressed
    assert not latency([0.001] * 5, [0.001] * 4 + [0.5], ratio=10, floor_ms=1).regressed  # one slow sample


MYSQL_SLOW = """/usr/sbin/mysqld, Version: 8.4.3 (MySQL Community Server - GPL). started with:
Tcp port: 3306  Unix socket: /var/run/mysqld/mysqld.sock
Time                 Id Command    Argument
# Time: 2026-12-02T10:00:00.123456Z
# User@Host: app[app] @ localhost []  Id:     8
# Query_time: 0.000213  Lock_time: 0.000002 Rows_sent: 1  Rows_examined: 1
use shop;
SET timestamp=1764669600;
SELECT name
  FROM customers WHERE id = 5;
# Time: 2026-12-02T10:00:01.000000Z
# User@Host: app[app] @ localhost []  Id:     8
# Query_time: 0.000100  Lock_time: 0.000002 Rows_sent: 0  Rows_examined: 0
SET timestamp=1764669601;
UPDATE customers SET name = 'x' WHERE id = 6;
"""

MYSQL_GENERAL = """/usr/sbin/mysqld, Version: 8.4.3 (MySQL Community Server - GPL). started with:
Tcp port: 3306  Unix socket: /var/run/mysqld/mysqld.sock
Time                 Id Command    Argument
2026-12-02T10:00:00.100000Z\t    8 Connect\tapp@localhost on shop using TCP/IP
2026-12-02T10:00:00.200000Z\t    8 Query\tSELECT name FROM customers
WHERE id = 5
2026-12-02T10:00:00.300000Z\t    8 Init DB\tother
2026-12-02T10:00:00.400000Z\t    8 Query\tSELECT 1
2026-12-02T10:00:00.500000Z\t    8 Quit\t
"""


def test_mysql_slow_and_general_log_formats(tmp_path):
    slow, general = tmp_path / "slow.log", tmp_path / "general.log"
    slow.write_text(MYSQL_SLOW)
    general.write_text(MYSQL_GENERAL)
    assert cap.detect_format(MYSQL_SLOW) == "slow" and cap.detect_format(MYSQL_GENERAL) == "general"
    assert cap.read_file(str(slow), "auto", None, 100) == [
        cap.Statement("shop", "SELECT name\n  FROM customers WHERE id = 5"),
        cap.Statement("shop", "UPDATE customers SET name = 'x' WHERE id = 6")]
    assert cap.read_file(str(general), "auto", None, 100) == [
        cap.Statement("shop", "SELECT name FROM customers\nWHERE id = 5"), cap.Statement("other", "SELECT 1")]
    assert cap.detect_format("SELECT 1;\nUSE x;\nSELECT 2;") == "sql"
    assert cap.detect_format('{"not": "a log"}\n') == "unknown"


@pytest.fixture
def logging_server(tmp_path, mariadb_cache_dir, sandbox_passwords):
    """One mariadbd logging every statement (slow log with long_query_time=0, general log, to file
    and table) with performance_schema's statement history on, and an admin user."""
    srv = MariaDBServer(tmp_path / "log", "replay-log", 9901, cache_dir=mariadb_cache_dir, options=[
        "performance_schema=ON", "performance-schema-consumer-events-statements-current=ON",
        "performance-schema-consumer-events-statements-history-long=ON",
        "slow_query_log=ON", "long_query_time=0", f"slow_query_log_file={tmp_path / 'slow.log'}",
        "general_log=ON", f"general_log_file={tmp_path / 'general.log'}", "log_output=FILE,TABLE"])
    srv.start()
    with srv.root() as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (ADMIN_USER, sandbox_passwords.admin))
        cur.execute("GRANT ALL ON *.* TO %s@'127.0.0.1'", (ADMIN_USER,))
    yield srv, tmp_path
    srv.stop()


def test_capture_from_a_real_mariadb_logs_and_performance_schema(logging_server):
    srv, tmp = logging_server
    admin = Server(Endpoint(host=srv.host, port=srv.port), Credentials(user=ADMIN_USER, password_env=ADMIN_PASSWORD_ENV),
                   label="blue", tls="disabled")
    app = pymysql.connect(host=srv.host, port=srv.port, user=ADMIN_USER, password=os.environ[ADMIN_PASSWORD_ENV],
                          ssl_disabled=True, autocommit=True)
    with app.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.c (id INT PRIMARY KEY, name VARCHAR(20))")
        app.select_db("shop")
        for i in range(4):
            cur.execute(f"INSERT INTO c VALUES ({i}, 'n{i}')")
            cur.execute(f"SELECT name FROM c WHERE id = {i}")
            cur.execute(f"SELECT name\nFROM c WHERE id IN ({i}, {i + 1})")
        cur.execute("DO 1")  # a statement's log entry is written after its result is sent: the last one is now
    app.close()
    want = {"select name from c where id = ?", "select name from c where id in (?+)"}
    try:
        for source, path in [("slow_log", tmp / "slow.log"), ("slow_log", None), ("general_log", tmp / "general.log"),
                             ("general_log", None), ("digest", None)]:
            spec = ReplaySpec(source=source, path=str(path) if path else None, samples_per_class=10)
            got = cap.capture(spec, admin)
            classes = {c.fingerprint: c for c in got.classes}
            assert want <= set(classes), (source, path, list(classes))
            for fp in want:
                assert {s.database for s in classes[fp].samples} == {"shop"}, (source, path, classes[fp].samples)
                assert len(classes[fp].samples) == 4, (source, path, classes[fp].samples)
            assert got.skipped["not a read-only statement (INSERT)"] == 4, (source, path, got.skipped)
    finally:
        admin.close()
