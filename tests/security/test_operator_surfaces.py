"""Issue 11, item 8: the surfaces an operator touches. `sandbox down` acts only inside its directory
and only on its own servers; fleet keys and server messages reach the terminal as text, never as
Rich markup or escape sequences; Flower requires authentication however it is started; the
exporter listens on loopback and a scrape's cost does not grow with the history."""
from __future__ import annotations

import base64
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy import event, func, insert, select

from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store.models import CheckResultRow, DecisionRow, Deployment
from bgqueue.model.phases import Phase
from bgqueue.sandbox import free_port
from bgqueue.sandbox.binaries import pid_running
from tests.fixtures.bgq import REPO, bgqueue_cli

# --- sandbox down -------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _server(pid: int, socket_path: str, workdir: Path) -> dict:
    """A server entry as up() writes it (an old bgqueue reads cnf and socket from it)."""
    return {"host": "127.0.0.1", "port": free_port(), "pid": pid, "server_id": 1, "socket": socket_path,
            "cnf": str(workdir / "my.cnf"), "datadir": str(workdir / "data")}


def _pair(sbx: Path, name: str, pid: int, socket_path: str) -> dict:
    return {"name": name, **{role: _server(pid, socket_path, sbx / name / role) for role in ("blue", "green")}}


def _plant(sbx: Path, info: dict) -> None:
    sbx.mkdir(parents=True, exist_ok=True)
    (sbx / "sandbox.json").write_text(json.dumps({"version": 1, "dir": str(sbx), "detach": True, **info}))


def _precious(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "precious").write_text("keep me")
    return d


@pytest.mark.parametrize("vector", ["redis_workdir", "cluster_name", "socket_dir"])
def test_a_planted_sandbox_json_removes_nothing_outside_the_sandbox(tmp_path, bgq_env, vector):
    sbx = tmp_path / "sbx"
    if vector == "redis_workdir":
        victim = _precious(tmp_path / "victim")
        _plant(sbx, {"redis": {"url": "redis://127.0.0.1:1/0", "port": 1, "pid": _dead_pid(), "workdir": str(victim)},
                     "clusters": []})
    elif vector == "cluster_name":
        victim = _precious(tmp_path / "victim")
        _plant(sbx, {"clusters": [_pair(sbx, "../victim", _dead_pid(), str(tmp_path / "nowhere.sock"))]})
    else:  # a directory of the temporary directory named like the sandbox's short socket dirs
        victim = _precious(Path(tempfile.mkdtemp(prefix="bgq-")))
        _plant(sbx, {"clusters": [_pair(sbx, "c01", _dead_pid(), str(victim / "mysqld.sock"))]})
    try:
        r = bgqueue_cli("sandbox", "down", "--dir", str(sbx), env=bgq_env)
        assert (victim / "precious").read_text() == "keep me", (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        if vector != "socket_dir":  # a socket path is only ever skipped; the others are not a sandbox's file
            assert r.returncode == 2, (r.stdout, r.stderr)
            assert "is not a sandbox.json written for" in r.stderr and "nothing was stopped or removed" in r.stderr
    finally:
        if vector == "socket_dir":
            import shutil

            shutil.rmtree(victim, ignore_errors=True)


def test_a_symlink_in_the_sandbox_does_not_lead_rmtree_out(tmp_path, bgq_env):
    """A guard: shutil.rmtree already refuses a symlink itself, and the new code must keep that."""
    sbx = tmp_path / "sbx"
    victim = _precious(tmp_path / "victim")
    _plant(sbx, {"clusters": [_pair(sbx, "c01", _dead_pid(), str(tmp_path / "nowhere.sock"))]})
    (sbx / "c01").symlink_to(victim, target_is_directory=True)
    (sbx / "redis").symlink_to(victim, target_is_directory=True)
    r = bgqueue_cli("sandbox", "down", "--dir", str(sbx), env=bgq_env)
    assert r.returncode == 0, r.stderr
    assert (victim / "precious").read_text() == "keep me"


def test_recorded_pids_are_signalled_only_when_exactly_the_sandbox_server(tmp_path, bgq_env):
    """A process whose command line merely contains the server's config path (or redis'
    "127.0.0.1:PORT") is not the server: the old substring match would have killed it."""
    sbx = tmp_path / "sbx"
    port = free_port()
    cnf = {role: sbx / "c01" / role / "my.cnf" for role in ("blue", "green")}
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                               f"--defaults-file={cnf['blue']}", f"--defaults-file={cnf['green']}", f"127.0.0.1:{port}"])
    try:
        for role in ("blue", "green"):
            (sbx / "c01" / role / "data").mkdir(parents=True)
        (sbx / "redis").mkdir(parents=True)
        pair = _pair(sbx, "c01", victim.pid, str(sbx / "c01" / "mysqld.sock"))
        _plant(sbx, {"redis": {"url": f"redis://127.0.0.1:{port}/0", "port": port, "pid": victim.pid,
                               "workdir": str(sbx / "redis")},
                     "clusters": [pair]})
        r = bgqueue_cli("sandbox", "down", "--dir", str(sbx), env=bgq_env)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
        assert victim.poll() is None and pid_running(victim.pid), "sandbox down signalled a process it did not start"
        assert not (sbx / "c01").exists() and not (sbx / "sandbox.json").exists()  # its own files are removed
    finally:
        victim.kill()
        victim.wait()


