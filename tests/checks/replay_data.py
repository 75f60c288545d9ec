"""Data, seeded differences and query sets shared by the replay tests and bench/replay.py.

Blue gets the tables (replicated to green); ``seed_green`` then changes green the way an upgrade
or a careless change would. Each seeded difference has a query class that must be found, and
one seeded change (optimizer_switch) only reorders rows of queries without ORDER BY: its class
must NOT be reported.
"""
from __future__ import annotations

import random
import threading
import time

import pymysql

from bgqueue.sandbox import APP_DATABASE, APP_USER

BLUE_SETUP = [
    "CREATE TABLE appdb.orders (id INT PRIMARY KEY, customer INT NOT NULL, amount DECIMAL(10,2) NOT NULL, "
    "status VARCHAR(16) NOT NULL, KEY idx_customer (customer)) ENGINE=InnoDB",
    "INSERT INTO appdb.orders SELECT seq, seq % 10000, seq / 7, ELT(seq % 3 + 1, 'new', 'paid', 'sent') "
    "FROM appdb.seq_1_to_60000",
    "CREATE TABLE appdb.t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
    "INSERT INTO appdb.t SELECT seq, seq % 7 FROM appdb.seq_1_to_300",
    "CREATE TABLE appdb.u (uid INT PRIMARY KEY, tid INT NOT NULL, KEY (tid)) ENGINE=InnoDB",
    "INSERT INTO appdb.u SELECT seq, 301 - seq FROM appdb.seq_1_to_300",
]
# The collation table: made on each server by itself (not replicated), each with its own server
# default, the way a table created after the change gets green's new default. Its rows replicate.
COLLATION_DDL = ["CREATE DATABASE appdb_c", "CREATE TABLE appdb_c.names (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL)"]
NAMES = ["alice", "Alice", "ALICE", "bob", "Bob", "carol", "Zed", "zed", "émile", "Emile"]

GREEN_SEEDS = {
    "only_full_group_by": "SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',ONLY_FULL_GROUP_BY')",
    "div_precision_increment": "SET GLOBAL div_precision_increment = 8",
    "optimizer_switch": "SET GLOBAL optimizer_switch = 'semijoin=off,materialization=off'",
}
DROPPED_INDEX = "ALTER TABLE appdb.orders DROP INDEX idx_customer"


def seeded_queries(i: int) -> dict[str, str]:
    """One example of each seeded class (``i`` varies the literals)."""
    return {
        "only_full_group_by": f"SELECT customer, status, COUNT(*) FROM appdb.orders WHERE customer < {i % 50 + 2} "
                              "GROUP BY customer",
        "div_precision_increment": f"SELECT id, amount / 7 FROM appdb.orders WHERE id = {i + 1}",
        "collation_compare": f"SELECT id FROM appdb_c.names WHERE name = '{['alice', 'bob', 'zed'][i % 3]}'",
        "collation_order": f"SELECT id, name FROM appdb_c.names WHERE id > {i % 2} ORDER BY name, id",
        "dropped_index": f"SELECT id, amount FROM appdb.orders WHERE customer = {i * 37 % 10000}",
    }


def reorder_only_query(i: int) -> str:
    """Rows in another order on green (semi-join off): must not be reported."""
    return f"SELECT t.id FROM appdb.t WHERE t.id IN (SELECT tid FROM appdb.u WHERE uid <= {20 + i % 5})"


def clean_queries(i: int, rnd: random.Random) -> list[str]:
    """Classes that answer alike on green (under writes they change between any two instants)."""
    ids = ", ".join(str(rnd.randint(1, 60_000)) for _ in range(rnd.randint(1, 6)))
    return [
        "SELECT COUNT(*), SUM(amount), MAX(id) FROM appdb.orders",
        f"SELECT status, COUNT(*), SUM(amount) FROM appdb.orders WHERE id > {i * 7} GROUP BY status",
        f"SELECT * FROM appdb.orders WHERE id IN ({ids})",
        f"SELECT id, amount FROM appdb.orders WHERE id > {60_000 - i % 20} ORDER BY id LIMIT 10",
        f"SELECT COUNT(*) FROM appdb.orders WHERE amount > {i % 100}.5",
        "SHOW TABLES FROM appdb",
        f"SELECT v, COUNT(*) FROM appdb.t WHERE id <= {100 + i} GROUP BY v",
    ]


