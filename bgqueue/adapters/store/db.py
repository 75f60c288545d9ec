"""Engine, sessions and schema migrations for the store.

SQLite runs in WAL mode with a busy timeout so that several worker processes can share one
file; any other SQLAlchemy URL works unchanged. The schema is owned by Alembic migrations.
"""
from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
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


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=False)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; serialised across processes on SQLite)."""
    url = engine.url.render_as_string(hide_password=False)
    lock = None
    if engine.url.get_backend_name() == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock = open(str(engine.url.database) + ".migrate.lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() == _head():
                return
        cfg = alembic_config(url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
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


class Store:
    """A handle on the store: an engine and a session factory."""

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
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
