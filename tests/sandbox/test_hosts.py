"""The hosts harness: namespaces that reach the root side's servers (MariaDB, Redis, PostgreSQL) by
their own addresses, faults that cut one server or a whole host, and a clean-up that leaves nothing."""
from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest

from bgqueue.sandbox.hosted import HostedPostgres, hosted_pair, hosted_redis
from bgqueue.sandbox.hosts import HostNet
from tests.fixtures.hosts import TEST_NET, TEST_PREFIX

_ids = itertools.count(7000)

PROBE = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=1.5).close()
    print("open")
except OSError as e:
    print("cut", type(e).__name__)
"""


def _probe(net: HostNet, h, host: str, port: int) -> str:
    r = net.in_ns(h, sys.executable, "-c", PROBE, host, str(port))
    return r.stdout.split()[0]


def _mysql_in_ns(net: HostNet, h, server, user: str, password: str) -> str:
    code = ("import pymysql,sys; c=pymysql.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3], "
            "password=sys.argv[4], ssl_disabled=True, connect_timeout=3); cur=c.cursor(); "
            "cur.execute('SELECT @@server_id'); print(cur.fetchone()[0])")
    return net.in_ns(h, sys.executable, "-c", code, server.host, str(server.port), user, password).stdout.strip()


def test_hosts_reach_the_root_side_servers_and_faults_cut_exactly_what_they_name(
        host_net, tmp_path, sandbox_passwords, mariadb_cache_dir, postgres_cache_dir):
    net = host_net
    assert [h.netns for h in net.hosts] == [f"{TEST_PREFIX}-h1", f"{TEST_PREFIX}-h2", f"{TEST_PREFIX}-h3"]
    pair = hosted_pair(net, tmp_path / "c1", "hc1", next(_ids), next(_ids), sandbox_passwords, mariadb_cache_dir)
    redis = hosted_redis(net, tmp_path / "redis")
    pg = HostedPostgres(net, tmp_path / "pg", cache_dir=postgres_cache_dir)
    try:
        pg.start()
        h1, h2 = net.host(1), net.host(2)
        assert pair.blue.host != pair.green.host and pair.blue.host.startswith("10.")
        # An unprivileged application user and the admin reach both servers from a host.
        assert _mysql_in_ns(net, h1, pair.blue, "app", sandbox_passwords.app) == str(pair.blue.server_id)
        assert _mysql_in_ns(net, h1, pair.green, "bgq_admin", sandbox_passwords.admin) == str(pair.green.server_id)
        assert _probe(net, h1, redis.host, redis.port) == "open" and f"@{redis.host}:{redis.port}/" in redis.url
        code = "import psycopg,sys; psycopg.connect(sys.argv[1].replace('+psycopg',''), connect_timeout=3).close(); print('ok')"
        assert net.in_ns(h1, sys.executable, "-c", code, pg.url).stdout.strip() == "ok"
        # Loopback is the host's own: the root side's 127.0.0.1 servers are not reachable from it.
        assert _probe(net, h1, "127.0.0.1", pair.blue.port) == "cut"

        # A partition cuts one server from one host, nothing else.
        net.partition(h1, pair.blue.host)
        assert _probe(net, h1, pair.blue.host, pair.blue.port) == "cut"
        assert _probe(net, h1, pair.green.host, pair.green.port) == "open"
        assert _probe(net, h2, pair.blue.host, pair.blue.port) == "open"
        net.heal(h1, pair.blue.host)
        assert _probe(net, h1, pair.blue.host, pair.blue.port) == "open"
        # A cut link isolates the whole host.
        net.cut(h2)
        assert _probe(net, h2, redis.host, redis.port) == "cut"
        assert _probe(net, h1, redis.host, redis.port) == "open"
        net.restore(h2)
        assert _probe(net, h2, redis.host, redis.port) == "open"

        # A host lost: every process in it is killed (a stopped one too).
        sleeper = subprocess.Popen([*net.exec_prefix(h1), "sleep", "300"])
        time.sleep(0.2)
        assert sleeper.pid in net.pids(h1)
        sleeper.send_signal(19)  # SIGSTOP
        assert net.kill_all(h1) == [sleeper.pid]
        assert sleeper.wait(5) == -9
    finally:
        pg.remove()
        redis.stop()
        pair.stop()


def _names(prefix: str) -> set[str]:
    ns = subprocess.run(["ip", "-o", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {w.split("@")[0].rstrip(":") for w in (ns + links).split() if w.startswith(f"{prefix}-")}


def test_leftovers_are_removed_at_start_and_teardown_removes_everything():
    net = HostNet(count=2, prefix="bgqz", net=TEST_NET + 1)
    # A crashed run's leftovers: a namespace and a link of the same prefix.
    subprocess.run(["ip", "netns", "add", "bgqz-h9"], check=True)
    subprocess.run(["ip", "link", "add", "bgqz-x", "type", "bridge"], check=True)
    try:
        net.setup()
        names = _names("bgqz")
        assert "bgqz-h9" not in names and "bgqz-x" not in names
        assert {"bgqz-h1", "bgqz-h2", "bgqz-srv", "bgqz-h1r", "bgqz-h2r"} <= names
    finally:
        net.teardown()
    assert _names("bgqz") == set()
    net.teardown()  # twice is harmless


def test_a_process_that_cannot_make_namespaces_gets_the_reason(tmp_path):
    """Not root: a clear HostsUnavailable (the fixture turns it into a failure, never a skip)."""
    code = ("from bgqueue.sandbox.hosts import HostNet, HostsUnavailable\n"
            "try:\n    HostNet(prefix='bgqn').setup()\nexcept HostsUnavailable as e:\n    print('REFUSED', e)\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                       capture_output=True, text=True, cwd=str(tmp_path.parent),
                       env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert "REFUSED network namespaces need root" in r.stdout, r.stdout + r.stderr
    with pytest.raises(ValueError, match="prefix"):
        HostNet(prefix="Bad-Prefix")
