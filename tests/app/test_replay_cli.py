"""The replay section at the command line: `fleet check` refuses a source that cannot give queries
(exit 2, file, cluster and field named, nothing changed), and `bgqueue replay` on demand."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.app.test_cli import _server_state
from tests.fixtures.bgq import bgqueue_cli


@pytest.fixture
def pair(cluster_pair_factory, unique_name):
    pair = cluster_pair_factory(unique_name("rpc"))
    with pair.blue.root() as b, b.cursor() as cur:
        cur.execute("CREATE TABLE appdb.n (id INT PRIMARY KEY, x DECIMAL(8,2))")
        cur.execute("INSERT INTO appdb.n VALUES (1, 1.00), (2, 2.50), (3, 10.00)")
    pair.wait_green_synced()
    return pair


def _with_replay(path, replay: dict, **cluster):
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["replay"] = replay
    doc["clusters"][0].update(cluster)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "unknown_format", "not_a_slow_log", "writes_only",
                                  "digest_without_performance_schema", "file_without_path"])
def test_fleet_check_refuses_a_replay_source_that_cannot_give_queries(case, pair, fleet_file, tmp_path, bgq_env):
    log = tmp_path / "q.log"
    replay, field, message = {
        "missing": ({"source": "file", "path": str(tmp_path / "nope.sql")}, "replay.path",
                    "cannot read: No such file or directory"),
        "directory": ({"source": "file", "path": str(tmp_path)}, "replay.path", "cannot read: Is a directory"),
        "unknown_format": ({"source": "file", "path": str(log)}, "replay.format", "unknown format"),
        "not_a_slow_log": ({"source": "slow_log", "path": str(log)}, "replay.path", "not a slow log"),
        "writes_only": ({"source": "file", "path": str(log)}, "replay.source", "no read-only statement to replay"),
        "digest_without_performance_schema": ({"source": "digest"}, "replay.source", "performance_schema is OFF"),
        "file_without_path": ({"source": "file"}, "replay", "source: file needs a path"),
    }[case]
    log.write_text({"unknown_format": '{"queries": ["SELECT 1"]}\n\x00\x01binary',
                    "not_a_slow_log": "SELECT 1;\nSELECT 2;\n",
                    "writes_only": "UPDATE appdb.n SET x = 1;\nINSERT INTO appdb.n VALUES (9, 1);\nDELETE FROM appdb.n;\n",
                    }.get(case, "SELECT 1;\n"))
    path = _with_replay(fleet_file([pair]), replay)
    before = _server_state(pair)
    r = bgqueue_cli("fleet", "check", str(path), env=bgq_env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    where = f"{path}" if case == "file_without_path" else f"{path}: cluster {pair.name!r}: field {field}: "
    assert where in r.stderr and message in r.stderr, r.stderr
    if case == "file_without_path":
        assert f"cluster {pair.name!r}" in r.stderr and "field replay" in r.stderr
    assert _server_state(pair) == before


def test_fleet_check_accepts_a_good_replay_source(pair, fleet_file, tmp_path, bgq_env):
    log = tmp_path / "q.sql"
    log.write_text("SELECT x FROM appdb.n WHERE id = 1;\nUPDATE appdb.n SET x = 2 WHERE id = 1;\n")
    r = bgqueue_cli("fleet", "check", str(_with_replay(fleet_file([pair]), {"source": "file", "path": str(log)})),
                    env=bgq_env)
    assert r.returncode == 0, r.stderr


def test_replay_on_demand_json_and_exit_codes(pair, fleet_file, tmp_path, bgq_env):
    log = tmp_path / "q.sql"
    log.write_text("USE appdb;\n" + "".join(f"SELECT id, x / 3 FROM n WHERE id = {i};\nSELECT COUNT(*) FROM n;\n"
                                            for i in (1, 2, 3)))
    path = _with_replay(fleet_file([pair]), {"source": "file", "path": str(log)})
    r = bgqueue_cli("replay", pair.name, "--fleet", str(path), "--json", env=bgq_env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["classes_replayed"] == 2 and out["classes_differing"] == 0 and out["statements_replayed"] == 4
    with pair.green.root() as g, g.cursor() as cur:
        cur.execute("SET GLOBAL div_precision_increment = 9")
    r = bgqueue_cli("replay", pair.name, "--fleet", str(path), "--json", env=bgq_env)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [c["fingerprint"] for c in out["differing"]] == ["select id, x / ? from n where id = ?"]
    ex = out["differing"][0]["examples"][0]
    assert ex["database"] == "appdb" and ex["blue"]["first_rows"] != ex["green"]["first_rows"]
    text = bgqueue_cli("replay", pair.name, "--fleet", str(path), env=bgq_env)
    assert text.returncode == 1 and "1 class(es) differing" in text.stdout and "rows ×3" in text.stdout, text.stdout
    assert _server_state(pair)["green_sql"] == "Yes"
    bad = bgqueue_cli("replay", "nope", "--fleet", str(path), env=bgq_env)
    assert bad.returncode == 2 and "unknown cluster 'nope'" in bad.stderr
