"""The checksum check on real blue/green pairs: equal tables pass, drift on green is found and
located, concurrent writes on blue never cause a false mismatch, and what cannot be checked is
an error result naming why."""
from __future__ import annotations

import random
import threading
import time

import pymysql
import pytest

from bgqueue.adapters.mysql.server import Server
from bgqueue.checks.checksum import check_checksums, checksum_tables
from bgqueue.checks.checksum_sql import describe_table, range_predicate
from bgqueue.model.schema_base import Credentials, Endpoint
from bgqueue.sandbox import ADMIN_PASSWORD_ENV, ADMIN_USER, APP_DATABASE, APP_USER, ClusterPair

ORDERS = f"{APP_DATABASE}.orders"
MIXED = f"{APP_DATABASE}.mixed"
EMPTY = f"{APP_DATABASE}.empty"


def admin(server) -> Server:
    return Server(Endpoint(host=server.host, port=server.port),
                  Credentials(user=ADMIN_USER, password_env=ADMIN_PASSWORD_ENV), label=server.name, tls="disabled")


def on_green_only(pair: ClusterPair, *statements: str) -> None:
    """Drift: a change made on green outside replication (no GTID, so replication stays healthy)."""
    with pair.green.root() as g:
        cur = g.cursor()
        cur.execute("SET SESSION sql_log_bin = 0")
        for sql in statements:
            cur.execute(sql)
            assert cur.rowcount == 1, sql


@pytest.fixture
def pair(cluster_pair: ClusterPair) -> ClusterPair:
    """A pair whose blue holds: orders (3,000 rows), mixed (composite key, every common type,
    NULLs; 3,000 rows) and an empty table; green has replicated them."""
    with cluster_pair.blue.root() as r:
        cur = r.cursor()
        cur.execute(f"CREATE TABLE {ORDERS} (id INT PRIMARY KEY, customer INT NOT NULL, total DECIMAL(10,2), "
                    "status VARCHAR(16) NOT NULL, note VARCHAR(64) NULL)")
        cur.execute(f"INSERT INTO {ORDERS} SELECT seq, seq % 97, seq / 7, ELT(1 + seq % 3, 'new', 'paid', 'void'), "
                    f"IF(seq % 4 = 0, NULL, CONCAT('n', seq)) FROM {APP_DATABASE}.seq_1_to_3000")
        cur.execute(
            f"CREATE TABLE {MIXED} (region VARCHAR(8) NOT NULL, id INT NOT NULL, qty INT NULL, "
            "price DECIMAL(10,2) NULL, ratio DOUBLE NULL, f FLOAT NULL, name VARCHAR(40) CHARACTER SET utf8mb4 NULL, "
            "body TEXT NULL, raw VARBINARY(16) NULL, data BLOB NULL, d DATE NULL, dt DATETIME(6) NULL, "
            "ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME NULL, e ENUM('a','b','c') NULL, st SET('x','y') NULL, "
            "b BIT(5) NULL, j JSON NULL, "
            "PRIMARY KEY (region, id))")
        cur.execute(
            f"INSERT INTO {MIXED} SELECT ELT(1 + seq % 3, 'ap', 'eu', 'us'), seq, IF(seq % 7 = 0, NULL, seq), "
            "seq / 3, seq / 9, seq / 11, IF(seq % 5 = 0, NULL, CONCAT('näme ', seq)), "
            "IF(seq % 5 = 0, CONCAT('body ', seq), NULL), "
            "UNHEX(HEX(seq)), IF(seq % 2, NULL, REPEAT('x', seq % 50)), '2024-01-01' + INTERVAL seq DAY, "
            "'2024-01-01' + INTERVAL seq * 997 SECOND, IF(seq % 3, FROM_UNIXTIME(1700000000 + seq), NULL), "
            "SEC_TO_TIME(seq * 13), ELT(1 + seq % 3, 'a', 'b', 'c'), IF(seq % 2, 'x,y', 'y'), seq % 32, "
            f"JSON_OBJECT('k', seq) FROM {APP_DATABASE}.seq_1_to_3000")
        cur.execute(f"CREATE TABLE {EMPTY} (id INT PRIMARY KEY, v INT)")
    cluster_pair.wait_green_synced()
    return cluster_pair


def test_identical_tables_pass_in_many_chunks(pair):
    blue, green = admin(pair.blue), admin(pair.green)
    result = check_checksums(blue, green, [ORDERS, MIXED, EMPTY], max_rows_per_chunk=400)
    assert result.status == "pass", result.reason
    ev = result.evidence
    assert ev["tables"] == [ORDERS, MIXED, EMPTY]
    assert ev["rows"] == 6000 and ev["chunks"] >= 2 * 3000 // 400 + 1
    assert ev["rows_per_s"] > 0 and ev["seconds"] > 0
    # The replicated checksum statements did not disturb green's replication.
    status = green.replica_status()
    assert status.healthy, status
    assert check_checksums(blue, green, []).status == "pass"


