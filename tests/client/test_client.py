"""RoutedClient against a real blue/green pair and a real redis-server.

The writer is the unprivileged application user, so read_only really fences it.
"""
from __future__ import annotations

import threading
import time

import pymysql
import pytest

from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.client import CommitOutcomeUnknown, WriteUnavailable
from bgqueue.sandbox import APP_DATABASE

TABLE = f"{APP_DATABASE}.items"


def hand_switchover(pair, registry: RoutingRegistry, cluster: str, expect_version: int = 1) -> float:
    """Promote green by hand (blue must be fenced already) and flip the route; return the flip time."""
    pair.wait_green_synced()
    with pair.green.root() as g:
        cur = g.cursor()
        cur.execute("STOP SLAVE")
        cur.execute("RESET SLAVE ALL")
        cur.execute("SET GLOBAL read_only=0")
    flip_at = time.monotonic()
    registry.flip(cluster, pair.green.host, pair.green.port, expect_version=expect_version, reason="hand switchover")
    return flip_at


def fence(server) -> None:
    with server.root() as r:
        r.cursor().execute("SET GLOBAL read_only=1")


def rows(server, where: str = "1") -> list[tuple]:
    with server.root() as r:
        cur = r.cursor()
        cur.execute(f"SELECT id, v FROM {TABLE} WHERE {where} ORDER BY id")
        return list(cur.fetchall())


def insert(row_id: int, v: str = "x"):
    def fn(cur):
        cur.execute(f"INSERT INTO {TABLE} (id, v) VALUES (%s, %s)", (row_id, v))
        return row_id
    return fn


def exists(row_id: int):
    def verify(cur) -> bool:
        cur.execute(f"SELECT 1 FROM {TABLE} WHERE id=%s", (row_id,))
        return cur.fetchone() is not None
    return verify


@pytest.fixture
def pair(cluster_pair):
    with cluster_pair.blue.root() as r:
        r.cursor().execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, v VARCHAR(32))")
    cluster_pair.wait_green_synced()
    return cluster_pair


def test_transaction_commits_on_blue_and_returns_fn_result(pair, make_client, sandbox_passwords):
    client = make_client()
    assert client.route.endpoint == (pair.blue.host, pair.blue.port)
    assert client.transaction(insert(1, "a")) == 1
    assert rows(pair.blue) == [(1, "a")]
    assert client.counters()["retries"] == 0
    assert sandbox_passwords.app not in repr(client)


def test_fenced_writer_retries_then_commits_on_green_right_after_the_flip(pair, registry, cluster, make_client):
    # A large backoff cap: if the flip did not cut the wait short, pickup would take ~1 s
    # on average (uniform over 0..2 s once 11 retries have doubled the cap up to it).
    client = make_client(max_backoff_s=2.0, max_attempts=1000)
    client.transaction(insert(1))
    fence(pair.blue)

    done: dict = {}

    def write() -> None:
        try:
            done["result"] = client.transaction(insert(2, "during"), verify=exists(2))
        except BaseException as exc:  # surfaced by the assertions below
            done["error"] = exc
        done["at"] = time.monotonic()

    t = threading.Thread(target=write)
    t.start()
    # Blocked and retrying on read_only, not failing.
    wait_until = time.monotonic() + 10
    while client.retries < 11 and time.monotonic() < wait_until:
        time.sleep(0.01)
    assert client.retries >= 11 and t.is_alive() and not done

    flip_at = hand_switchover(pair, registry, cluster)
    t.join(10)
    assert done.get("result") == 2, done
    pickup_ms = (done["at"] - flip_at) * 1000
    # Typically 2-7 ms here: the route event woke the wait. The bound leaves room for a
    # loaded machine and is still far below the 2 s backoff the wait would otherwise run to.
    assert pickup_ms < 150, pickup_ms
    assert rows(pair.green, "id=2") == [(2, "during")]
    assert rows(pair.blue, "id=2") == []
    assert client.route.endpoint == (pair.green.host, pair.green.port)
    assert client.route_changes == 1


def test_fenced_writer_without_switchover_gives_up_with_write_unavailable(pair, make_client):
    client = make_client(max_attempts=5, max_backoff_s=0.01)
    fence(pair.blue)
    with pytest.raises(WriteUnavailable) as e:
        client.transaction(insert(3))
    assert e.value.last_error.args[0] == 1290
    assert client.attempts == 5
    assert rows(pair.blue) == []


def test_deadline_bounds_the_retries(pair, make_client):
    client = make_client(max_attempts=10_000, max_backoff_s=0.02, deadline_s=0.3)
    fence(pair.blue)
    t0 = time.monotonic()
    with pytest.raises(WriteUnavailable):
        client.transaction(insert(3))
    assert 0.3 <= time.monotonic() - t0 < 1.0


