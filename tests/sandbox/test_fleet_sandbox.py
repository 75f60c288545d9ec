"""`bgqueue sandbox up/down`: detached servers that outlive the process that started them."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pymysql
import pytest

from bgqueue.model.errors import BadInput
from bgqueue.model.fleet import check_credentials, load_fleet
from bgqueue.sandbox import Sandbox
from bgqueue.sandbox.binaries import pid_running

UP = "import sys; from pathlib import Path; from bgqueue.sandbox import Sandbox; " \
     "Sandbox(Path(sys.argv[1]), clusters=2, cache_dir=Path(sys.argv[2])).up()"


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def read_env_file(path) -> dict[str, str]:
    # Let a real shell parse it, as an operator's `source sandbox.env` would.
    out = subprocess.run(["bash", "-c", f"set -a; source {path}; env -0"], capture_output=True, check=True,
                         env={}).stdout.decode()
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)


@pytest.fixture
def started(tmp_path, mariadb_cache_dir):
    sb_dir = tmp_path / "sb"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-c", UP, str(sb_dir), str(mariadb_cache_dir)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sb = Sandbox.load(sb_dir)
    yield sb
    Sandbox.load(sb_dir).down() if sb.json_path.exists() else None


def test_up_outlives_its_process_and_writes_a_usable_fleet(started, monkeypatch):
    sb = started
    info = sb.info
    assert [c["name"] for c in info["clusters"]] == ["c01", "c02"]
    assert [(c["blue"]["server_id"], c["green"]["server_id"]) for c in info["clusters"]] == [(1, 2), (3, 4)]
    # The starting process has exited; its servers live on, no longer our children.
    assert len(sb.pids()) == 5
    for pid in sb.pids():
        assert pid_running(pid)
        assert parent_of(pid) != os.getpid()

    for path in (sb.json_path, sb.env_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    env = read_env_file(sb.env_path)
    secrets = [env[k] for k in info["password_envs"]]
    assert len(secrets) == 4 and all(len(s) >= 16 for s in secrets)
    for text in (sb.json_path.read_text(), sb.fleet_path.read_text()):
        assert not any(s in text for s in secrets), "a password was written outside sandbox.env"
    assert env["BGQUEUE_REDIS_URL"] == info["redis"]["url"]

    for k in info["password_envs"]:
        monkeypatch.setenv(k, env[k])
    fleet = load_fleet(sb.fleet_path)
    check_credentials(fleet, str(sb.fleet_path))
    assert fleet.name == "sandbox" and fleet.clusters[0].thresholds.sync_timeout_s == 60
    for spec, rec in zip(fleet.clusters, info["clusters"], strict=False):
        assert (spec.name, spec.blue.port, spec.green.port) == (rec["name"], rec["blue"]["port"], rec["green"]["port"])
        # The credentials the fleet names work against the servers it names.
        with pymysql.connect(host=spec.blue.host, port=spec.blue.port, user=spec.admin.user,
                             password=spec.admin.password(), ssl_disabled=True) as c:
            cur = c.cursor()
            cur.execute("SELECT @@read_only, @@server_id")
            assert cur.fetchone() == (0, rec["blue"]["server_id"])
        with pymysql.connect(host=spec.green.host, port=spec.green.port, user=spec.admin.user,
                             password=spec.admin.password(), ssl_disabled=True) as c:
            cur = c.cursor()
            cur.execute("SHOW SLAVE STATUS")
            row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=False))
            assert (row["Slave_IO_Running"], row["Slave_SQL_Running"]) == ("Yes", "Yes")
            assert int(row["Master_Port"]) == spec.blue.port


def test_up_refuses_a_running_sandbox_and_down_stops_everything(started, mariadb_cache_dir):
    sb = started
    pids = sb.pids()
    with pytest.raises(BadInput, match="already running"):
        Sandbox(sb.dir, clusters=1, cache_dir=mariadb_cache_dir).up()
    assert all(pid_running(p) for p in pids), "the refused up() disturbed the running sandbox"

    Sandbox.load(sb.dir).down()
    assert not [p for p in pids if pid_running(p)]
    assert not sb.json_path.exists() and not sb.env_path.exists() and not sb.fleet_path.exists()
    assert not (sb.dir / "c01").exists()
    with pytest.raises(BadInput, match="no sandbox"):
        Sandbox.load(sb.dir)


def test_in_process_up_and_down(tmp_path, mariadb_cache_dir):
    sb = Sandbox(tmp_path / "sb", clusters=4, detach=True, cache_dir=mariadb_cache_dir).up()
    try:
        assert json.loads(sb.json_path.read_text()) == sb.info
        assert len(sb.pids()) == 9 and all(pid_running(p) for p in sb.pids())
    finally:
        pids = sb.pids()
        sb.down()
    assert not [p for p in pids if pid_running(p)]