def writes(i: int) -> list[str]:
    """Statements of the log that are not replayed (counted and skipped)."""
    return [f"UPDATE appdb.orders SET amount = amount + 1 WHERE id = {i + 1}",
            f"INSERT INTO appdb.t VALUES ({1000 + i}, 1)", f"SELECT * FROM appdb.orders WHERE id = {i} FOR UPDATE"]


def query_log(rounds: int, *, seeded: bool = True, seed: int = 7) -> str:
    """A SQL file of ``rounds`` examples of every class (and the writes), statements ended by ';'."""
    rnd = random.Random(seed)
    out: list[str] = []
    for i in range(rounds):
        if seeded:
            out += seeded_queries(i).values()
            out.append(reorder_only_query(i))
        out += clean_queries(i, rnd)
        out += writes(i)
    return "".join(s + ";\n" for s in out)


def seed_names(cursor, server_collation: str) -> None:
    """The collation table on one server, made in a session whose server default is ``server_collation``."""
    cursor.execute("SET SESSION sql_log_bin = 0")
    cursor.execute(f"SET SESSION collation_server = '{server_collation}'")
    for ddl in COLLATION_DDL:
        cursor.execute(ddl)
    cursor.execute("SET SESSION sql_log_bin = 1")


def load_blue(cursor) -> None:
    for sql in BLUE_SETUP:
        cursor.execute(sql)
    seed_names(cursor, "utf8mb4_general_ci")


def load_names(cursor) -> None:
    """Blue's rows of the collation table (they replicate to green's own copy)."""
    cursor.executemany("INSERT INTO appdb_c.names VALUES (%s, %s)", list(enumerate(NAMES, start=1)))


def seed_green(cursor, *, dropped_index: bool = True) -> None:
    """The seeded changes on green: global settings, the collation default, the dropped index
    (sql_log_bin=0: green's own change, nothing of it in its binlog)."""
    for sql in GREEN_SEEDS.values():
        cursor.execute(sql)
    seed_names(cursor, "utf8mb4_bin")
    if dropped_index:
        cursor.execute("SET SESSION sql_log_bin = 0")
        cursor.execute(DROPPED_INDEX)
        cursor.execute("SET SESSION sql_log_bin = 1")


class Writers:
    """The application on blue (the unprivileged user over TCP): ``threads`` paced writers,
    updates all over the table and inserts, ~``rate`` writes/s in all."""

    def __init__(self, pair, password: str, rate: float = 300.0, threads: int = 3):
        self.pair, self.password, self.period = pair, password, threads / rate
        self.writes, self.errors = 0, []
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        self._lock = threading.Lock()

    def start(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def _run(self, n: int) -> None:
        conn = pymysql.connect(host=self.pair.blue.host, port=self.pair.blue.port, user=APP_USER,
                               password=self.password, database=APP_DATABASE, autocommit=True, ssl_disabled=True)
        cur, i, next_tick = conn.cursor(), 0, time.monotonic()
        try:
            while not self.halt.is_set():
                try:
                    if i % 3 == 2:
                        cur.execute("INSERT INTO orders VALUES (%s, %s, 1.00, 'new')", (1_000_000 + n * 1_000_000 + i, i % 10000))
                    else:
                        cur.execute("UPDATE orders SET amount = amount + 1, status = %s WHERE id = %s",
                                    (("new", "paid", "sent")[i % 3], (i * 7919 + n) % 60_000 + 1))
                    with self._lock:
                        self.writes += 1
                except pymysql.err.MySQLError as e:
                    self.errors.append(e)
                i += 1
                next_tick += self.period
                time.sleep(max(0.0, next_tick - time.monotonic()))
        finally:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(5)
