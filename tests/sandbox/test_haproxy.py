"""A real HAProxy in front of real mariadbd servers, driven through its runtime API (no mocks).

Which server answers is read with SELECT @@server_id through the frontend, as an application
would connect. Measurements are printed (run with -s to see them).
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import stat
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from bgqueue.adapters.routing.haproxy import (
    HAProxyError,
    HAProxyRuntime,
    HAProxyUnreachable,
    UnknownBackend,
    UnknownServer,
)
from bgqueue.sandbox import MariaDBServer, free_port
from bgqueue.sandbox.haproxy import (
    CHECK_USER,
    Backend,
    BackendServer,
    HAProxyServer,
    create_check_user,
    reader_backend,
    writer_backend,
)
from tests.fixtures.servers import _fail_on_missing_binary, _server_ids

APP = "ha_app"
DB = "hatest"


@dataclass
class Servers:
    blue: MariaDBServer
    green: MariaDBServer
    password: str

    def ids(self) -> dict[int, str]:
        return {self.blue.server_id: "blue", self.green.server_id: "green"}


def _prepare(server: MariaDBServer, password: str) -> None:
    create_check_user(server)
    with server.root() as conn:
        cur = conn.cursor()
        cur.execute("SET SESSION sql_log_bin=0")
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {DB}.w (id INT AUTO_INCREMENT PRIMARY KEY, seq INT NOT NULL)")
        cur.execute(f"CREATE USER IF NOT EXISTS '{APP}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT SELECT, INSERT, DELETE ON {DB}.* TO '{APP}'@'127.0.0.1'")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory, mariadb_cache_dir: Path) -> Iterator[Servers]:
    """Two independent writable mariadbd (no replication: the flip loop writes to both)."""
    base = tmp_path_factory.mktemp("haproxy-dbs")
    blue = MariaDBServer(base / "blue", "ha-blue", next(_server_ids), cache_dir=mariadb_cache_dir)
    green = MariaDBServer(base / "green", "ha-green", next(_server_ids), cache_dir=mariadb_cache_dir)
    password = secrets.token_urlsafe(12)
    try:
        with _fail_on_missing_binary(), ThreadPoolExecutor(1) as pool:
            g = pool.submit(green.start)
            blue.start()
            g.result()
        for s in (blue, green):
            _prepare(s, password)
        yield Servers(blue, green, password)
    finally:
        green.stop()
        blue.stop()


@pytest.fixture
def servers(standalone: Servers) -> Servers:
    """Both servers up and not frozen at the start of every test (some tests stop one)."""
    for s in (standalone.blue, standalone.green):
        if s.running:
            os.kill(s.pid, signal.SIGCONT)
        else:
            s.start()
    return standalone


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[..., HAProxyServer]]:
    """``make(*backends, **kw)`` -> a started HAProxyServer; all stopped at teardown."""
    made: list[HAProxyServer] = []

    def make(*backends: Backend, **kw) -> HAProxyServer:
        h = HAProxyServer(tmp_path / f"haproxy{len(made)}", list(backends), **kw)
        made.append(h)
        with _fail_on_missing_binary():
            return h.start()

    yield make
    for h in made:
        h.stop()


def connect(port: int, s: Servers, timeout: float = 2) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=port, user=APP, password=s.password, database=DB,
                           autocommit=True, ssl_disabled=True, connect_timeout=timeout,
                           read_timeout=5, write_timeout=5)


def server_id(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id")
        return cur.fetchone()[0]


def who(port: int, s: Servers) -> str:
    """Which server a new connection through ``port`` lands on."""
    with connect(port, s) as conn:
        return s.ids()[server_id(conn)]


def wait_for(cond: Callable[[], object], timeout: float = 10, what: str = "condition") -> float:
    """Poll ``cond`` until truthy; return the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - t0


# --- the sandbox server -------------------------------------------------------------------


