import sqlite3

import pytest
from sqlalchemy import inspect

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store.db import Store
from bgqueue.model.errors import FencedOut, IllegalTransition
from bgqueue.model.phases import Phase

SPEC = {"name": "c1", "provider": "mysql", "blue": {"host": "h", "port": 1}, "green": {"host": "h", "port": 2}}


@pytest.fixture
def store(store_url):
    """A migrated store on each kind of database: SQLite, PostgreSQL, MariaDB (tests.fixtures.stores)."""
    s = Store(store_url)
    yield s
    s.dispose()


def test_migrations_create_every_table(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"batches", "deployments", "steps", "checkpoints", "phase_changes", "alembic_version"} <= tables
    Store(store.url).dispose()  # a second open is a no-op upgrade


def test_sqlite_store_is_in_wal_mode(tmp_path):
    Store(f"sqlite:///{tmp_path / 'store.sqlite'}").dispose()
    assert sqlite3.connect(tmp_path / "store.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _new(store):
    batch, ids = deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x", clusters=[SPEC])
    return ids["c1"]


def test_claim_bumps_epoch_and_transition_is_fenced(store):
    dep = _new(store)
    c1 = deps.claim(store, dep, "w1", [Phase.PENDING])
    assert c1.epoch == 1
    c2 = deps.claim(store, dep, "w2", [Phase.PENDING])  # a second worker takes it over
    assert c2.epoch == 2
    with pytest.raises(FencedOut):
        deps.transition(store, c1, Phase.PREPARING)  # the stale worker is stopped
    c2 = deps.transition(store, c2, Phase.PREPARING)
    assert deps.get_deployment(store, dep).phase == Phase.PREPARING
    assert deps.claim(store, dep, "w3", [Phase.PENDING]) is None  # not in the wanted phase
    hist = deps.phase_history(store, dep)
    assert [(h.from_phase, h.to_phase, h.epoch) for h in hist] == [("PENDING", "PREPARING", 2)]


@pytest.mark.parametrize("path", ["native", "read-then-update"])
def test_claim_on_either_path_returns_the_row_and_refuses_what_it_must(store, path):
    """SQLite and PostgreSQL claim with one UPDATE … RETURNING; MySQL-family stores (no UPDATE
    RETURNING) read, then update fenced. Same outcomes either way: "native" is the database's
    own path, "read-then-update" forces the fallback on every database."""
    from bgqueue.model.errors import BadInput

    assert store.engine.dialect.update_returning == (store.engine.dialect.name != "mysql")
    if path != "native":
        store.engine.dialect.update_returning = False
    returning = store.engine.dialect.update_returning
    dep = _new(store)
    c1 = deps.claim(store, dep, "w1", [Phase.PENDING, Phase.PREPARING])
    assert (c1.epoch, c1.phase) == (1, Phase.PENDING)
    row = deps.claimed(store, c1)
    assert (row.id, row.cluster, row.spec, row.epoch, row.owner) == (dep, "c1", SPEC, 1, "w1")
    assert (c1.row is not None) == returning  # the fallback reads the row when a step asks for it
    assert deps.claim(store, dep, "w2", [Phase.SYNCING]) is None  # another phase: nothing to do
    assert deps.get_deployment(store, dep).epoch == 1  # and the refusal changed nothing
    with pytest.raises(BadInput, match="no deployment nope"):
        deps.claim(store, "nope", "w1", [Phase.PENDING])
    c2 = deps.claim(store, dep, "w2", [Phase.PENDING])
    with pytest.raises(FencedOut):
        deps.transition(store, c1, Phase.PREPARING)
    deps.transition(store, c2, Phase.PREPARING)
    assert deps.batch_phases(store, deps.get_deployment(store, dep).batch_id) == [("c1", "PREPARING")]


def test_illegal_transition_raises_and_changes_nothing(store):
    dep = _new(store)
    c = deps.claim(store, dep, "w", [Phase.PENDING])
    with pytest.raises(IllegalTransition):
        deps.transition(store, c, Phase.SWITCHING)
    assert deps.get_deployment(store, dep).phase == Phase.PENDING


def test_terminal_transition_sets_finished_at_and_active_deployment(store):
    dep = _new(store)
    assert deps.active_deployment(store, "c1").id == dep
    c = deps.claim(store, dep, "w", [Phase.PENDING])
    deps.transition(store, c, Phase.NO_GO, reason="because")
    d = deps.get_deployment(store, dep)
    assert d.finished_at is not None and d.reason == "because"
    assert deps.active_deployment(store, "c1") is None


def test_journal_steps_are_fenced_and_record_failures(store):
    dep = _new(store)
    c = deps.claim(store, dep, "w", [Phase.PENDING])
    j = journal.Journal(store, c, "switchover")
    with j.step("fence") as f:
        f["sessions_ended"] = 2
    with pytest.raises(RuntimeError):
        with j.step("wait"):
            raise RuntimeError("boom")
    rows = journal.steps(store, dep)
    assert [(r.name, r.status) for r in rows] == [("fence", "done"), ("wait", "failed")]
    assert rows[0].detail == {"sessions_ended": 2} and "boom" in rows[1].detail["error"]
    deps.claim(store, dep, "other", [Phase.PENDING])
    with pytest.raises(FencedOut):
        with j.step("promote"):
            pass
    assert len(journal.steps(store, dep)) == 2


def test_checkpoints(store):
    dep = _new(store)
    c = deps.claim(store, dep, "w", [Phase.PENDING])
    cp = journal.save_checkpoint(store, c, "switchover", old_primary="h:1", new_primary="h:2", old_gtid="0-1-5",
                                 old_binlog_file="b.000001", old_binlog_pos=123)
    journal.update_checkpoint(store, c, cp, new_binlog_file="g.000002", new_binlog_pos=456)
    got = journal.latest_checkpoint(store, dep, "switchover")
    assert (got.old_gtid, got.old_binlog_pos, got.new_binlog_file, got.new_binlog_pos) == ("0-1-5", 123, "g.000002", 456)


def test_models_match_the_migrations(store):
    """What the migrations made is what the models declare (types included) on every backend."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bgqueue.adapters.store.models import Base

    with store.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
