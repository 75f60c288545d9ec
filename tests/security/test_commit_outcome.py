"""The client never forgets that a commit's outcome is unknown (issue 11, item 5).

A plain error from ``RoutedClient.transaction`` means "rolled back": an application retries it.
After a lost COMMIT that would apply the write twice, so every error from then on must be
CommitOutcomeUnknown, with the error as its cause. Real servers only: the COMMIT is lost because
another session KILLs the client's connection just before it is sent, and the verify fails
because the account was changed, the server is full, or stopped.
"""
from __future__ import annotations

import time

import pymysql
import pytest

from bgqueue.client import CommitOutcomeUnknown, RoutedClient
from bgqueue.sandbox import APP_DATABASE, APP_USER
from bgqueue.sandbox.pair import USER_HOSTS, native_hash

TABLE = f"{APP_DATABASE}.items"


@pytest.fixture
def pair(cluster_pair):
    with cluster_pair.blue.root() as r:
        r.cursor().execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, v VARCHAR(32))")
    cluster_pair.wait_green_synced()
    return cluster_pair


@pytest.fixture
def client(pair, redis_url, sandbox_passwords, runtime, unique_name):
    name = unique_name("sec-commit")
    runtime.routing.init(name, pair.blue.host, pair.blue.port)
    c = RoutedClient(name, redis_url, APP_USER, sandbox_passwords.app, APP_DATABASE,
                     endpoints=[(pair.blue.host, pair.blue.port), (pair.green.host, pair.green.port)],
                     max_attempts=6, max_backoff_s=0.02, deadline_s=5.0)
    yield c
    c.close()


def ids(server) -> list[int]:
    with server.root() as r:
        cur = r.cursor()
        cur.execute(f"SELECT id FROM {TABLE} ORDER BY id")
        return [i for (i,) in cur.fetchall()]


def exists(row_id: int):
    def verify(cur) -> bool:
        cur.execute(f"SELECT 1 FROM {TABLE} WHERE id=%s", (row_id,))
        return cur.fetchone() is not None
    return verify


def insert_then_lose_the_commit(pair, row_id: int, before_kill=lambda: None, after_kill=lambda cid: None,
                                kill=None):
    """``fn`` for the client: INSERT, then (first attempt only) ``before_kill()``, KILL this very
    session from another one (or ``kill(its id)``), ``after_kill(its id)``; the COMMIT that follows goes
    to a dead connection."""
    state = {"attempts": 0}

    def fn(cur):
        state["attempts"] += 1
        cur.execute(f"INSERT INTO {TABLE} (id, v) VALUES (%s, 'x')", (row_id,))
        if state["attempts"] == 1:
            cur.execute("SELECT CONNECTION_ID()")
            (cid,) = cur.fetchone()
            before_kill()
            if kill is not None:
                kill(cid)
            else:
                with pair.blue.root() as r:
                    r.cursor().execute(f"KILL {int(cid)}")
            after_kill(cid)
        return row_id

    return fn, state


def alter_app_user(pair, clause: str) -> None:
    with pair.blue.root() as r, r.cursor() as cur:
        for host in USER_HOSTS:
            cur.execute(f"ALTER USER '{APP_USER}'@'{host}' {clause}")


@pytest.mark.parametrize("change, code", [
    (f"IDENTIFIED BY PASSWORD '{native_hash('not-the-password')}'", 1045),  # access denied
    ("ACCOUNT LOCK", 4151),  # access denied, this account is locked
])
def test_access_denied_while_verifying_is_commit_outcome_unknown(pair, client, change, code):
    # The account changes while the client's session is open (an open session keeps working).
    fn, state = insert_then_lose_the_commit(pair, 1, before_kill=lambda: alter_app_user(pair, change))
    with pytest.raises(CommitOutcomeUnknown) as e:
        client.transaction(fn, verify=exists(1))
    assert isinstance(e.value.last_error, pymysql.MySQLError) and e.value.last_error.args[0] == code, e.value
    assert e.value.__cause__ is e.value.last_error
    assert state["attempts"] == 1 and ids(pair.blue) == []  # it was never applied twice (nor once)


