"""Engine, sessions and schema migrations for the store.

SQLite runs in WAL mode with a busy timeout so that several worker processes can share one
file. PostgreSQL (``postgresql+psycopg://``) and MySQL-family servers (``mysql+pymysql://``) are
tested too: their connections are pinged before use (a restarted server is survived), PostgreSQL
sessions run in UTC, and JSON never carries NaN or infinities (which those servers refuse).
The schema is owned by Alembic migrations; concurrent first opens are serialised on every backend.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bgqueue.model.errors import BadInput

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable against a process crash in WAL mode; it keeps journal writes sub-ms,
    # which matters because the switchover journals inside the write-blocked window.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# libpq's connect_timeout: a server that is down or unreachable fails a connect instead of hanging.
CONNECT_TIMEOUT_S = 10
# Key of the PostgreSQL advisory lock / name of the MySQL named lock that serialises migrations.
MIGRATE_LOCK_KEY = 0x6267_7175  # "bgqu"
MIGRATE_LOCK_NAME = "bgqueue.adapters.store.migrate"
MIGRATE_LOCK_TIMEOUT_S = 120


def _finite(value):
    """``value`` with NaN and infinities (at any depth) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_dumps(value) -> str:
    """JSON for servers that validate it: PostgreSQL's json and MariaDB's JSON_VALID refuse the
    NaN / Infinity tokens Python writes, which would fail a journal write mid-procedure. Such
    floats are stored as null there (SQLite keeps Python's json.dumps: it stores them)."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=False)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    u = make_url(url)
    connect_args: dict = {}
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("psycopg", "psycopg2"):
        # Sessions in UTC whatever the server's TimeZone: timestamptz values come back with a +00:00
        # offset (as SQLite's UTC values are read), and a naive datetime means UTC as it does there.
        # As a startup option, not a SET: the pool's rollback on return would undo a SET.
        options = " ".join(filter(None, [u.query.get("options"), "-c timezone=UTC"]))
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "options": options}
    # pool_pre_ping: a connection that died with a server restart is replaced before it is used.
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=json_dumps)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _at_head(conn: Connection) -> bool:
    return MigrationContext.configure(conn).get_current_revision() == _head()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; serialised across processes: a file
    lock on SQLite, an advisory lock on PostgreSQL, a named lock on MySQL-family servers; else two
    workers opening an empty database at once both create the tables and one fails)."""
    url = engine.url.render_as_string(hide_password=False)
    backend = engine.url.get_backend_name()
    lock = None
    if backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock = open(str(engine.url.database) + ".migrate.lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with engine.connect() as conn:
            if _at_head(conn):
                return
        cfg = alembic_config(url)
        with engine.begin() as conn:
            if backend == "postgresql":
                # Held to the end of this transaction, which holds every migration (DDL is transactional).
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
            elif backend == "mysql":
                # A session lock (MySQL commits each DDL statement): released below, or when the connection ends.
                got = conn.execute(text("SELECT GET_LOCK(:n, :t)"),
                                   {"n": MIGRATE_LOCK_NAME, "t": MIGRATE_LOCK_TIMEOUT_S}).scalar()
                if got != 1:
                    raise TimeoutError(f"store migrations: lock {MIGRATE_LOCK_NAME!r} not granted in "
                                       f"{MIGRATE_LOCK_TIMEOUT_S}s (another process is migrating)")
            try:
                if not _at_head(conn):  # the lock's previous holder may have migrated already
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
            finally:
                if backend == "mysql":
                    conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": MIGRATE_LOCK_NAME})
    finally:
        if lock:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


def detached(session: Session, query) -> list:
    """The rows of ``query`` as objects that outlive the session (read-only use by callers)."""
    rows = list(session.execute(query).scalars())
    for r in rows:
        session.expunge(r)
    return rows


def get_detached(store: Store, model: type, key: str, what: str):
    """The row of ``model`` with this primary key, detached; BadInput ("no <what> <key>") when absent."""
    with store.session() as s:
        row = s.get(model, key)
        if row is None:
            raise BadInput(f"no {what} {key}")
        s.expunge(row)
        return row


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    # A forked child (a Celery prefork worker) must not talk over its parent's sockets: two
    # processes on one PostgreSQL or MySQL connection garble it, and one SQLite handle must not
    # cross a fork. Drop them from the pool without closing them (close=False: the parent keeps
    # using its own); the child opens its own on first use.
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


class Store:
    """A handle on the store: an engine and a session factory."""

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        _engines.add(self.engine)
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A Core connection in a transaction (commit on success): the hot paths, which write a
        row or two per step, skip the ORM's unit of work and its bulk-update bookkeeping."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions() as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


@lru_cache(maxsize=8)
def open_store(url: str) -> Store:
    """One Store per URL per process (workers open it once)."""
    return Store(url)