# --- text on the terminal ---------------------------------------------------------------------


def _one_cluster(tmp_path, key: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text("clusters:\n  - name: orders\n    provider: mysql\n"
                    f"    blue: {{host: 127.0.0.1, port: {free_port()}}}\n"
                    f"    green: {{host: 127.0.0.1, port: {free_port()}}}\n"
                    "    admin: {user: a, password_env: BGQ_SANDBOX_ADMIN_PASSWORD}\n"
                    "    replication: {user: r, password_env: BGQ_SANDBOX_REPL_PASSWORD}\n"
                    f"    {key}: 1\n")
    return str(path)


def _no_control(text: str) -> None:
    bad = sorted({f"{ord(c):#x}" for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) < 0xa0})
    assert not bad, f"control characters reached the terminal: {bad}: {text!r}"


@pytest.mark.parametrize("key,shown", [
    ('"[/x]"', "field [/x]: unknown key"),  # was: rich.errors.MarkupError, a traceback and exit 1
    ('"[bold red]x[/bold red]"', "field [bold red]x[/bold red]: unknown key"),
    ('"\\e[2J\\e]0;owned\\a\\r"', "field \\x1b[2J\\x1b]0;owned\\x07\\x0d: unknown key"),
])
def test_fleet_keys_reach_the_terminal_as_text(tmp_path, bgq_env, key, shown):
    path = _one_cluster(tmp_path, key)
    r = bgqueue_cli("fleet", "check", path, env=bgq_env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert f"{path}:8: cluster 'orders': {shown}" in r.stderr, r.stderr
    _no_control(r.stderr)


def test_server_messages_reach_the_terminal_as_text(cluster_pair_factory, fleet_file, unique_name, bgq_env):
    """The replication host (and so the IO thread's error) is whatever a server says."""
    pair = cluster_pair_factory(unique_name("msg"))
    hostile = "[/x]\x1b[2J\x1b[31mevil"
    with pair.green.root() as c, c.cursor() as cur:
        cur.execute("STOP SLAVE")
        cur.execute("CHANGE MASTER TO MASTER_HOST=%s, MASTER_CONNECT_RETRY=1", (hostile,))
        cur.execute("START SLAVE")
    r = bgqueue_cli("fleet", "check", str(fleet_file([pair])), env=bgq_env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert f"cluster '{pair.name}': field green: green replicates from [/x]\\x1b[2J\\x1b[31mevil:{pair.blue.port}, " \
           "not from blue" in r.stderr, r.stderr
    _no_control(r.stderr)


def test_stored_reasons_and_journal_details_reach_the_terminal_as_text(bgq_env, runtime, unique_name):
    name = unique_name("stored")
    spec = {"name": name, "provider": "mysql", "blue": {"host": "127.0.0.1", "port": 1},
            "green": {"host": "127.0.0.1", "port": 2}, "admin": {"user": "a", "password_env": "A"},
            "replication": {"user": "r", "password_env": "R"}, "thresholds": {}}
    batch, ids = deps.create_batch(runtime.store, fleet_name="[/fleet]", fleet_path="/f", fleet_text="", clusters=[spec])
    claim = deps.claim(runtime.store, ids[name], "test", [Phase.PENDING])
    deps.transition(runtime.store, claim, Phase.NO_GO, reason="server said [/x] \x1b[2J\x1b]0;owned\x07 [bold]")
    wide = dict(bgq_env, COLUMNS="400")  # tables do not wrap the reason
    for args in (("status", name), ("status", batch), ("status",)):
        r = bgqueue_cli(*args, env=wide)
        assert r.returncode == 0, (args, r.stderr)  # was: rich.errors.MarkupError, exit 1
        assert "Traceback" not in r.stderr
        _no_control(r.stdout)
        if args != ("status",):  # the list of recent batches may not reach this one
            assert "server said [/x] \\x1b[2J\\x1b]0;owned\\x07 [bold]" in r.stdout, r.stdout
    r = bgqueue_cli("status", batch, env=wide)
    assert f"batch {batch} ([/fleet])" in r.stdout


# --- Flower, however it is started ---------------------------------------------------------------

AUTH_VARS = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER", "FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET",
             "FLOWER_OAUTH2_REDIRECT_URI", "FLOWER_UNAUTHENTICATED_API", "BGQUEUE_FLOWER_ALLOW_NO_AUTH", "FLOWER_CONF",
             "FLOWER_ADDRESS")
WITH_CONF = ("--conf=config/flower.py",)


def _flower_env(bgq_env: dict, **extra: str) -> dict:
    return {**{k: v for k, v in bgq_env.items() if k not in AUTH_VARS}, **extra}


def _flower(env: dict, port: int, conf: tuple[str, ...]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "tasks", "flower", *conf, f"--port={port}"],
                            env=env, cwd=str(REPO), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("conf", [(), WITH_CONF], ids=["plain", "with-conf"])
def test_flower_without_authentication_does_not_start_either_way(bgq_env, conf):
    proc = _flower(_flower_env(bgq_env), free_port(), conf)
    try:
        out, _ = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"`celery -A tasks flower {' '.join(conf)}` started without authentication:\n{out[-2000:]}")
    assert proc.returncode == 2, out
    assert "flower: refusing to start" in out and "no authentication is set" in out, out


