"""Applications on the paths real services route through, for the demo and bench/routing.py.

- ``proxy_app``: plain PyMySQL through a TCP proxy (HAProxy), no bgqueue code at all: one
  autocommit connection, dropped and reopened after any error, as a naive service would do;
- ``sqlalchemy_app``: a SQLAlchemy QueuePool from ``bgqueue.client.sqlalchemy.routed_engine``.

Each runs in a ``PathWriter``: a thread inserting ledger rows at a rate, recording when each
insert was acknowledged and every error the application saw (what its users would see). After
a switchover, ``lost`` counts acknowledged rows missing from the cluster's writer.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pymysql

TABLE_DDL = "CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, at DOUBLE)"


class PathWriter:
    """One application writer: ``insert(i)`` for i = 1, 2, … at ``rate`` per second."""

    def __init__(self, name: str, rate: float, insert: Callable[[int], None]):
        self.name, self.rate, self.insert = name, rate, insert
        self.acked: list[tuple[float, int]] = []
        self.errors: list[float] = []
        self.samples: list[str] = []  # a few of the errors the application saw
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"path-{name}", daemon=True)

    def start(self) -> PathWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            i = next(self._ids)
            try:
                self.insert(i)
                self.acked.append((time.monotonic(), i))
            except Exception as e:  # what the application would see
                self.errors.append(time.monotonic())
                if len(self.samples) < 3:
                    self.samples.append(f"{type(e).__name__}: {str(e)[:160]}")
                time.sleep(0.002)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    def acked_ids(self) -> set[int]:
        return {i for _, i in self.acked}

    def gap_ms(self, t0: float, t1: float) -> float:
        """The longest interval between acknowledgements that overlaps [t0, t1] (monotonic)."""
        ts = [t for t, _ in self.acked]
        before = [t for t in ts if t <= t0]
        after = [t for t in ts if t >= t1]
        inside = [t for t in ts if t0 < t < t1]
        points = ([before[-1]] if before else []) + inside + ([after[0]] if after else [])
        return max(((b - a) * 1000 for a, b in zip(points, points[1:], strict=False)), default=0.0)

    def errors_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.errors if t0 <= t <= t1)


def proxy_app(host: str, port: int, user: str, password: str, database: str, table: str) -> Callable[[int], None]:
    """Plain PyMySQL through a proxy: reconnect after an error, nothing else."""
    box: dict = {}

    def insert(i: int) -> None:
        conn = box.get("c")
        if conn is None:
            conn = box["c"] = pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                                              ssl_disabled=True, autocommit=True, connect_timeout=2,
                                              read_timeout=10, write_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {table} (id, at) VALUES (%s, %s)", (i, time.time()))
        except Exception:
            box.pop("c", None)
            try:
                conn.close()
            except Exception:
                pass
            raise

    return insert


def sqlalchemy_app(engine, table: str) -> Callable[[int], None]:
    """An application on a SQLAlchemy pool: a transaction per insert, no retry logic of its own."""
    from sqlalchemy import text

    statement = text(f"INSERT INTO {table} (id, at) VALUES (:i, :at)")

    def insert(i: int) -> None:
        with engine.begin() as c:
            c.execute(statement, {"i": i, "at": time.time()})

    return insert


def create_table(admin_conn, table: str) -> None:
    with admin_conn.cursor() as cur:
        cur.execute(TABLE_DDL.format(table=table))


def lost(admin_conn, table: str, acked: set[int]) -> int:
    """Acknowledged rows missing from the server ``admin_conn`` is connected to."""
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {table}")
        present = {r[0] for r in cur.fetchall()}
    return len(acked - present)
