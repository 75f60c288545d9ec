"""query_replay in a real validation chord (Celery worker processes): a cluster whose green orders
and compares one table's strings by another collation is NO_GO with the replay's reason, and
status and the HTML report show the differing class with blue's and green's answers."""
from __future__ import annotations

import json

import yaml

from bgqueue.app.progress import wait_for_batch
from bgqueue.app.report import write_batch_report
from bgqueue.model.phases import Phase
from tests.checks import replay_data as data
from tests.fixtures.bgq import bgqueue_cli


def test_differing_class_is_a_no_go_shown_in_status_and_report(cluster_pair_factory, fleet_file, unique_name,
                                                               runtime, celery_workers, tmp_path, bgq_env):
    from tasks.batch import enqueue_fleet

    pair = cluster_pair_factory(unique_name("rpv"))
    with pair.blue.root() as b, pair.green.root() as g:
        data.seed_names(b.cursor(), "utf8mb4_general_ci")
        data.seed_names(g.cursor(), "utf8mb4_bin")
        data.load_names(b.cursor())
    pair.wait_green_synced()
    log = tmp_path / "q.sql"
    log.write_text("".join(f"SELECT id FROM appdb_c.names WHERE name = '{n}';\nSELECT COUNT(*) FROM appdb_c.names;\n"
                           for n in ("alice", "bob", "zed")))
    path = fleet_file([pair])
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["replay"] = {"source": "file", "path": str(log)}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    opened = enqueue_fleet(str(path))
    [dep] = wait_for_batch(runtime, opened.batch_id, timeout=90)
    assert dep.phase == Phase.NO_GO, (dep.phase, dep.reason)
    assert "query_replay: 1 query class(es) answer differently on green: select id from appdb_c.names where " \
           "name = ? (row_count)" in dep.reason, dep.reason

    st = bgqueue_cli("status", pair.name, "--json", env=bgq_env)
    assert st.returncode == 0, st.stderr
    replay = json.loads(st.stdout)["replay"]
    assert replay["status"] == "fail" and replay["classes_differing"] == 1
    [cls] = replay["differing"]
    ex = cls["examples"][0]
    assert ex["blue"]["row_count"] != ex["green"]["row_count"] and cls["differences"] == {"row_count": 3}
    text = bgqueue_cli("status", pair.name, env=bgq_env)
    assert "1 class(es) differing" in text.stdout, text.stdout

    out = tmp_path / "report.html"
    write_batch_report(runtime.store, opened.batch_id, out)
    html = out.read_text()
    assert "Query replay: differing classes" in html
    assert "select id from appdb_c.names where name = ?" in html and "row_count ×3" in html
