"""The store on a real PostgreSQL server (started by tests.fixtures.stores, a fresh database per
test), and what PostgreSQL taught it. Where a lesson holds for every backend (claim races, JSON
without NaN, ids in any case, float and timestamp precision) the test runs on SQLite, PostgreSQL
and MariaDB (``store_url``); tests/store/test_deployments.py runs the store's basics on all three.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal, validation
from bgqueue.adapters.store.db import Store, _head
from bgqueue.adapters.store.models import Base, MetricPoint, Step
from bgqueue.model.errors import FencedOut
from bgqueue.model.phases import Phase
from bgqueue.model.results import CheckResult

REPO = Path(__file__).resolve().parents[2]
SPECS = [{"name": f"c{i}", "provider": "mysql", "blue": {"host": "h", "port": 1}, "green": {"host": "h", "port": 2}}
         for i in (1, 2, 3)]


@pytest.fixture
def pg_store(postgres_url):
    s = Store(postgres_url)
    yield s
    s.dispose()


@pytest.fixture
def any_store(store_url):
    s = Store(store_url)
    yield s
    s.dispose()


def _new(store, clusters=SPECS[:1]) -> tuple[str, dict[str, str]]:
    return deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="x", clusters=clusters)


def _utc(dt: datetime) -> bool:
    return dt.tzinfo is not None and dt.utcoffset() == timedelta(0)


# --- schema ---------------------------------------------------------------------------------


def test_migrations_apply_from_empty_with_native_types(postgres_url):
    raw = create_engine(postgres_url)
    assert inspect(raw).get_table_names() == []
    store = Store(postgres_url)
    try:
        assert set(inspect(store.engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
        with store.engine.connect() as c:
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
            types = dict(c.execute(text(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'")).all())
        assert types["deployments.created_at"] == "timestamp with time zone"
        assert types["deployments.spec"] == "json"
        assert types["check_results.retryable"] == "boolean"
        assert types["steps.id"] == "integer" and types["steps.duration_ms"] == "double precision"
        Store(postgres_url).dispose()  # a second open is a no-op upgrade
    finally:
        store.dispose()
        raw.dispose()


def _shape(engine) -> dict:
    insp = inspect(engine)
    return {t: ({c["name"]: c["nullable"] for c in insp.get_columns(t)},
                sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)),
                insp.get_pk_constraint(t)["constrained_columns"])
            for t in insp.get_table_names()}


def test_schema_is_the_same_on_sqlite_and_postgresql(pg_store, tmp_path):
    sqlite = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    try:
        assert _shape(pg_store.engine) == _shape(sqlite.engine)
    finally:
        sqlite.dispose()


def test_first_opens_in_parallel_processes_migrate_once(postgres_url):
    """Workers start together on an empty database: without the migration lock two of them create
    the same tables and all but one die (IntegrityError: a duplicate key in the catalog)."""
    # Each imports everything, says so, then waits for the word: they open the store together.
    code = ("import sys; from bgqueue.adapters.store.db import Store; print('ready', flush=True); sys.stdin.readline(); "
            "Store(sys.argv[1]).dispose()")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * 3
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with create_engine(postgres_url).connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [_head()]


# --- batches, deployments, claims, journal ------------------------------------------------------


def test_batch_and_deployments_round_trip(pg_store):
    batch_id, ids = _new(pg_store, SPECS)
    assert [d.cluster for d in deps.batch_deployments(pg_store, batch_id)] == ["c1", "c2", "c3"]
    dep = deps.get_deployment(pg_store, ids["c2"])
    assert (dep.phase, dep.epoch, dep.spec, dep.owner) == ("PENDING", 0, SPECS[1], None)
    assert _utc(dep.created_at) and abs(dep.created_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert deps.active_deployment(pg_store, "c2").id == ids["c2"]
    assert deps.latest_deployment(pg_store, "c3").id == ids["c3"]
    assert deps.identity(pg_store, ids["c1"]) == deps.Identity("c1", batch_id, "mysql")
    deps.finish_batch(pg_store, batch_id, {"completed": 3, "by_phase": {"COMPLETED": 3}, "ok": True})
    b = deps.get_batch(pg_store, batch_id)
    assert (b.status, b.summary) == ("DONE", {"completed": 3, "by_phase": {"COMPLETED": 3}, "ok": True})
    assert _utc(b.finished_at) and deps.recent_batches(pg_store)[0].id == batch_id


def test_claim_transition_journal_and_checkpoint_on_postgresql(pg_store):
    _, ids = _new(pg_store)
    dep = ids["c1"]
    c = deps.claim(pg_store, dep, "w1", [Phase.PENDING])
    assert c.row is not None and c.row.spec == SPECS[0] and _utc(c.row.updated_at)  # UPDATE … RETURNING
    c = deps.transition(pg_store, c, Phase.PREPARING, reason="go")
    deadline = datetime.now(UTC) + timedelta(minutes=5)
    deps.update_fenced(pg_store, c, phase_deadline=deadline, facts={"flavour": "mariadb", "version": [10, 11]})
    got = deps.get_deployment(pg_store, dep)
    assert (got.phase_deadline, got.facts) == (deadline, {"flavour": "mariadb", "version": [10, 11]})

    j = journal.Journal(pg_store, c, "prepare")
    with j.step("grants", users=["a", "b"]) as f:
        f["created"] = 2
    j.note("observed", "skipped", why="nothing to do")
    journal.note_unfenced(pg_store, dep, "prepare", "refused", "failed", {"by": "cli"})
    rows = journal.steps(pg_store, dep, "prepare")
    assert [(r.name, r.status, r.epoch) for r in rows] == [("grants", "done", 1), ("observed", "skipped", 1),
                                                           ("refused", "failed", 1)]
    assert rows[0].detail == {"users": ["a", "b"], "created": 2} and rows[0].duration_ms >= 0
    assert all(_utc(r.started_at) and _utc(r.ended_at) for r in rows)

    cp = journal.save_checkpoint(pg_store, c, "switchover", old_primary="h:1", new_primary="h:2",
                                 old_gtid="0-1-42", old_binlog_file="binlog.000003", old_binlog_pos=2_000_000_000)
    journal.update_checkpoint(pg_store, c, cp, new_gtid="0-2-1", promoted_at=datetime.now(UTC))
    got = journal.latest_checkpoint(pg_store, dep, "switchover")
    assert (got.id, got.old_binlog_pos, got.new_gtid) == (cp, 2_000_000_000, "0-2-1") and _utc(got.promoted_at)

    stale = c
    deps.claim(pg_store, dep, "w2", [Phase.PREPARING])  # epoch 2: the first worker is fenced out
    for write in (lambda: deps.transition(pg_store, stale, Phase.SYNCING),
                  lambda: deps.update_fenced(pg_store, stale, reason="late"),
                  lambda: j.note("late"),
                  lambda: journal.save_checkpoint(pg_store, stale, "switchover", old_primary="x", new_primary="y")):
        with pytest.raises(FencedOut):
            write()
    assert len(journal.steps(pg_store, dep)) == 3 and len(journal.checkpoints(pg_store, dep)) == 1
    assert deps.get_deployment(pg_store, dep).phase == Phase.PREPARING


def test_validation_rounds_store_booleans_and_json(pg_store):
    _, ids = _new(pg_store)
    dep = ids["c1"]
    results = [CheckResult("lag", "fail", "behind", value=3.5, threshold=1.0, retryable=True,
                           evidence={"samples": [3.1, 3.5]}, duration_ms=1.5),
               CheckResult("gtid", "pass", evidence={}, duration_ms=0.2)]
    assert validation.next_round(pg_store, dep) == 1
    validation.record_round(pg_store, dep, 1, results, "WAIT", ["lag: behind"])
    assert validation.next_round(pg_store, dep) == 2
    rows = validation.check_results(pg_store, dep)
    assert [(r.name, r.retryable, r.value, r.evidence) for r in rows] == [
        ("lag", True, "3.5", {"samples": [3.1, 3.5]}), ("gtid", False, None, None)]
    assert [(d.verdict, d.reasons) for d in validation.decisions(pg_store, dep)] == [("WAIT", ["lag: behind"])]
    validation.add_signoff(pg_store, "c1", "k1", "dba", "alice", note="ok")
    assert [(s.team, s.signed_by) for s in validation.signoffs(pg_store, "c1", "k1")] == [("dba", "alice")]


@pytest.mark.parametrize("path", ["native", "read-then-update"])
def test_racing_claims_one_transition_wins_and_no_epoch_is_lost(any_store, path):
    """Workers claim the same PENDING deployment at once and move it on: every granted claim has
    its own epoch (no lost update), exactly one transition wins, the others are fenced out."""
    if path != "native":
        any_store.engine.dialect.update_returning = False
    _, ids = _new(any_store)
    dep, n = ids["c1"], 6
    start = threading.Barrier(n)
    claims, outcomes, errors = [], [], []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            start.wait()
            c = deps.claim(any_store, dep, f"w{i}", [Phase.PENDING])
            with lock:
                claims.append(c)
            if c is None:
                return
            deps.transition(any_store, c, Phase.PREPARING)
            with lock:
                outcomes.append(("won", c.epoch))
        except FencedOut:
            with lock:
                outcomes.append(("fenced", c.epoch))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    granted = [c.epoch for c in claims if c is not None]
    assert len(granted) == len(set(granted)) >= 1  # distinct epochs
    assert [o for o in outcomes if o[0] == "won"] and len([o for o in outcomes if o[0] == "won"]) == 1
    row = deps.get_deployment(any_store, dep)
    assert (row.phase, row.epoch) == (Phase.PREPARING, max(granted))
    won = next(e for kind, e in outcomes if kind == "won")
    assert [(h.to_phase, h.epoch) for h in deps.phase_history(any_store, dep)] == [("PREPARING", won)]
    if path == "native" and any_store.engine.dialect.update_returning:
        # One conditional UPDATE … RETURNING: each claim that ran before the winner moved it on got
        # the row; none is refused for racing another claim (only for finding it PREPARING).
        assert row.epoch == len(granted)


# --- what PostgreSQL taught the store ----------------------------------------------------------


def test_store_survives_a_postgresql_restart_between_operations(postgres_server_factory):
    server = postgres_server_factory()
    store = Store(server.url)
    try:
        _, ids = _new(store)
        c = deps.claim(store, ids["c1"], "w1", [Phase.PENDING])
        pid = server.pid
        t0 = time.perf_counter()
        server.restart()
        restart_s = time.perf_counter() - t0
        assert server.pid != pid and restart_s < 10
        # The pooled connection died with the old server; pool_pre_ping replaces it unseen.
        c = deps.transition(store, c, Phase.PREPARING)
        journal.Journal(store, c, "prepare").note("after-restart")
        assert deps.get_deployment(store, ids["c1"]).phase == Phase.PREPARING
        assert [s.name for s in journal.steps(store, ids["c1"])] == ["after-restart"]
    finally:
        store.dispose()


def test_sessions_are_utc_whatever_the_server_timezone(postgres_server, postgres_url):
    """A naive datetime means UTC (as SQLite reads it back); aware values come back at +00:00."""
    db = postgres_url.rsplit("/", 1)[1]
    with postgres_server.admin() as c:
        c.execute(f'ALTER DATABASE "{db}" SET timezone TO \'America/New_York\'')
    store = Store(postgres_url)
    try:
        with store.engine.connect() as c:
            assert c.execute(text("SHOW timezone")).scalar() == "UTC"
        _, ids = _new(store)
        c = deps.claim(store, ids["c1"], "w", [Phase.PENDING])
        deps.update_fenced(store, c, phase_deadline=datetime(2030, 1, 1, 12, 0))  # naive
        got = deps.get_deployment(store, ids["c1"])
        assert got.phase_deadline == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        assert got.phase_deadline.utcoffset() == timedelta(0) and _utc(got.created_at)
    finally:
        store.dispose()


def test_json_with_nan_or_infinity_is_stored(any_store):
    """PostgreSQL's json and MariaDB's JSON_VALID refuse NaN / Infinity: a journal write carrying
    one must not fail the step. There they become null; SQLite keeps them."""
    _, ids = _new(any_store)
    c = deps.claim(any_store, ids["c1"], "w", [Phase.PENDING])
    journal.Journal(any_store, c, "monitor").note("lag", p99=float("nan"), window=[1.0, float("inf")], ok=2.5)
    detail = journal.steps(any_store, ids["c1"])[0].detail
    assert detail["ok"] == 2.5 and detail["window"][0] == 1.0
    if any_store.engine.dialect.name == "sqlite":
        assert detail["p99"] != detail["p99"] and detail["window"][1] == float("inf")
    else:
        assert detail["p99"] is None and detail["window"][1] is None


def test_find_batch_takes_an_id_prefix_in_any_case(any_store):
    batch_id, _ = _new(any_store)
    _new(any_store)
    assert deps.find_batch(any_store, batch_id[:8]).id == batch_id
    assert deps.find_batch(any_store, batch_id[:8].upper()).id == batch_id  # PostgreSQL's LIKE minds case
    assert deps.find_batch(any_store, "") is None  # two batches: not unique


def test_floats_and_timestamps_keep_their_precision(any_store):
    """Unix-second floats and microsecond timestamps come back as written on every backend."""
    _, ids = _new(any_store)
    ts = 1_764_620_000.123456
    started = datetime(2026, 12, 1, 21, 0, 0, 123456, tzinfo=UTC)
    with any_store.session() as s:
        s.add(MetricPoint(deployment_id=ids["c1"], metric="lag_s", ts=ts, value=0.000123))
        s.add(Step(deployment_id=ids["c1"], procedure="p", name="n", status="done", epoch=0, started_at=started))
    with any_store.session() as s:
        p = s.execute(select(MetricPoint)).scalar_one()
        step = s.execute(select(Step)).scalar_one()
        assert (p.ts, p.value) == (ts, 0.000123)
        assert deps.as_aware(step.started_at) == started


def test_a_forked_child_opens_its_own_connections(pg_store):
    """A prefork worker child must not reuse the parent's pooled connection (one socket, two talkers)."""
    import os

    def backend_pid() -> int:
        with pg_store.begin() as c:
            return c.execute(text("SELECT pg_backend_pid()")).scalar()

    parent = backend_pid()
    assert backend_pid() == parent  # pooled: the same connection again
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.write(w, str(backend_pid()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    got = os.read(r, 64).decode()
    os.close(r)
    assert os.waitpid(child, 0)[1] == 0
    assert got and int(got) != parent
    assert backend_pid() == parent  # and the parent's connection is untouched