def test_too_many_connections_while_verifying_is_commit_outcome_unknown(pair, client, sandbox_passwords):
    held: list = []
    # One admin session opened before the server is made full, used for every admin statement
    # of this test: a new root session could be refused too (its one extra slot may still be
    # held by a session whose thread has not ended yet).
    admin_cm = pair.blue.root()
    admin = admin_cm.__enter__()
    cur = admin.cursor()

    def fill() -> None:
        """Take every connection slot an unprivileged user may have left."""
        for _ in range(40):
            try:
                held.append(pymysql.connect(host=pair.blue.host, port=pair.blue.port, user=APP_USER,
                                            password=sandbox_passwords.app, ssl_disabled=True))
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == 1040, exc
                return
        raise AssertionError("the server never refused a connection")

    def full() -> None:
        cur.execute("SET GLOBAL max_connections=10")  # the smallest it takes
        fill()

    def kill_it(cid: int) -> None:
        cur.execute(f"KILL {int(cid)}")

    def refill(cid: int) -> None:
        # Slots free once a session's thread has ended (the killed one): take them all before
        # the client reconnects to verify.
        for _ in range(100):
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID=%s", (cid,))
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.02)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.3:
            before = len(held)
            fill()
            if len(held) != before:
                quiet_since = time.monotonic()
            time.sleep(0.02)

    fn, state = insert_then_lose_the_commit(pair, 2, before_kill=full, after_kill=refill,
                                            kill=kill_it)
    try:
        with pytest.raises(CommitOutcomeUnknown) as e:
            client.transaction(fn, verify=exists(2))
        assert e.value.last_error.args[0] == 1040, e.value  # retried while full, then the budget ended
        assert client.verifications == 0 and state["attempts"] == 1
    finally:
        for c in held:
            c.close()
        cur.execute("SET GLOBAL max_connections=151")
        admin_cm.__exit__(None, None, None)
    assert ids(pair.blue) == []


def test_connection_refused_while_verifying_is_commit_outcome_unknown(pair, client):
    fn, state = insert_then_lose_the_commit(pair, 3, kill=lambda _cid: pair.blue.stop())  # the server goes away
    with pytest.raises(CommitOutcomeUnknown) as e:
        client.transaction(fn, verify=exists(3))
    assert e.value.last_error.args[0] == 2003, e.value


def test_duplicate_key_on_the_rerun_after_verify_said_not_committed_is_commit_outcome_unknown(pair, client):
    fn, state = insert_then_lose_the_commit(pair, 4)
    real_verify = exists(4)

    def verify(cur) -> bool:
        seen = real_verify(cur)
        # The lost COMMIT lands just after verify looked (it was still in flight on the old
        # session): the row appears, exactly as that commit would have written it.
        with pair.blue.root() as r:
            r.cursor().execute(f"INSERT INTO {TABLE} (id, v) VALUES (4, 'x')")
        return seen

    with pytest.raises(CommitOutcomeUnknown) as e:
        client.transaction(fn, verify=verify)
    assert isinstance(e.value.last_error, pymysql.err.IntegrityError) and e.value.last_error.args[0] == 1062
    assert "most likely landed" in str(e.value)
    assert state["attempts"] == 2 and ids(pair.blue) == [4]  # written once


def test_a_verify_that_raises_is_commit_outcome_unknown(pair, client):
    fn, _ = insert_then_lose_the_commit(pair, 5)

    def verify(cur) -> bool:
        raise KeyError("application bug in verify")

    with pytest.raises(CommitOutcomeUnknown) as e:
        client.transaction(fn, verify=verify)
    assert isinstance(e.value.last_error, KeyError)


def test_a_rerun_that_never_gets_through_is_commit_outcome_unknown_not_write_unavailable(pair, client):
    def fence(_cid: int) -> None:
        with pair.blue.root() as r:
            r.cursor().execute("SET GLOBAL read_only=1")

    # Lost COMMIT, verify says "not committed", and every re-run is refused (blue fenced, no flip).
    fn, state = insert_then_lose_the_commit(pair, 6, after_kill=fence)
    with pytest.raises(CommitOutcomeUnknown) as e:
        client.transaction(fn, verify=exists(6))
    assert e.value.last_error.args[0] == 1290 and client.verifications == 1 and state["attempts"] >= 2


def test_the_client_is_usable_after_commit_outcome_unknown(pair, client):
    fn, _ = insert_then_lose_the_commit(pair, 7)
    with pytest.raises(CommitOutcomeUnknown):
        client.transaction(fn)  # no verify: unknown at once
    client.transaction(lambda cur: cur.execute(f"INSERT INTO {TABLE} (id, v) VALUES (8, 'y')"))
    assert ids(pair.blue) == [8]
