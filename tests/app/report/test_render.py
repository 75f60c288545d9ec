"""The report drawn from a real store (and a real redis-server for the sampler's points): one
cluster that switched and was rolled back, one that stopped at NO_GO. Exact content checks; the
browser checks are in test_report_e2e.py."""
from __future__ import annotations

import re
import stat

import pytest
import redis

from bgqueue.adapters.metrics.samples import MetricsStore
from bgqueue.adapters.metrics.summary import POINT_METRICS, summarize_phase
from bgqueue.adapters.store import deployments as deps
from bgqueue.adapters.store import journal
from bgqueue.adapters.store import validation as records
from bgqueue.adapters.store.db import Store
from bgqueue.app.report import render_batch_report, write_batch_report
from bgqueue.app.report.cluster import PLOTS
from bgqueue.model.errors import BadInput
from bgqueue.model.phases import Phase
from bgqueue.model.results import CheckResult

SPEC = {"provider": "mysql", "blue": {"host": "10.0.0.1", "port": 3306}, "green": {"host": "10.0.0.2", "port": 3306}}
SWITCH = ["fence", "checkpoint", "wait_for_new", "promote", "new_coordinates", "flip_routing", "reverse_replication"]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield s
    s.dispose()


@pytest.fixture
def metrics(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield MetricsStore(client)
    client.close()


def _walk(store, claim, *phases, reason=None):
    for p in phases:
        claim = deps.transition(store, claim, p, reason=reason if p == phases[-1] else None)
    return claim


def _procedure(store, claim, procedure: str) -> None:
    j = journal.Journal(store, claim, procedure)
    for name in SWITCH:
        with j.step(name) as facts:
            if name == "checkpoint":
                facts.update(gtid="0-1-42", file="binlog.000001", pos=1234)
    journal.save_checkpoint(store, claim, procedure, old_primary="10.0.0.1:3306", new_primary="10.0.0.2:3306",
                            old_gtid="0-1-42", old_binlog_file="binlog.000001", old_binlog_pos=1234,
                            new_binlog_file="binlog.000002", new_binlog_pos=99)


def _checks(store, dep_id: str, rnd: int, lag_status: str, verdict: str, reasons: list[str]) -> None:
    results = [CheckResult("replication_health", "pass", "IO and SQL threads running"),
               CheckResult("replication_lag", lag_status, "0.8s of 2s covered", value=0.0, threshold="< 1s for 2s")]
    records.record_round(store, dep_id, rnd, results, verdict, reasons)


@pytest.fixture
def batch(store, metrics, unique_name):
    """A batch of two: ``switched`` went through a switchover then a rollback, ``refused`` is NO_GO."""
    switched, refused = unique_name("rsw"), unique_name("rno")
    batch_id, ids = deps.create_batch(store, fleet_name="render", fleet_path="/f.yaml", fleet_text="x",
                                      clusters=[dict(SPEC, name=switched), dict(SPEC, name=refused)])
    claim = deps.claim(store, ids[switched], "t", [Phase.PENDING])
    claim = _walk(store, claim, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING)
    for rnd in (1, 2, 3):
        _checks(store, ids[switched], rnd, "wait", "WAIT", ["replication_lag: 0.8s of 2s covered"])
    _checks(store, ids[switched], 4, "pass", "GO", [])
    claim = _walk(store, claim, Phase.READY, Phase.SWITCHING)
    _procedure(store, claim, "switchover")
    claim = _walk(store, claim, Phase.CDC_MIGRATING, Phase.MONITORING)
    records.record_round(store, ids[switched], 1, [], "ROLLBACK", ["error rate 13/s is above 5/s"], kind="monitor")
    claim = _walk(store, claim, Phase.ROLLING_BACK, reason="automatic rollback: error rate 13/s")
    _procedure(store, claim, "rollback")
    _walk(store, claim, Phase.ROLLED_BACK, reason="automatic rollback: error rate 13/s")
    claim = deps.claim(store, ids[refused], "t", [Phase.PENDING])
    _walk(store, claim, Phase.PREPARING, Phase.NO_GO, reason="green <b>is not</b> a replica")
    # The sampler's samples: 30 s at 4 Hz around the flip, summarised as one phase (exact point counts).
    flip = next(s for s in journal.steps(store, ids[switched], "switchover") if s.name == "flip_routing")
    t_flip = deps.as_aware(flip.ended_at).timestamp()
    t0 = float(int(t_flip)) - 10
    for i in range(120):
        t = t0 + i * 0.25
        metrics.append(switched, t, {"lag_ms": float(i % 9), "probe_p50_ms": 1.0, "probe_p95_ms": 2.0,
                                     "probe_p99_ms": 3.0 + i / 100, "errors_per_s": 20.0 if t > t_flip + 5 else 0.0,
                                     "qps": 200.0, "writes_per_s": 100.0, "threads_connected": 3.0})
    summarize_phase(store, metrics, ids[switched], switched, "MONITORING", t0, t0 + 30)
    return batch_id, ids, switched, refused


def _section(html: str, cluster: str) -> str:
    return re.search(rf'<section class="cluster" id="[^"]+" data-cluster="{cluster}">.*?</section>', html, re.S).group(0)


def test_report_of_a_rolled_back_and_a_no_go_cluster(store, batch):
    batch_id, ids, switched, refused = batch
    html = render_batch_report(store, batch_id[:8])  # operators type short ids
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # Self-contained: no script, no external resource of any kind.
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|@import|url\(", html, re.I)
    assert set(re.findall(r'href="([^"]*)"', html)) == {f"#cluster-{switched}", f"#cluster-{refused}"}

    sw = _section(html, switched)
    plots = re.findall(r'<svg id="plot-[^"]+" class="plot".*?</svg>', sw, re.S)
    assert len(plots) == len(PLOTS) == 5
    drawn = dict(re.findall(r'data-series="(\w+)" data-points="(\d+)"', sw))
    assert drawn == {m: "30" for m in POINT_METRICS}  # 30 s of samples → one point per second, all drawn
    for svg in plots:  # every plot marks the switchover and the rollback, with labels
        assert re.findall(r'class="marker" data-kind="(\w+)"', svg) == ["switchover", "rollback"]
        assert ">switchover</text>" in svg and ">rollback</text>" in svg
    assert "x: time from the switchover&#x27;s route flip" in sw
    # Decisions: three identical WAIT rounds are one row; the monitoring ROLLBACK with its reason.
    assert "1–3 (3×)" in sw and "error rate 13/s is above 5/s" in sw and "s-ROLLBACK" in sw
    # Journal: both procedures' steps and every phase change; checkpoints of both kinds.
    for procedure in ("switchover", "rollback"):
        assert re.findall(rf'<td class="nowrap">{procedure} · (\w+)</td>', sw) == SWITCH
    assert "phase MONITORING → ROLLING_BACK" in sw and "gtid=0-1-42, file=binlog.000001, pos=1234" in sw
    assert re.findall(r"<tr><td>(switchover|rollback)</td><td class=\"time\">", sw) == ["switchover", "rollback"]
    assert "automatic rollback: error rate 13/s" in sw

    no = _section(html, refused)
    assert "green &lt;b&gt;is not&lt;/b&gt; a replica" in no and "<b>is not</b>" not in html
    assert no.count("no samples recorded in this interval") == 5 and 'class="marker"' not in no
    assert "the deployment&#x27;s start (no switchover)" in no and "No check was run." in no


def test_write_replaces_the_file_and_an_unknown_batch_is_bad_input(store, batch, tmp_path):
    batch_id = batch[0]
    out = tmp_path / "reports" / "batch.html"
    path = write_batch_report(store, batch_id, out)
    assert path == out.resolve() and path.read_text().startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the operator's only (issue 11, item 7)
    path.write_text("old")
    write_batch_report(store, batch_id, out)
    assert path.read_text() != "old" and [p.name for p in path.parent.iterdir()] == ["batch.html"]
    with pytest.raises(BadInput, match="no batch 'nope'"):
        render_batch_report(store, "nope")


def test_an_rds_deployment_is_shown_as_rds(store, unique_name, bgq_env):
    """No empty SQL-sampler plots, no None:None checkpoints, green by its own identifier, and no
    claim of a reverse replica (RDS blue/green has none)."""
    import json
    import subprocess
    import sys

    from tests.fixtures.bgq import REPO

    name = unique_name("rdsview")
    spec = {"provider": "rds", "region": "us-east-1", "db_instance_identifier": name}
    batch_id, ids = deps.create_batch(store, fleet_name="rds", fleet_path="/f.yaml", fleet_text="x",
                                      clusters=[dict(spec, name=name)])
    facts = {"blue_green": {"id": "bgd-abc123", "bg_status": "SWITCHOVER_COMPLETED"},
             "source": {"identifier": name}, "green": {"identifier": f"{name}-green-xyz"},
             "switchover": {"requested_at": "2026-12-02T01:00:00+00:00", "completed_at": "2026-12-02T01:00:40+00:00"}}
    claim = deps.claim(store, ids[name], "t", [Phase.PENDING])
    claim = _walk(store, claim, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, Phase.READY, Phase.SWITCHING)
    journal.save_checkpoint(store, claim, "switchover", old_primary=name, new_primary=f"{name}-green-xyz",
                            new_binlog_file="mysql-bin-changelog.000002", new_binlog_pos=154)
    _walk(store, claim, Phase.CDC_MIGRATING, Phase.MONITORING, Phase.COMPLETED)
    with store.begin() as c:
        from sqlalchemy import update

        from bgqueue.adapters.store.models import Deployment
        c.execute(update(Deployment.__table__).where(Deployment.__table__.c.id == ids[name]).values(
            facts=facts, retention_until=deps.utcnow()))
    section = _section(render_batch_report(store, batch_id), name)
    assert 'data-rds="1"' in section and "bgd-abc123" in section and f"{name}-green-xyz" in section
    assert f"{name}-old1" in section and "rollback: a blue/green deployment back" in section
    assert "data-plot=" not in section and "None:None" not in section and "reverse replica" not in section
    assert "mysql-bin-changelog.000002:154" in section
    # status, through the CLI, on this store
    env = dict(bgq_env, BGQUEUE_STORE_URL=str(store.engine.url))
    r = subprocess.run([sys.executable, "-m", "bgqueue.app.cli", "status", name], env=env, cwd=str(REPO),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"green {name}-green-xyz" in r.stdout and "green of" not in r.stdout
    assert "RDS blue/green deployment bgd-abc123" in r.stdout and "rollback is a blue/green deployment back" in r.stdout
    assert "reverse replica (rollback possible)" not in r.stdout
    doc = json.loads(subprocess.run([sys.executable, "-m", "bgqueue.app.cli", "status", name, "--json"], env=env,
                                    cwd=str(REPO), capture_output=True, text=True, timeout=60).stdout)
    assert doc["green"] == f"{name}-green-xyz" and doc["blue_green_deployment"] == "bgd-abc123"
