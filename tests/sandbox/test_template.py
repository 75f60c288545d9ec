"""The template datadir is made once per cache and shared safely; missing binaries say what to install."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from bgqueue.sandbox import MariaDBServer, MissingBinary, RedisServer, binaries, find_binary, mariadb, template_datadir


def test_template_is_made_once_and_reused(tmp_path):
    cache = tmp_path / "cache"
    runs = mariadb.install_db_runs
    first = MariaDBServer(tmp_path / "one", "one", 1, cache_dir=cache).start()
    try:
        assert mariadb.install_db_runs == runs + 1
        inode = template_datadir(cache).stat().st_ino
        second = MariaDBServer(tmp_path / "two", "two", 2, cache_dir=cache).start()
        second.stop()
    finally:
        first.stop()
    assert mariadb.install_db_runs == runs + 1, "the second instance re-ran mariadb-install-db"
    assert template_datadir(cache).stat().st_ino == inode
    # Instances are copies: the template itself never holds a running server's files.
    assert not list(template_datadir(cache).glob("binlog.*"))


def test_parallel_builders_agree_on_one_template(tmp_path):
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: template_datadir(cache), range(3)))
    assert len(set(paths)) == 1 and (paths[0] / "mysql" / "db.frm").exists()
    # Losers removed their build directories: only the template remains in the cache.
    assert [p.name for p in cache.iterdir()] == [paths[0].parent.name]


@pytest.fixture
def no_binaries(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(binaries, "SEARCH_DIRS", [])


@pytest.mark.parametrize("name,package", [
    ("mariadbd", "mariadb-server"), ("mariadb-install-db", "mariadb-server"), ("redis-server", "redis-server"),
])
def test_missing_binary_names_the_install_command(no_binaries, name, package):
    with pytest.raises(MissingBinary) as e:
        find_binary(name)
    assert str(e.value) == f"{name} not found; install it with: sudo apt-get install -y {package}"


def test_servers_raise_missing_binary(no_binaries, tmp_path):
    with pytest.raises(MissingBinary, match="apt-get install -y mariadb-server"):
        MariaDBServer(tmp_path / "m", "m", 1, cache_dir=tmp_path / "cache").start()
    with pytest.raises(MissingBinary, match="apt-get install -y redis-server"):
        RedisServer(tmp_path / "r").start()


def test_fixtures_fail_not_skip_without_binaries(tmp_path):
    # Run a tiny suite in a separate pytest whose binary search finds nothing.
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from bgqueue.sandbox import binaries
        binaries.SEARCH_DIRS = []
        pytest_plugins = ["tests.fixtures.servers"]
    """))
    (tmp_path / "test_it.py").write_text("def test_pair(cluster_pair):\n    pass\n"
                                         "def test_redis(redis_url):\n    pass\n")
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "skipped" not in out, out
    assert "2 error" in out, out
    assert "sudo apt-get install -y mariadb-server" in out, out
    assert "sudo apt-get install -y redis-server" in out, out