def test_start_serves_blue_on_the_writer_frontend_with_both_admin_sockets(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    print(f"\nhaproxy start-to-ready: {h.ready_after_s * 1000:.0f} ms")
    assert h.ready_after_s < 5

    assert stat.S_IMODE(os.stat(h.admin_socket).st_mode) == 0o600
    cfg = h.config_file.read_text()
    assert f"option mysql-check user {CHECK_USER} post-41" in cfg
    assert "inter 200ms" in cfg and "mode tcp" in cfg

    via_unix = HAProxyRuntime(h.admin_unix_address).servers("writer")
    via_tcp = HAProxyRuntime(h.admin_tcp_address).servers("writer")
    assert via_unix.keys() == via_tcp.keys() == {"blue", "green"}
    blue, green = via_tcp["blue"], via_tcp["green"]
    assert (blue.address, blue.port) == ("127.0.0.1", servers.blue.port)
    assert (green.address, green.port) == ("127.0.0.1", servers.green.port)
    assert (blue.admin_state, blue.op_state, blue.check_status, blue.weight) == ("ready", "running", "L7OK", 1)
    assert blue.healthy and blue.serving
    assert (green.admin_state, green.op_state) == ("maint", "stopped")
    assert green.check_paused and not green.serving

    assert {who(h.frontend_port("writer"), servers) for _ in range(5)} == {"blue"}


def test_start_retries_on_a_taken_port(servers, haproxy, monkeypatch):
    import bgqueue.sandbox.haproxy as mod

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    handed: list[int] = []

    def first_the_taken_port() -> int:  # the race free_port() leaves open, made certain
        handed.append(taken if not handed else real())
        return handed[-1]

    real = mod.free_port
    monkeypatch.setattr(mod, "free_port", first_the_taken_port)
    try:
        h = haproxy(writer_backend(servers.blue, servers.green), admin="unix")
    finally:
        squatter.close()
    assert len(handed) == 2 and h.frontend_port() == handed[1] != taken
    assert who(h.frontend_port(), servers) == "blue"


def test_a_server_can_start_in_drain_and_a_restart_keeps_the_ports(servers, haproxy):
    b, g = servers.blue, servers.green
    h = haproxy(Backend("writer", (BackendServer("blue", b.host, b.port),
                                   BackendServer("green", g.host, g.port, state="drain"))))
    green = h.runtime().server_state("writer", "green")
    assert green.admin_state == "drain" and not green.serving
    assert {who(h.frontend_port(), servers) for _ in range(5)} == {"blue"}
    ports, admin = dict(h.ports), h.admin_tcp_address
    h.stop()
    assert not h.running and not h.admin_socket.exists()
    h.start()
    assert (h.ports, h.admin_tcp_address) == (ports, admin)
    assert who(h.frontend_port(), servers) == "blue"


# --- flip_writer --------------------------------------------------------------------------


def test_maint_alone_keeps_the_old_connection_shutdown_sessions_cuts_it(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt = h.runtime()
    old = connect(h.frontend_port(), servers)
    assert servers.ids()[server_id(old)] == "blue"
    rt.set_state("writer", "green", "ready")
    rt.set_state("writer", "blue", "maint")
    assert servers.ids()[server_id(old)] == "blue"  # still there: maint only stops new connections
    assert rt.sessions("writer", "blue") == 1
    rt.shutdown_sessions("writer", "blue")
    with pytest.raises(pymysql.err.OperationalError) as e:
        server_id(old)
    assert e.value.args[0] in (2006, 2013)
    assert rt.sessions("writer", "blue") == 0


def test_flip_writer_moves_new_connections_cuts_old_ones_and_is_idempotent(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt, port = h.runtime(), h.frontend_port()
    old = connect(port, servers)
    assert servers.ids()[server_id(old)] == "blue"

    t0 = time.monotonic()
    r = rt.flip_writer("writer", to_server="green", from_server="blue")
    t_return = time.monotonic()
    while who(port, servers) != "green":
        assert time.monotonic() - t0 < 2, "no new connection landed on green"
    t_green = time.monotonic()
    print(f"\nflip_writer took {(t_return - t0) * 1000:.1f} ms; first connection on green "
          f"{(t_green - t0) * 1000:.1f} ms after the call ({(t_green - t_return) * 1000:.1f} ms after it returned)")

    assert r.changed and r.sessions_cut == 1
    assert (r.before["green"].admin_state, r.before["blue"].admin_state) == ("maint", "ready")
    assert (r.after["green"].admin_state, r.after["blue"].admin_state) == ("ready", "maint")
    assert r.after["green"].serving and not r.after["blue"].serving
    assert r.commands == ("set server writer/green state ready", "set server writer/blue state maint",
                          "shutdown sessions server writer/blue")
    assert {who(port, servers) for _ in range(10)} == {"green"}
    with pytest.raises(pymysql.err.OperationalError) as e:
        server_id(old)
    assert e.value.args[0] in (2006, 2013)

    again = rt.flip_writer("writer", "green", "blue")
    assert not again.changed
    assert again.commands == ("shutdown sessions server writer/blue",) and again.sessions_cut == 0
    assert {n: (s.admin_state, s.op_state) for n, s in again.after.items()} == \
           {n: (s.admin_state, s.op_state) for n, s in r.after.items()}

    back = rt.flip_writer("writer", "blue", "green")
    assert back.changed and who(port, servers) == "blue"


def test_flip_writer_refuses_unknown_names_and_a_down_target_without_changing_anything(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt = h.runtime()

    def states():
        return {n: s.admin_state for n, s in rt.servers("writer").items()}

    start = states()
    with pytest.raises(UnknownServer) as e:
        rt.flip_writer("writer", "purple", "blue")
    assert h.admin_address in str(e.value) and "'writer'" in str(e.value) and "'purple'" in str(e.value)
    assert (e.value.backend, e.value.server) == ("writer", "purple")
    with pytest.raises(UnknownBackend) as e:
        rt.flip_writer("nope", "green", "blue")
    assert h.admin_address in str(e.value) and "'nope'" in str(e.value)
    assert states() == start

    # Green checked (drain) and found down: flipping would leave the backend without a writer.
    servers.green.stop()
    rt.set_state("writer", "green", "drain")
    wait_for(lambda: rt.server_state("writer", "green").op_state == "stopped", 5, "green marked down")
    with pytest.raises(HAProxyError, match="says it is down"):
        rt.flip_writer("writer", "green", "blue")
    assert rt.server_state("writer", "blue").serving


# --- readiness ----------------------------------------------------------------------------


def test_readiness_names_maintenance_missing_servers_unknown_backends_weights_and_a_down_green(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt = h.runtime()

    [p] = rt.readiness("writer", "blue", "green")
    assert "writer/green" in p and "maintenance" in p and "drain" in p

    rt.set_state("writer", "green", "drain")
    [p] = rt.readiness("writer", "blue", "green")
    assert "writer/green" in p and ("not been health-checked" in p or "less than 1s ago" in p)
    took = wait_for(lambda: rt.readiness("writer", "blue", "green") == [], 5, "green ready in drain")
    print(f"\nreadiness empty {took * 1000:.0f} ms after green went maint -> drain (settle_s=1)")
    assert took >= 0.9
    for _ in range(100):  # stays ready while checks come and go (a running one has no result yet)
        assert rt.readiness("writer", "blue", "green") == []
        time.sleep(0.01)
    assert rt.readiness("writer", "blue", "green", expected_weights={"blue": 1, "green": 1}) == []
    [p] = rt.readiness("writer", "blue", "green", expected_weights={"green": 5})
    assert "writer/green has weight 1, expected 5" in p

    [p] = rt.readiness("writer", "blue", "purple")
    assert "no server 'purple'" in p and "blue, green" in p and h.admin_address in p
    [p] = rt.readiness("nope", "blue", "green")
    assert "no backend 'nope'" in p and h.admin_address in p

    t0 = time.monotonic()
    servers.green.stop()
    t_stopped = time.monotonic()
    wait_for(lambda: rt.readiness("writer", "blue", "green"), 5, "green reported down")
    print(f"green's mariadbd stop() took {(t_stopped - t0) * 1000:.0f} ms; readiness reported green "
          f"{(time.monotonic() - t0) * 1000:.0f} ms after stop() was called")
    wait_for(lambda: any("is down" in p for p in rt.readiness("writer", "blue", "green")), 5, "green down")
    [p] = rt.readiness("writer", "blue", "green")
    assert "writer/green is down" in p and "L4CON" in p

    servers.green.start()
    wait_for(lambda: rt.readiness("writer", "blue", "green") == [], 10, "green ready again")


def test_readiness_never_trusts_a_check_result_from_before_maintenance(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt = h.runtime()
    rt.set_state("writer", "green", "drain")
    wait_for(lambda: rt.readiness("writer", "blue", "green") == [], 5, "green ready")
    rt.set_state("writer", "green", "maint")
    servers.green.stop()  # dies while its checks are paused
    rt.set_state("writer", "green", "drain")
    g = rt.server_state("writer", "green")
    # What HAProxy shows right after maintenance: up, with the last check from before it.
    assert g.op_state == "running" and g.check_status == "L7OK"
    deadline = time.monotonic() + 5
    while True:
        problems = rt.readiness("writer", "blue", "green")
        assert problems, "readiness passed a dead green on a stale check result"
        if "is down" in problems[0]:
            break
        assert time.monotonic() < deadline, problems
        time.sleep(0.01)


def test_mysql_check_sees_a_frozen_mariadbd_that_a_tcp_check_calls_up(servers, haproxy):
    g = servers.green
    h = haproxy(Backend("mysqlchk", (BackendServer("green", g.host, g.port),), check="mysql"),
                Backend("tcpchk", (BackendServer("green", g.host, g.port),), check="tcp"))
    rt = h.runtime()
    assert rt.server_state("mysqlchk", "green").healthy and rt.server_state("tcpchk", "green").healthy
    os.kill(g.pid, signal.SIGSTOP)
    try:
        took = wait_for(lambda: rt.server_state("mysqlchk", "green").op_state == "stopped", 10, "mysql-check down")
        mysql_state, tcp_state = rt.server_state("mysqlchk", "green"), rt.server_state("tcpchk", "green")
    finally:
        os.kill(g.pid, signal.SIGCONT)
    print(f"\nfrozen mariadbd: mysql-check marked it down after {took * 1000:.0f} ms ({mysql_state.check_status})")
    assert mysql_state.check_status == "L7TOUT"
    assert tcp_state.healthy and tcp_state.check_status == "L4OK"


# --- the runtime API itself ---------------------------------------------------------------


def test_unreachable_admin_socket_gives_an_error_naming_the_address(servers, haproxy, tmp_path):
    missing = f"unix:{tmp_path}/no-such.sock"
    with pytest.raises(HAProxyUnreachable) as e:
        HAProxyRuntime(missing).show_servers_state()
    assert missing in str(e.value) and e.value.address == missing

    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(HAProxyUnreachable, match=closed):
        HAProxyRuntime(closed).set_state("writer", "green", "ready")
    with pytest.raises(HAProxyUnreachable, match=closed):
        HAProxyRuntime(closed).readiness("writer", "blue", "green")

    h = haproxy(writer_backend(servers.blue, servers.green))
    rt_tcp = h.runtime(h.admin_tcp_address)
    h.stop()
    with pytest.raises(HAProxyUnreachable, match=h.admin_tcp_address):
        rt_tcp.flip_writer("writer", "green", "blue")

    for bad in ("nowhere", "unix:", "host:port"):
        with pytest.raises(ValueError):
            HAProxyRuntime(bad)


def test_weights_states_and_the_errors_haproxy_answers_with_text(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt = h.runtime()
    rt.set_weight("writer", "blue", 37)
    assert rt.get_weight("writer", "blue") == 37
    b = rt.server_state("writer", "blue")
    assert (b.weight, b.initial_weight) == (37, 1)
    rt.set_weight("writer", "blue", 0)
    assert rt.get_weight("writer", "blue") == 0 and not rt.server_state("writer", "blue").serving
    rt.set_weight("writer", "blue", 1)

    for bad in (257, -1, "10%", True, 1.5):
        with pytest.raises(ValueError):
            rt.set_weight("writer", "blue", bad)
    with pytest.raises(ValueError):
        rt.set_state("writer", "blue", "bogus")
    with pytest.raises(ValueError):  # ';' would start a second command
        rt.set_state("writer", "blue; shutdown sessions server writer/blue", "maint")

    for call in (lambda: rt.set_weight("writer", "nosrv", 3), lambda: rt.get_weight("writer", "nosrv"),
                 lambda: rt.set_state("writer", "nosrv", "drain"),
                 lambda: rt.shutdown_sessions("writer", "nosrv"), lambda: rt.sessions("writer", "nosrv")):
        with pytest.raises(UnknownServer) as e:
            call()
        msg = str(e.value)
        assert h.admin_address in msg and "'writer'" in msg and "'nosrv'" in msg
    for call in (lambda: rt.get_weight("nobk", "blue"), lambda: rt.set_state("nobk", "blue", "ready"),
                 lambda: rt.show_servers_state("nobk"), lambda: rt.sessions("nobk", "blue")):
        with pytest.raises(UnknownBackend) as e:
            call()
        assert h.admin_address in str(e.value) and "'nobk'" in str(e.value)
    assert rt.server_state("writer", "blue").serving


def test_read_shares_of_90_10_give_about_that_share_of_new_connections(servers, haproxy):
    h = haproxy(reader_backend(servers.blue, servers.green, blue_weight=1, green_weight=1))
    rt, port = h.runtime(), h.frontend_port("reader")
    assert rt.set_read_shares("reader", {"blue": 90, "green": 10}) == {"blue": 90, "green": 10}
    assert rt.readiness("reader", "blue", "green", expected_weights={"blue": 90, "green": 10}, settle_s=0) == []

    n = 400
    hits = [who(port, servers) for _ in range(n)]
    green_pct = 100 * hits.count("green") / n
    print(f"\nread shares 90/10: green got {green_pct:.1f}% of {n} new connections")
    assert abs(green_pct - 10) <= 8

    with pytest.raises(UnknownServer):
        rt.set_read_shares("reader", {"blue": 50, "purple": 50})
    assert rt.get_weight("reader", "blue") == 90  # checked before anything was set
    rt.set_read_shares("reader", {"blue": 0, "green": 10})
    assert {who(port, servers) for _ in range(10)} == {"green"}


# --- a real ClusterPair behind it ---------------------------------------------------------


def test_flip_writer_in_front_of_a_cluster_pair(cluster_pair, sandbox_passwords, haproxy):
    from bgqueue.sandbox import APP_DATABASE, APP_USER

    pair = cluster_pair
    for s in (pair.blue, pair.green):
        create_check_user(s)
    h = haproxy(writer_backend(pair.blue, pair.green))
    rt, port = h.runtime(), h.frontend_port()

    def answering() -> int:
        with pymysql.connect(host="127.0.0.1", port=port, user=APP_USER, password=sandbox_passwords.app,
                             database=APP_DATABASE, ssl_disabled=True, connect_timeout=2) as c:
            return server_id(c)

    assert answering() == pair.blue.server_id
    rt.set_state("writer", "green", "drain")
    wait_for(lambda: rt.readiness("writer", "blue", "green") == [], 5, "green ready")
    assert answering() == pair.blue.server_id  # drain takes no new connections
    rt.flip_writer("writer", "green", "blue")
    assert answering() == pair.green.server_id


# --- measurement: flips under a writer ----------------------------------------------------


def test_twenty_flips_under_a_reconnecting_writer(servers, haproxy):
    h = haproxy(writer_backend(servers.blue, servers.green))
    rt, port = h.runtime(), h.frontend_port()
    ids = servers.ids()
    with servers.blue.root() as b, servers.green.root() as g:
        for c in (b, g):
            c.cursor().execute(f"DELETE FROM {DB}.w")

    stop = threading.Event()
    ok: list[tuple[float, str]] = []  # (ack time, server)
    failed: list[float] = []

    def writer() -> None:
        conn, where, seq = None, None, 0
        while not stop.is_set():
            try:
                if conn is None:
                    conn = connect(port, servers, timeout=1)
                    where = ids[server_id(conn)]
                seq += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {DB}.w (seq) VALUES (%s)", (seq,))
                ok.append((time.monotonic(), where))
            except pymysql.err.MySQLError:
                failed.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.001)
        if conn is not None:
            conn.close()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(ok) > 20, 10, "writer started")
        flips: list[tuple[float, float, str]] = []  # (called, returned, to)
        moved_ms: list[float] = []
        current, other = "blue", "green"
        for _ in range(20):
            t0 = time.monotonic()
            rt.flip_writer("writer", other, current)
            t1 = time.monotonic()
            flips.append((t0, t1, other))
            n_before = len(ok)
            wait_for(lambda o=other, n=n_before: any(w == o for _, w in ok[n:]), 5, f"writes on {other}")
            moved_ms.append(1000 * (next(ts for ts, w in ok[n_before:] if w == other) - t0))
            current, other = other, current
            time.sleep(0.2)
    finally:
        stop.set()
        t.join(10)

    ends = [f[0] for f in flips[1:]] + [time.monotonic()]
    per_flip = [sum(1 for x in failed if f[0] <= x < end) for f, end in zip(flips, ends, strict=False)]
    late = [sum(1 for ts, w in ok if f[1] < ts < end and w != f[2]) for f, end in zip(flips, ends, strict=False)]
    rows = 0
    for s in (servers.blue, servers.green):
        with s.root() as c, c.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {DB}.w")
            rows += cur.fetchone()[0]
    print(f"\n20 flips under a writer: {len(ok)} writes acked, {len(failed)} failed "
          f"(per flip {per_flip}, before the first flip {sum(1 for x in failed if x < flips[0][0])}); "
          f"first write on the new server after median {statistics.median(moved_ms):.1f} ms, "
          f"max {max(moved_ms):.1f} ms; writes acked by the old server after flip_writer returned: {late}; "
          f"flip_writer call median {statistics.median(1000 * (f[1] - f[0]) for f in flips):.1f} ms")
    assert max(per_flip) <= 3
    assert len(ok) <= rows <= len(ok) + len(failed)  # no acked write lost; a failed one may have committed
