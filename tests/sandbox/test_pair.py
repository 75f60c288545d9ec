"""A ClusterPair really replicates, and read_only really stops the application user."""
from __future__ import annotations

import time

import pymysql
import pytest

from bgqueue.sandbox import APP_DATABASE, APP_USER, REPL_USER, ClusterPair, SandboxPasswords


def app_conn(server, pw: SandboxPasswords) -> pymysql.connections.Connection:
    # TCP as the unprivileged user, like an application would connect.
    return pymysql.connect(host=server.host, port=server.port, user=APP_USER, password=pw.app,
                           database=APP_DATABASE, autocommit=True, ssl_disabled=True)


def test_pair_replicates_app_writes_and_read_only_stops_app(cluster_pair: ClusterPair, sandbox_passwords):
    pair = cluster_pair
    with pair.blue.root() as root:
        root.cursor().execute(f"CREATE TABLE {APP_DATABASE}.t (id INT PRIMARY KEY, v VARCHAR(20))")
    with app_conn(pair.blue, sandbox_passwords) as blue:
        blue.cursor().execute("INSERT INTO t VALUES (1, 'from-blue')")
    pos = pair.wait_green_synced()

    with app_conn(pair.green, sandbox_passwords) as green:
        cur = green.cursor()
        cur.execute("SELECT v FROM t WHERE id=1")
        assert cur.fetchone() == ("from-blue",)
        with pytest.raises(pymysql.err.OperationalError) as e:
            cur.execute("INSERT INTO t VALUES (2, 'on-green')")
        assert e.value.args[0] == 1290

    with pair.green.root() as g:
        cur = g.cursor()
        cur.execute("SELECT @@GLOBAL.gtid_slave_pos")
        assert cur.fetchone()[0] == pos

    # Fencing blue the way a switchover does must stop the application user there too.
    with pair.blue.root() as root:
        root.cursor().execute("SET GLOBAL read_only=1")
    with app_conn(pair.blue, sandbox_passwords) as blue:
        with pytest.raises(pymysql.err.OperationalError) as e:
            blue.cursor().execute("INSERT INTO t VALUES (3, 'fenced')")
        assert e.value.args[0] == 1290


def test_green_has_repl_user_for_reverse_replication(cluster_pair: ClusterPair, sandbox_passwords):
    for server in (cluster_pair.green, cluster_pair.blue):
        with server.root() as r:
            cur = r.cursor()
            cur.execute("SELECT host FROM mysql.user WHERE user=%s ORDER BY host", (REPL_USER,))
            assert [h for (h,) in cur.fetchall()] == ["127.0.0.1", "localhost"]
        # And it can log in over TCP and read replication state (what reverse replication needs).
        with pymysql.connect(host=server.host, port=server.port, user=REPL_USER,
                             password=sandbox_passwords.repl, ssl_disabled=True) as c:
            cur = c.cursor()
            cur.execute("SHOW BINARY LOGS")
            assert cur.fetchall()
    # It was created outside the binlog, so green has no GTID of its own (no errant transaction).
    with cluster_pair.green.root() as g:
        cur = g.cursor()
        cur.execute("SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos")
        binlog_pos, slave_pos = cur.fetchone()
        assert binlog_pos == slave_pos


def test_pairs_from_factory_are_independent_and_fast(cluster_pair_factory):
    t0 = time.monotonic()
    a = cluster_pair_factory("a")
    elapsed = time.monotonic() - t0
    b = cluster_pair_factory("b")
    ports = {a.blue.port, a.green.port, b.blue.port, b.green.port}
    assert len(ports) == 4
    ids = {a.blue.server_id, a.green.server_id, b.blue.server_id, b.green.server_id}
    assert len(ids) == 4
    assert elapsed < 3, f"a pair took {elapsed:.2f}s to start"
    spec = a.spec_dict()
    assert spec["blue"] == {"host": "127.0.0.1", "port": a.blue.port}
    assert spec["green"] == {"host": "127.0.0.1", "port": a.green.port}
    assert spec["app_users"] == ["app"]


def test_kill_and_restart_keeps_data(cluster_pair: ClusterPair):
    with cluster_pair.blue.root() as r:
        r.cursor().execute(f"CREATE TABLE {APP_DATABASE}.k (id INT PRIMARY KEY)")
        r.cursor().execute(f"INSERT INTO {APP_DATABASE}.k VALUES (7)")
    pid = cluster_pair.blue.pid
    cluster_pair.blue.kill()
    assert not cluster_pair.blue.running
    cluster_pair.blue.start()
    assert cluster_pair.blue.pid != pid
    with cluster_pair.blue.root() as r:
        cur = r.cursor()
        cur.execute(f"SELECT id FROM {APP_DATABASE}.k")
        assert cur.fetchall() == ((7,),)