def test_row_changed_on_green_fails_naming_table_chunk_and_key_range(pair):
    on_green_only(pair, f"UPDATE {ORDERS} SET total = total + 0.01 WHERE id = 1234")
    blue, green = admin(pair.blue), admin(pair.green)
    result = check_checksums(blue, green, [ORDERS, MIXED], max_rows_per_chunk=500)
    assert result.status == "fail" and not result.retryable, result.reason
    [bad] = result.evidence["mismatches"]
    assert bad["table"] == ORDERS and bad["first"][0] <= 1234 <= bad["upto"][0] and bad["chunk"] > 1
    assert bad["differing_keys"] == [[1234]]
    assert result.reason.startswith(f"{ORDERS} chunk {bad['chunk']} (id {bad['first'][0]}..{bad['upto'][0]}): "
                                    "1 row(s) differ: id 1234"), result.reason


def test_null_moved_between_columns_on_green_is_found_in_composite_key_chunk(pair):
    # CONCAT_WS skips NULLs: only the ISNULL markers tell (NULL, 'body 10') from ('body 10', NULL).
    on_green_only(pair, f"UPDATE {MIXED} SET name = body, body = NULL WHERE region = 'eu' AND id = 10")
    result = check_checksums(admin(pair.blue), admin(pair.green), [MIXED], max_rows_per_chunk=300)
    assert result.status == "fail", result.reason
    [bad] = result.evidence["mismatches"]
    assert tuple(bad["first"]) <= ("eu", 10) <= tuple(bad["upto"])
    assert bad["differing_keys"] == [["eu", 10]]
    assert f"{MIXED} chunk {bad['chunk']} ((region, id) " in result.reason
    assert "differ: (region, id) ('eu', 10)" in result.reason


def test_rows_deleted_or_added_on_green_fail_with_row_counts(pair):
    on_green_only(pair, f"DELETE FROM {ORDERS} WHERE id = 2999")
    blue, green = admin(pair.blue), admin(pair.green)
    run = checksum_tables(blue, green, [ORDERS], max_rows_per_chunk=700, locate_rows=True)
    [bad] = run.mismatches
    assert (bad.blue_rows, bad.green_rows) == (bad.green_rows + 1, bad.green_rows)
    assert bad.differing_keys == [(2999,)]
    assert run.rows == 3000 and len(run.chunks) == 5

    # Rows only on green, below and above every key blue has: the first and last chunks are open.
    on_green_only(pair, f"INSERT INTO {ORDERS} VALUES (-5, 1, 1, 'x', NULL)",
                  f"INSERT INTO {ORDERS} VALUES (90000, 1, 1, 'x', NULL)")
    result = check_checksums(blue, green, [ORDERS], max_rows_per_chunk=700)
    assert result.status == "fail", result.reason
    assert result.reason == (f"{ORDERS} chunk 1 (id ≤ 700): 1 row(s) differ: id -5 (700 row(s) on blue, 701 on green); "
                             f"{ORDERS} chunk 5 (id ≥ 2801): 2 row(s) differ: id 2999, 90000 "
                             "(200 row(s) on both, checksum differs)")


class AppWriter(threading.Thread):
    """The application on blue (the unprivileged user, over TCP): updates and inserts at ~rate/s."""

    def __init__(self, pair: ClusterPair, password: str, rate: float = 200.0):
        super().__init__(daemon=True)
        self.conn = pymysql.connect(host=pair.blue.host, port=pair.blue.port, user=APP_USER, password=password,
                                    database=APP_DATABASE, autocommit=True, ssl_disabled=True)
        self.period, self.writes, self.errors = 1.0 / rate, 0, []
        self.halt = threading.Event()

    def run(self) -> None:
        cur, rnd, next_id = self.conn.cursor(), random.Random(3), 100_000
        while not self.halt.is_set():
            try:
                if self.writes % 3 == 2:
                    next_id += 1
                    cur.execute("INSERT INTO orders VALUES (%s, 1, 1.00, 'new', NULL)", (next_id,))
                else:  # rows all over the key space, so every chunk sees writes
                    cur.execute("UPDATE orders SET total = total + 1, note = %s WHERE id = %s",
                                (f"w{self.writes}", rnd.randint(1, 20_000)))
                self.writes += 1
            except pymysql.err.MySQLError as e:
                self.errors.append(e)
            time.sleep(self.period)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.conn.close()


def direct_mismatches(blue: Server, green: Server, table: str, step: int) -> int:
    """What a naive check would see: each range hashed on blue, then on green, right now."""
    info = describe_table(blue, table)
    bad = 0
    for lo in range(0, 20_000, step):
        where, args = range_predicate(info.key, (lo,), (lo + step,))
        sql = f"SELECT COUNT(*), BIT_XOR({info.row_hash()}) FROM {info.sql_name} WHERE {where}"
        bad += blue.rows(sql, args) != green.rows(sql, args)
    return bad