def test_connection_killed_during_a_transaction_is_retried(pair, make_client):
    client = make_client()
    killed: list[int] = []

    def fn(cur):
        cur.execute(f"INSERT INTO {TABLE} (id, v) VALUES (4, 'k')")
        if not killed:
            cur.execute("SELECT CONNECTION_ID()")
            (cid,) = cur.fetchone()
            with pair.blue.root() as r:
                r.cursor().execute(f"KILL {cid}")
            killed.append(cid)
        cur.execute(f"UPDATE {TABLE} SET v='kk' WHERE id=4")  # fails on the killed session
        return "ok"

    assert client.transaction(fn) == "ok"
    assert len(killed) == 1
    assert client.retries == 1 and client.reconnects == 2
    assert rows(pair.blue) == [(4, "kk")]


def test_connection_killed_between_transactions_is_retried(pair, make_client):
    client = make_client()

    def insert_5(cur) -> int:
        insert(5)(cur)
        cur.execute("SELECT CONNECTION_ID()")  # the session the next transaction starts on
        return cur.fetchone()[0]

    cid = client.transaction(insert_5)
    with pair.blue.root() as r:
        r.cursor().execute(f"KILL {cid}")
    client.transaction(insert(6))
    assert client.retries == 1
    assert [i for i, _ in rows(pair.blue)] == [5, 6]


def test_duplicate_key_propagates_without_retry(pair, make_client):
    client = make_client()
    client.transaction(insert(7))
    before = client.attempts
    with pytest.raises(pymysql.err.IntegrityError) as e:
        client.transaction(insert(7))
    assert e.value.args[0] == 1062
    assert client.attempts == before + 1 and client.retries == 0
    client.transaction(insert(8))  # the session was rolled back and is still usable
    assert [i for i, _ in rows(pair.blue)] == [7, 8]


def test_other_exceptions_roll_back_and_propagate(pair, make_client):
    client = make_client()

    def fn(cur):
        cur.execute(f"INSERT INTO {TABLE} (id, v) VALUES (9, 'x')")
        raise ValueError("application changed its mind")

    with pytest.raises(ValueError):
        client.transaction(fn)
    assert client.retries == 0
    assert rows(pair.blue) == []


@pytest.fixture
def commit_dies_once(monkeypatch):
    """Make the next COMMIT lose its connection, optionally after the server committed."""
    real_commit = pymysql.connections.Connection.commit
    state = {"armed": False, "commit_first": False, "fired": 0}

    def commit(self):
        if state["armed"]:
            state["armed"] = False
            state["fired"] += 1
            if state["commit_first"]:
                real_commit(self)  # it committed; only the reply was lost
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
        return real_commit(self)

    monkeypatch.setattr(pymysql.connections.Connection, "commit", commit)

    def arm(commit_first: bool) -> dict:
        state.update(armed=True, commit_first=commit_first)
        return state

    return arm


@pytest.mark.parametrize("commit_first", [False, True])
def test_connection_lost_during_commit_without_verify_is_unknown(pair, make_client, commit_dies_once, commit_first):
    client = make_client()
    state = commit_dies_once(commit_first)
    with pytest.raises(CommitOutcomeUnknown) as e:
        client.transaction(insert(10))
    assert state["fired"] == 1 and client.attempts == 1  # never retried blindly
    assert e.value.last_error.args[0] == 2013
    assert len(rows(pair.blue)) == (1 if commit_first else 0)


def test_verify_settles_a_commit_that_happened(pair, make_client, commit_dies_once):
    client = make_client()
    state = commit_dies_once(True)
    assert client.transaction(insert(11), verify=exists(11)) == 11
    assert state["fired"] == 1
    assert client.verifications == 1 and client.retries == 1
    assert rows(pair.blue) == [(11, "x")]  # once: not inserted again


def test_verify_retries_a_commit_that_did_not_happen(pair, make_client, commit_dies_once):
    client = make_client()
    commit_dies_once(False)
    assert client.transaction(insert(12), verify=exists(12)) == 12
    assert client.verifications == 1 and client.retries == 2  # verify, then the transaction again
    assert rows(pair.blue) == [(12, "x")]


def test_route_flip_without_errors_moves_the_next_transaction(pair, registry, cluster, make_client):
    client = make_client()
    client.transaction(insert(13))
    fence(pair.blue)
    hand_switchover(pair, registry, cluster)
    wait_until = time.monotonic() + 2
    while client.route.version != 2 and time.monotonic() < wait_until:
        time.sleep(0.001)
    assert client.route.version == 2  # pushed by pub/sub, before any failure
    client.transaction(insert(14))
    assert client.retries == 0
    assert [i for i, _ in rows(pair.green)] == [13, 14]
