"""Query replay against a real pair with differences seeded on green: each is found with the right
kind of difference; a change that only reorders rows of queries without ORDER BY is not; a declared
difference is reported and does not fail; the check's failure is a NO_GO reason."""
from __future__ import annotations

import time

import pytest

from bgqueue.adapters.mysql.server import servers
from bgqueue.checks.context import CheckContext, run_check
from bgqueue.checks.replay.check import query_replay
from bgqueue.checks.replay.fingerprint import fingerprint
from bgqueue.checks.replay.run import replay_cluster
from bgqueue.engine.decision import NO_GO, decide
from bgqueue.model.fleet import ClusterSpec
from tests.checks import replay_data as data


@pytest.fixture
def seeded(cluster_pair_factory, unique_name, tmp_path):
    pair = cluster_pair_factory(unique_name("rps"))
    with pair.blue.root() as b, pair.green.root() as g:
        data.load_blue(b.cursor())
        pair.wait_green_synced()  # green has the tables its own changes apply to
        data.seed_green(g.cursor())
        data.load_names(b.cursor())
    pair.wait_green_synced()
    log = tmp_path / "queries.sql"
    log.write_text(data.query_log(6))
    return pair, log


def _spec(pair, log, **change) -> ClusterSpec:
    return ClusterSpec.model_validate({**pair.spec_dict(), "change": change,
                                       "replay": {"source": "file", "path": str(log), "samples_per_class": 6}})


def _by_fingerprint(report) -> dict:
    return {c.qc.fingerprint: c for c in report.classes}


def test_every_seeded_difference_is_found_and_a_reorder_is_not(seeded):
    pair, log = seeded
    # The reorder is real: green answers in another order (what a naive ordered comparison would flag).
    q = data.reorder_only_query(0)
    with pair.blue.root() as b, pair.green.root() as g:
        bc, gc = b.cursor(), g.cursor()
        bc.execute(q)
        gc.execute(q)
        blue_rows, green_rows = bc.fetchall(), gc.fetchall()
    assert blue_rows != green_rows and sorted(blue_rows) == sorted(green_rows)

    spec = _spec(pair, log)
    blue, green = servers(spec)
    try:
        report = replay_cluster(spec, blue, green)
        status = green.replica_status()
    finally:
        blue.close()
        green.close()
    assert status.io_running and status.sql_running and not status.last_error  # resumed after pinning
    classes = _by_fingerprint(report)
    expected = {name: fingerprint(sql) for name, sql in data.seeded_queries(0).items()}
    found = {c.qc.fingerprint for c in report.differing}
    assert found == set(expected.values()), sorted(found)

    kinds = {name: set(classes[fp].kinds) for name, fp in expected.items()}
    assert kinds["only_full_group_by"] == {"error"}
    assert "only green fails: 1055" in classes[expected["only_full_group_by"]].examples[0].detail
    assert kinds["div_precision_increment"] == {"rows"}
    assert kinds["collation_compare"] == {"row_count"}
    assert kinds["collation_order"] & {"rows", "row_order"}
    assert classes[expected["collation_order"]].ordered  # ORDER BY name, id covers the primary key
    # The dropped index: same results, only slower.
    dropped = classes[expected["dropped_index"]]
    assert kinds["dropped_index"] == set() and dropped.latency.regressed, dropped.latency
    assert dropped.latency.p50_ratio >= 10

    reorder = classes[fingerprint(data.reorder_only_query(0))]
    assert reorder.run == 5 and not reorder.kinds and not reorder.ordered
    assert report.capture.skipped  # the writes and the FOR UPDATE were counted, not replayed
    assert sum(report.capture.skipped.values()) == 3 * 6
    clean = [classes[fingerprint(s)] for s in data.clean_queries(0, __import__("random").Random(1))]
    assert all(c.run > 0 and not c.differs(spec.replay) for c in clean), [c.as_dict(spec.replay) for c in clean]
    # Evidence: one example per class, both answers side by side.
    ex = classes[expected["div_precision_increment"]].as_dict(spec.replay)["examples"][0]
    assert ex["blue"]["first_rows"] != ex["green"]["first_rows"] and ex["blue"]["columns"] == ex["green"]["columns"]


def test_declared_difference_is_reported_not_failing_and_the_rest_is_a_no_go(seeded, runtime):
    pair, log = seeded
    # The operator pastes an example query: it is fingerprinted like the captured ones.
    declared = data.seeded_queries(99)["div_precision_increment"]
    spec = _spec(pair, log, description="div precision", replay_differences=[
        {"fingerprint": declared, "reason": "div_precision_increment raised on purpose"}])
    blue, green = servers(spec)
    ctx = CheckContext(spec=spec, blue=blue, green=green, store=runtime.store)
    try:
        t0 = time.monotonic()
        result = run_check("query_replay", query_replay, ctx)
    finally:
        ctx.close()
    assert time.monotonic() - t0 < 60
    assert result.status == "fail" and not result.retryable
    assert result.value == 4, [(c["fingerprint"], c["latency"]) for c in result.evidence["differing"]]
    assert result.reason.startswith("4 query class(es) answer differently on green: ")
    ev = result.evidence
    assert [c["declared"] for c in ev["declared"]] == ["div_precision_increment raised on purpose"]
    assert fingerprint(declared) not in {c["fingerprint"] for c in ev["differing"]}
    assert all(c["examples"] and c["examples"][0]["sql"] for c in ev["differing"] if c["differences"])
    decision = decide([result], now=time.time(), deadline=time.time() + 60, poll_s=1)
    assert decision.verdict == NO_GO and decision.reasons[0].startswith("query_replay: 4 query class(es)")


def test_no_replay_section_passes_without_touching_green(cluster_pair_factory, unique_name, runtime):
    pair = cluster_pair_factory(unique_name("rpn"))
    spec = ClusterSpec.model_validate(pair.spec_dict())
    blue, green = servers(spec)
    ctx = CheckContext(spec=spec, blue=blue, green=green, store=runtime.store)
    try:
        result = query_replay(ctx)
    finally:
        ctx.close()
    assert result.ok and result.reason == "no replay configured"