def test_concurrent_writes_on_blue_never_cause_a_false_mismatch(pair, sandbox_passwords):
    with pair.blue.root() as r:
        r.cursor().execute(f"INSERT INTO {ORDERS} SELECT seq, seq % 97, seq / 7, 'new', NULL "
                           f"FROM {APP_DATABASE}.seq_3001_to_20000")
    pair.wait_green_synced()
    with pair.green.root() as g:
        # Green a second behind: blue and green now differ at any instant under writes, so only a
        # comparison made at one point of the replication stream can agree.
        for sql in ("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 1", "START SLAVE"):
            g.cursor().execute(sql)
    blue, green = admin(pair.blue), admin(pair.green)
    writer = AppWriter(pair, sandbox_passwords.app)
    writer.start()
    try:
        time.sleep(0.3)
        assert direct_mismatches(blue, green, ORDERS, 150) > 0  # the workload defeats a naive comparison
        for _ in range(3):
            before = writer.writes
            result = check_checksums(blue, green, [ORDERS], max_rows_per_chunk=150)
            assert result.status == "pass", result.reason
            assert result.evidence["chunks"] > 100
            # Only meaningful if the application really wrote while the chunks were taken.
            assert writer.writes - before >= 10, (writer.writes - before, result.evidence)
    finally:
        writer.stop()
    assert not writer.errors


def test_lock_held_by_application_is_waited_out(pair, sandbox_passwords):
    app = pymysql.connect(host=pair.blue.host, port=pair.blue.port, user=APP_USER, password=sandbox_passwords.app,
                          database=APP_DATABASE, ssl_disabled=True)
    cur = app.cursor()
    cur.execute("BEGIN")
    cur.execute("UPDATE orders SET total = 0 WHERE id = 10")  # holds its row lock for 1.5 s
    release = threading.Timer(1.5, app.commit)
    release.start()
    result = check_checksums(admin(pair.blue), admin(pair.green), [ORDERS])
    release.join()
    app.close()
    assert result.status == "pass", result.reason
    assert result.evidence["lock_retries"] >= 1


def test_what_cannot_be_checked_is_an_error_naming_it(pair):
    with pair.blue.root() as r:
        cur = r.cursor()
        cur.execute(f"CREATE TABLE {APP_DATABASE}.nopk (a INT, b INT)")
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"CREATE TABLE {APP_DATABASE}.blue_only (id INT PRIMARY KEY)")
    pair.wait_green_synced()
    blue, green = admin(pair.blue), admin(pair.green)
    cases = {
        f"{APP_DATABASE}.nopk": "table appdb.nopk has no primary key",
        f"{APP_DATABASE}.nosuch": "table appdb.nosuch does not exist on blue",
        f"{APP_DATABASE}.blue_only": "table appdb.blue_only does not exist on green",
        "orders": "'orders' is not of the form database.table",
    }
    for table, reason in cases.items():
        result = check_checksums(blue, green, [ORDERS, table])
        assert (result.status, result.retryable) == ("error", False), result
        assert result.reason.startswith(reason), result.reason
    assert green.replica_status().healthy


def test_green_not_caught_up_within_the_bound_is_a_retryable_error(pair):
    blue, green = admin(pair.blue), admin(pair.green)
    with pair.green.root() as g:
        cur = g.cursor()
        # Green's replication applier will wait for this lock while recomputing the chunk.
        cur.execute("BEGIN")
        cur.execute(f"SELECT COUNT(*) FROM {ORDERS} WHERE id = 5 FOR UPDATE")
        t0 = time.monotonic()
        result = check_checksums(blue, green, [ORDERS], catchup_timeout_s=1.0)
        elapsed = time.monotonic() - t0
        g.rollback()
    assert (result.status, result.retryable) == ("error", True), result
    assert "did not reach blue's position" in result.reason and "within 1s" in result.reason
    assert elapsed < 5
    pair.wait_green_synced()  # released: green applies the chunk and goes on

    with pair.green.root() as g:
        g.cursor().execute("STOP SLAVE SQL_THREAD")
    result = check_checksums(blue, green, [ORDERS])
    assert (result.status, result.retryable) == ("error", True), result
    assert "is not replicating" in result.reason


def test_key_ranges_read_as_bounds():
    from bgqueue.checks.checksum import ChunkResult

    def text(after, first, upto):
        return ChunkResult("d.t", 1, ("id",), after, first, upto).range_text

    assert text(None, (1,), None) == "all rows"  # one chunk: no bound to print
    assert text(None, (1,), (700,)) == "id ≤ 700"
    assert text((2800,), (2801,), None) == "id ≥ 2801"
    assert text((700,), (701,), (1400,)) == "id 701..1400"
