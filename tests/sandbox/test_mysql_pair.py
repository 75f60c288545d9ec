"""An Oracle MySQL ClusterPair (mysqld fetched by scripts/fetch-mysql.sh) really replicates with GTID
auto-positioning, its users log in with caching_sha2_password over plain TCP, and read_only
stops the application on green and a fence (super_read_only) stops everyone."""
from __future__ import annotations

import os
import subprocess
import time

import pymysql
import pytest

from bgqueue.adapters.mysql.server import Server
from bgqueue.model.fleet import Credentials, Endpoint, load_fleet
from bgqueue.sandbox import ADMIN_PASSWORD_ENV, ADMIN_USER, APP_DATABASE, APP_USER, REPL_USER, SandboxPasswords
from bgqueue.sandbox.mysql import mysql_root, mysqld_version
from tests.fixtures.bgq import REPO


def app_conn(server, pw: SandboxPasswords) -> pymysql.connections.Connection:
    return pymysql.connect(host=server.host, port=server.port, user=APP_USER, password=pw.app,
                           database=APP_DATABASE, autocommit=True, ssl_disabled=True)


def test_fetch_script_reuses_its_cache_and_says_the_version():
    t0 = time.monotonic()
    r = subprocess.run([str(REPO / "scripts/fetch-mysql.sh")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5, "a present cache must be reused, not fetched again"
    assert r.stdout.strip() == str(mysql_root())
    assert f"using cached MySQL {mysqld_version()}" in r.stderr


@pytest.mark.parametrize("flavour", ["mysql"])
def test_mysql_pair_replicates_and_read_only_stops_the_application_on_green(cluster_pair, sandbox_passwords):
    pair = cluster_pair
    assert mysqld_version().split(".")[0].isdigit() and int(mysqld_version().split(".")[0]) >= 8
    with pair.blue.root() as root:
        root.cursor().execute(f"CREATE TABLE {APP_DATABASE}.t (id INT PRIMARY KEY, v VARCHAR(20))")
    with app_conn(pair.blue, sandbox_passwords) as blue:  # caching_sha2_password over TCP, no TLS
        blue.cursor().execute("INSERT INTO t VALUES (1, 'from-blue')")
    pos = pair.wait_green_synced()
    assert "\n" not in pos and pos.count(":") == 1  # one source, one line

    with app_conn(pair.green, sandbox_passwords) as green:
        cur = green.cursor()
        cur.execute("SELECT v FROM t WHERE id=1")
        assert cur.fetchone() == ("from-blue",)
        with pytest.raises(pymysql.err.OperationalError) as e:
            cur.execute("INSERT INTO t VALUES (2, 'on-green')")
        assert e.value.args[0] == 1290

    admin = Server(Endpoint(host=pair.green.host, port=pair.green.port),
                   Credentials(user=ADMIN_USER, password_env=ADMIN_PASSWORD_ENV), label="green", tls="disabled")
    with admin:
        assert admin.flavour == "mysql" and admin.is_read_only()
        # A fence (the dialect's super_read_only) stops the admin user (ALL PRIVILEGES) too.
        admin.set_read_only(True)
        with pytest.raises(pymysql.err.OperationalError) as e:
            admin.execute(f"INSERT INTO {APP_DATABASE}.t VALUES (3, 'admin-on-green')")
        assert e.value.args[0] == 1290
        admin.execute("SET GLOBAL super_read_only = OFF")  # back to the sandbox's replica state
        status = admin.replica_status()
        assert status is not None and status.healthy and status.using_gtid and status.source_port == pair.blue.port
        # Green made no transaction of its own (the replication user was created outside the binlog).
        assert admin.gtid_position() == pos and admin.identity().server_uuid != pos.split(":")[0]
        assert admin.global_privileges(REPL_USER)


@pytest.mark.parametrize("flavour", ["mysql"])
def test_mysql_server_keeps_its_data_over_a_kill_and_restart(cluster_pair):
    pair = cluster_pair
    with pair.blue.root() as root:
        root.cursor().execute(f"CREATE TABLE {APP_DATABASE}.k (id INT PRIMARY KEY)")
        root.cursor().execute(f"INSERT INTO {APP_DATABASE}.k VALUES (1), (2)")
    pair.wait_green_synced()
    pair.green.kill()
    assert not pair.green.running
    t0 = time.monotonic()
    pair.green.start()
    assert time.monotonic() - t0 < 20
    pos = pair.wait_green_synced()
    with pair.green.root() as g:
        cur = g.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {APP_DATABASE}.k")
        assert cur.fetchone() == (2,)
        cur.execute("SELECT @@GLOBAL.read_only")
        assert cur.fetchone() == (1,)  # a restarted replica comes back read-only, as on MariaDB
    assert pos


def test_pair_flavour_is_checked():
    from bgqueue.sandbox import ClusterPair

    with pytest.raises(ValueError, match="unknown flavour 'postgres'"):
        ClusterPair("/nonexistent", "x", 1, 2, SandboxPasswords.generate(), flavour="postgres")


def test_cli_sandbox_up_flavour_mysql_then_down_by_its_recorded_pids(tmp_path, mysql_cache_dir, monkeypatch):
    from bgqueue.sandbox import Sandbox
    from bgqueue.sandbox.binaries import pid_running
    from tests.fixtures.bgq import bgqueue_cli

    sb_dir = tmp_path / "sb"
    env = {**os.environ, "BGQUEUE_HOME": str(tmp_path / "home")}
    # The template is made once per cache: the CLI's default cache is BGQUEUE_HOME/cache.
    (tmp_path / "home").mkdir()
    os.symlink(mysql_cache_dir, tmp_path / "home" / "cache")
    r = bgqueue_cli("sandbox", "up", "--clusters", "1", "--dir", str(sb_dir), "--flavour", "mysql", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 mysql cluster," in r.stdout
    sb = Sandbox.load(sb_dir)
    pids = sb.pids()
    try:
        assert sb.info["flavour"] == "mysql" and sb.flavour == "mysql"
        spec = load_fleet(sb.fleet_path).clusters[0]
        monkeypatch.setenv(ADMIN_PASSWORD_ENV, read_env(sb.env_path)[ADMIN_PASSWORD_ENV])
        with Server(spec.blue, spec.admin, label="blue", tls=spec.tls) as blue:
            assert blue.flavour == "mysql" and not blue.is_read_only()
        assert len(pids) == 3 and all(pid_running(p) for p in pids)
        t0 = time.monotonic()
        r = bgqueue_cli("sandbox", "down", "--dir", str(sb_dir), env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:  # detached servers outlive the test: never leave them running
        if sb.json_path.exists():
            Sandbox.load(sb_dir).down()
    assert time.monotonic() - t0 < 30
    assert not any(pid_running(p) for p in pids)
    assert not (sb_dir / "c01").exists() and not sb.json_path.exists()


def read_env(path) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f"set -a; source {path}; env -0"], capture_output=True, check=True,
                         env={}).stdout.decode()
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)
