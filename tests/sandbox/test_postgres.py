"""The sandbox's PostgreSQL server: template made once, a child we stop fast, data kept over
restarts and crashes, ports retried, and a missing server named with its install command."""
from __future__ import annotations

import os
import socket
import time

import psycopg
import pytest

from bgqueue.sandbox import MissingBinary, PostgresServer, ServerStartError
from bgqueue.sandbox import postgres as pg
from bgqueue.sandbox.binaries import pid_running


def _backends(server: PostgresServer) -> list[int]:
    """Pids of processes whose parent is the postmaster (checkpointer, backends, …)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == server.pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_start_serves_the_role_and_database_and_stop_leaves_nothing(tmp_path, postgres_cache_dir):
    runs = pg.initdb_runs
    server = PostgresServer(tmp_path / "pg", cache_dir=postgres_cache_dir)
    t0 = time.perf_counter()
    server.start()
    ready_s = time.perf_counter() - t0
    try:
        assert pg.initdb_runs == runs, "the cached template was not reused"
        assert server.url.startswith("postgresql+psycopg://bgqueue:") and server.url.endswith(f":{server.port}/bgqueue")
        with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                             dbname=server.database) as c:
            assert c.execute("SELECT current_user, current_database(), current_setting('fsync')").fetchone() == (
                "bgqueue", "bgqueue", "off")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password="wrong",
                            dbname=server.database).close()
        if os.geteuid() == 0:  # postgres refuses root: it runs as an unprivileged user
            assert os.stat(f"/proc/{server.pid}").st_uid != 0
        children = _backends(server)
        assert children and ready_s < 30
    finally:
        t0 = time.perf_counter()
        server.stop()
    assert time.perf_counter() - t0 < 5  # fast shutdown, not smart
    assert not server.running and not any(pid_running(p) for p in children)
    rundir = server.rundir
    server.remove()
    assert not rundir.exists()


def test_restart_and_crash_keep_the_data_and_the_port(tmp_path, postgres_cache_dir):
    server = PostgresServer(tmp_path / "pg", cache_dir=postgres_cache_dir).start()
    try:
        url = server.url.replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE t (v int)")
            c.execute("INSERT INTO t VALUES (1)")
        port, pid = server.port, server.pid
        server.restart()
        assert (server.port, server.pid != pid) == (port, True)
        with psycopg.connect(url, autocommit=True) as c:
            # The server runs synchronous_commit=off: a crash may lose the last commits, unless a
            # session asks for its commits to be written through.
            c.execute("SET synchronous_commit = on")
            c.execute("INSERT INTO t VALUES (2)")
        server.kill()  # immediate shutdown: crash recovery on the next start
        assert not server.running
        server.start()
        with psycopg.connect(url) as c:
            assert c.execute("SELECT array_agg(v ORDER BY v) FROM t").fetchone()[0] == [1, 2]
        # A role and database created once, not again on restart; more databases on demand.
        other = server.create_database("other")
        assert other.endswith(f":{port}/other")
        server.drop_database("other")
    finally:
        server.remove()


def test_a_taken_port_is_retried_on_a_new_one(tmp_path, postgres_cache_dir, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = pg.free_port
        monkeypatch.setattr(pg, "free_port", lambda: next(ports, None) or real())
        server = PostgresServer(tmp_path / "pg", cache_dir=postgres_cache_dir).start()
        try:
            assert server.port != busy
            assert "Address already in use" in server.logfile.read_text()
        finally:
            server.remove()
        fixed = PostgresServer(tmp_path / "fixed", port=busy, cache_dir=postgres_cache_dir)
        with pytest.raises(ServerStartError, match=f"port {busy}"):
            fixed.start(timeout=10)
        fixed.remove()


def test_template_is_made_once_per_cache(tmp_path):
    runs = pg.initdb_runs
    first = pg.template_datadir(tmp_path / "cache")
    assert pg.initdb_runs == runs + 1 and (first / "PG_VERSION").is_file()
    assert pg.template_datadir(tmp_path / "cache") == first and pg.initdb_runs == runs + 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.parent.name]  # no build leftovers
    assert not (first / "postmaster.pid").exists()  # never run: instances are copies


def test_missing_binaries_name_the_install_command(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("BGQUEUE_PG_BINDIR", raising=False)
    monkeypatch.setattr(pg, "DEBIAN_BINDIRS", str(tmp_path / "nothing" / "*" / "bin"))
    with pytest.raises(MissingBinary, match=r"install them with: sudo apt-get install -y postgresql$"):
        PostgresServer(tmp_path / "pg", cache_dir=tmp_path / "cache").start()
