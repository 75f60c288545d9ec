from bgqueue.engine.decision import GO, NO_GO, WAIT, decide
from bgqueue.model.results import CheckResult, errored, failed, passed, waiting


def _d(results, now=0.0, deadline=100.0):
    return decide(results, now=now, deadline=deadline, poll_s=5.0)


def test_all_pass_is_go():
    assert _d([passed("a"), passed("b")]).verdict == GO


def test_no_checks_is_no_go():
    assert _d([]).verdict == NO_GO


def test_hard_failure_is_no_go_with_every_reason():
    d = _d([failed("drift", "sql_mode differs"), failed("lag", "2.0s > 1s", retryable=True), passed("x")])
    assert d.verdict == NO_GO
    assert d.reasons == ["drift: sql_mode differs", "lag: 2.0s > 1s"]


def test_retryable_problems_wait_until_the_deadline_then_no_go():
    results = [failed("lag", "2.0s > 1s", retryable=True), waiting("window", "3/120 s covered"),
               errored("sig", RuntimeError("boom"))]
    d = _d(results, now=10)
    assert d.verdict == WAIT and d.retry_in_s == 5.0 and len(d.reasons) == 3
    assert _d(results, now=98).retry_in_s == 2.0  # never sleeps past the deadline
    late = _d(results, now=100)
    assert late.verdict == NO_GO and all(r.startswith("still not passing at the validation deadline") for r in late.reasons)


def test_decision_is_pure():
    results = [failed("lag", "x", retryable=True)]
    assert _d(results, now=1) == _d(results, now=1)


def test_check_result_round_trips_through_json_shape():
    r = failed("checksum", "appdb.t chunk 3 (id 10..20) differs", value=1, threshold=0, evidence={"chunks": 9})
    assert CheckResult.from_dict(r.as_dict()) == r


def test_monitoring_holds_on_healthy_figures_and_names_every_breach():
    from bgqueue.engine.decision import HOLD, ROLLBACK, MonitorFigures, decide_monitoring

    base = {"probe_p99_ms": 2.0, "errors_per_s": 0.0}
    kw = dict(error_rate=1.0, p99_ratio=3.0, p99_floor_ms=50.0)
    assert decide_monitoring(MonitorFigures(10, 0.0, 3.0, True, 0.0), base, **kw).verdict == HOLD
    # 3× of a tiny baseline is noise: the floor keeps 40 ms from rolling back
    assert decide_monitoring(MonitorFigures(10, 0.0, 40.0, True, 0.0), base, **kw).verdict == HOLD
    d = decide_monitoring(MonitorFigures(10, 5.0, 80.0, True, 0.0, ("cdc1",)), base, **kw)
    assert d.verdict == ROLLBACK and len(d.reasons) == 3
    assert d.reasons[0].startswith("error rate 5.00/s on the new primary is above 1/s")
    assert "p99 latency 80.0 ms is above 52.0 ms" in d.reasons[1]
    # too few samples: no verdict on figures alone
    assert decide_monitoring(MonitorFigures(2, 50.0, 900.0), base, **kw).verdict == HOLD


def test_a_check_still_waiting_is_not_a_no_go_reason_unless_the_deadline_ended_it():
    results = [failed("drift", "sql_mode differs"), waiting("replication_lag", "no lag samples yet")]
    assert _d(results, now=10).reasons == ["drift: sql_mode differs"]
    late = _d([waiting("replication_lag", "no lag samples yet")], now=100)
    assert late.verdict == NO_GO and late.reasons == [
        "still not passing at the validation deadline: replication_lag: no lag samples yet"]