@pytest.mark.parametrize("conf", [(), WITH_CONF], ids=["plain", "with-conf"])
def test_flower_requires_credentials_and_listens_on_loopback_either_way(bgq_env, conf):
    import secrets

    user, password = "ops", secrets.token_urlsafe(18)
    port = free_port()
    proc = _flower(_flower_env(bgq_env, FLOWER_BASIC_AUTH=f"{user}:{password}"), port, conf)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if _get(f"{base}/healthcheck") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "flower did not answer"
            time.sleep(0.2)
        assert _get(f"{base}/api/workers") == 401
        assert _get(f"{base}/api/tasks") == 401
        assert _get(f"{base}/") == 401
        assert _get(f"{base}/api/tasks", auth=(user, password + "x")) == 401
        assert _get(f"{base}/api/tasks", auth=(user, password)) == 200
        # 127.0.0.2 is this host too: a Flower bound to every interface would answer there.
        assert not _reachable("127.0.0.2", port), "flower listens beyond 127.0.0.1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the exporter ---------------------------------------------------------------------------


def test_the_procfile_exporter_listens_on_loopback_only(bgq_env):
    line = next(x for x in (REPO / "Procfile").read_text().splitlines() if x.startswith("exporter:"))
    argv = shlex.split(line.split(":", 1)[1])
    if argv[0] == "scripts/restarting":  # the Procfile's restart policy wraps every process
        argv = argv[1:]
    assert argv[0] == "bgqueue"
    port = free_port()
    argv = [str(port) if prev == "--port" else a for prev, a in zip([None, *argv], argv, strict=False)]
    proc = subprocess.Popen([sys.executable, "-m", "bgqueue.app.cli", *argv[1:]], env=bgq_env, cwd=str(REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _reachable("127.0.0.1", port):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the exporter did not listen"
            time.sleep(0.2)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).status == 200
        assert not _reachable("127.0.0.2", port), "the Procfile's exporter listens beyond loopback"
    finally:
        proc.terminate()
        proc.wait(10)


def _statements(store) -> list[int]:
    count = [0]
    event.listen(store.engine, "before_cursor_execute", lambda *a, **k: count.__setitem__(0, count[0] + 1))
    return count


def _metric(body: str, name: str) -> float:
    return float(next(line for line in body.splitlines() if line.startswith(name + " ")).split()[-1])


def test_a_scrape_costs_a_fixed_number_of_queries_and_scrapes_share_one_computation(tmp_path):
    from bench.exporter import fill
    from bgqueue.adapters.store.db import Store
    from bgqueue.app.exporter import registry_for

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    fill(store, 200)
    count = _statements(store)
    reg = registry_for(store)
    body = generate_latest(reg).decode()
    # Exact figures, aggregated by the database.
    assert _metric(body, "bgqueue_switchover_duration_seconds_count") == 200
    assert _metric(body, "bgqueue_cdc_downtime_seconds_count") == 200
    assert _metric(body, 'bgqueue_rollbacks_total{trigger="automatic"}') == 10
    assert _metric(body, 'bgqueue_decisions_total{kind="pre_switch",verdict="GO"}') == 200
    with store.session() as s:
        passes = s.execute(select(func.count()).where(CheckResultRow.name == "replication",
                                                      CheckResultRow.status == "pass")).scalar()
        blocked = s.execute(select(func.count()).where(Deployment.writes_blocked_ms <= 100)).scalar()
    assert _metric(body, 'bgqueue_check_results_total{check="replication",status="pass"}') == passes
    assert _metric(body, 'bgqueue_write_block_seconds_bucket{le="0.1",procedure="switchover"}') == blocked
    # Prometheus replicas and refreshes within the cache's life cost nothing.
    first = count[0]
    for _ in range(5):
        generate_latest(reg)
    assert count[0] == first, "a scrape within the cache's TTL ran queries"

    # Behind the cache: the same number of queries whatever the history's length.
    from bgqueue.app.exporter import StoreCollector

    uncached = StoreCollector(store, ttl_s=0)
    before = count[0]
    list(uncached.collect())
    small = count[0] - before
    fill(store, 2000)
    before = count[0]
    list(uncached.collect())
    assert count[0] - before == small <= 12


def test_incremental_counts_settle_late_commits(tmp_path):
    """An id handed out before a higher one but committed after it (a PostgreSQL sequence) is
    still counted: nothing below the table's maximum is settled until settle_s has passed."""
    from bgqueue.adapters.store.db import Store
    from bgqueue.adapters.store.figures import Incremental

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    deps.create_batch(store, fleet_name="f", fleet_path="/f", fleet_text="", clusters=[{"name": "c1", "provider": "mysql"}])
    with store.session() as s:
        dep = s.execute(select(Deployment.id)).scalar()

    def add(*ids: int) -> None:
        with store.begin() as c:
            c.execute(insert(DecisionRow), [{"id": i, "deployment_id": dep, "kind": "pre_switch", "round": 1,
                                             "verdict": "GO"} for i in ids])

    clock = [0.0]
    counts = Incremental(DecisionRow.id, [DecisionRow.verdict], [func.count()], [], settle_s=60, clock=lambda: clock[0])
    add(*range(1, 11), *range(20, 31))  # ids 11-19 taken by transactions not committed yet
    with store.session() as s:
        assert counts.values(s) == {("GO",): [21]}
    add(15)  # commits late, below the maximum already seen
    clock[0] = 61
    with store.session() as s:
        assert counts.values(s) == {("GO",): [22]} and counts.settled_id == 30
    add(31, 32)
    clock[0] = 200
    with store.session() as s:
        assert counts.values(s) == {("GO",): [24]}
        assert counts.values(s) == {("GO",): [24]}  # settled rows are not counted twice
