"""ClusterProbe against a real blue/green pair: heartbeat lag, the fence, roles, counters."""
import time

from bgqueue.adapters.metrics.probe import COUNTERS, ClusterProbe, LatencyWindow, rates
from bgqueue.adapters.metrics.samples import LAG_SOURCE_HEARTBEAT, LAG_SOURCE_SECONDS_BEHIND
from bgqueue.adapters.mysql.dialects import Dialect
from bgqueue.adapters.mysql.server import Server
from bgqueue.model.fleet import ClusterSpec
from bgqueue.sandbox import APP_DATABASE, APP_USER
from tests.fixtures.servers import both_flavours

TICK = 0.25


def spec_of(pair, **changes) -> ClusterSpec:
    raw = pair.spec_dict()
    raw.update(changes)
    return ClusterSpec.model_validate({k: v for k, v in raw.items() if v is not None})


def run(probe: ClusterProbe, seconds: float) -> list[dict]:
    """Sample at the sampler's pace for ``seconds``."""
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(probe.sample()[1])
        time.sleep(TICK)
    return out


def gtid_pos(server) -> str:
    with server.root() as c, c.cursor() as cur:
        cur.execute(Dialect(server.flavour, (8, 4, 0)).gtid_position_sql)
        return cur.fetchone()[0]


def root_sql(server, *statements) -> None:
    with server.root() as c, c.cursor() as cur:
        for sql in statements:
            cur.execute(sql)


def test_rates_from_counter_deltas():
    prev = dict.fromkeys(COUNTERS, 0) | {"Questions": 100, "Innodb_buffer_pool_read_requests": 1000}
    cur = prev | {"Questions": 300, "Com_insert": 10, "Com_update": 6, "Com_delete": 4, "Connections": 2,
                  "Aborted_connects": 1, "Access_denied_errors": 1, "Innodb_deadlocks": 1,
                  "Innodb_buffer_pool_reads": 50, "Innodb_buffer_pool_read_requests": 2000}
    r = rates(prev, cur, 2.0)
    assert r == {"qps": 100.0, "writes_per_s": 10.0, "connections_per_s": 1.0, "errors_per_s": 1.0,
                 "deadlocks_per_s": 0.5, "bp_hit_ratio": 0.95}
    assert rates(cur, prev, 2.0) == {}  # counters went back: the server restarted
    no_deadlock_counter = {k: v for k, v in cur.items() if k != "Innodb_deadlocks"}  # MySQL lacks it
    assert rates({k: v for k, v in prev.items() if k != "Innodb_deadlocks"}, no_deadlock_counter, 2.0)[
        "deadlocks_per_s"] == 0.0


def test_latency_window_percentiles_and_errors_slide():
    w = LatencyWindow(seconds=10)
    for i in range(100):
        w.add(float(i) / 10, float(i + 1))  # 1..100 ms within 10 s
    w.add(9.95, None)
    s = w.summary()
    assert (s["probe_p50_ms"], s["probe_p90_ms"], s["probe_p95_ms"], s["probe_p99_ms"]) == (50, 90, 95, 99)
    assert s["probe_errors"] == 1
    w.add(30.0, 7.0)  # everything older than 10 s is gone
    assert w.summary() == {"probe_errors": 0, "probe_p50_ms": 7.0, "probe_p90_ms": 7.0, "probe_p95_ms": 7.0,
                           "probe_p99_ms": 7.0}


@both_flavours
def test_healthy_pair_gives_sane_values_and_zero_lag(cluster_pair_factory, unique_name):
    pair = cluster_pair_factory(unique_name("hp"))
    probe = ClusterProbe(spec_of(pair))
    try:
        samples = run(probe, 1.5)
    finally:
        probe.close()
    last = samples[-1]
    assert last["primary_port"] == pair.blue.port and last["primary_up"] == 1 and last["replica_up"] == 1
    assert last["replica_io_running"] == 1 and last["replica_sql_running"] == 1 and last["seconds_behind"] == 0
    assert last["heartbeat_written"] == 1 and last["lag_source"] == LAG_SOURCE_HEARTBEAT
    assert [s["lag_ms"] for s in samples[1:]] == [0.0] * (len(samples) - 1)  # nothing written before tick 1
    assert "lag_ms" not in samples[0]
    assert last["threads_connected"] >= 1 and last["qps"] > 0 and last["writes_per_s"] > 0  # our heartbeats
    assert 0 <= last["bp_hit_ratio"] <= 1 and last["errors_per_s"] == 0 and last["deadlocks_per_s"] == 0
    assert 0 < last["probe_p50_ms"] <= last["probe_p90_ms"] <= last["probe_p95_ms"] <= last["probe_p99_ms"] < 1000
    assert last["probe_errors"] == 0


@both_flavours
def test_refused_writes_count_as_errors(cluster_pair_factory, unique_name, sandbox_passwords):
    """The application refused a privilege (what the demo's fault does to green) shows in errors_per_s:
    MariaDB's Access_denied_errors status, MySQL's performance_schema error summary."""
    import pymysql

    pair = cluster_pair_factory(unique_name("den"))
    root_sql(pair.blue, f"CREATE TABLE {APP_DATABASE}.d (id INT PRIMARY KEY)",
             f"REVOKE INSERT ON {APP_DATABASE}.* FROM '{APP_USER}'@'127.0.0.1'")
    probe = ClusterProbe(spec_of(pair))
    app = pymysql.connect(host=pair.blue.host, port=pair.blue.port, user=APP_USER, password=sandbox_passwords.app,
                          database=APP_DATABASE, autocommit=True, ssl_disabled=True)
    try:
        run(probe, 0.6)
        for i in range(40):
            try:
                app.cursor().execute("INSERT INTO d VALUES (%s)", (i,))
            except pymysql.err.MySQLError as e:
                assert e.args[0] == 1142  # INSERT command denied
        samples = run(probe, 0.6)
    finally:
        app.close()
        probe.close()
    assert max(s.get("errors_per_s", 0) for s in samples) > 5, samples


@both_flavours
def test_lag_grows_while_green_sql_thread_is_stopped_and_recovers(cluster_pair_factory, unique_name,
                                                                 sandbox_passwords):
    pair = cluster_pair_factory(unique_name("lag"))
    root_sql(pair.blue, f"CREATE TABLE {APP_DATABASE}.w (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    pair.wait_green_synced()
    probe = ClusterProbe(spec_of(pair), replica_status_s=0)
    app = Server(spec_of(pair).blue, _app_creds(), label="app", tls="disabled").connect()
    try:
        run(probe, 0.6)
        root_sql(pair.green, f"{pair.dialect.stop_replica_sql} SQL_THREAD")
        stopped_at = time.time()
        samples = []
        for i in range(7):  # application writes go on meanwhile
            app.execute(f"INSERT INTO {APP_DATABASE}.w (v) VALUES (%s)", (i,))
            samples += run(probe, TICK)
        lag = samples[-1]["lag_ms"]
        # The last heartbeat green applied was written up to one tick before the stop.
        assert 1000 < lag <= (time.time() - stopped_at + TICK) * 1000 + 50
        assert samples[-1]["replica_sql_running"] == 0 and samples[-1]["replica_io_running"] == 1
        lags = [s["lag_ms"] for s in samples]
        assert lags == sorted(lags)  # it only grows while the replica applies nothing
        root_sql(pair.green, f"{pair.dialect.start_replica_sql} SQL_THREAD")
        after = run(probe, 1.0)
        assert after[-1]["lag_ms"] == 0 and after[-1]["replica_sql_running"] == 1
    finally:
        app.close()
        probe.close()


def _app_creds():
    from bgqueue.model.schema_base import Credentials
    from bgqueue.sandbox import APP_PASSWORD_ENV, APP_USER

    return Credentials(user=APP_USER, password_env=APP_PASSWORD_ENV)


def test_fenced_primary_refuses_heartbeats_without_any_gtid(cluster_pair_factory, unique_name):
    pair = cluster_pair_factory(unique_name("fen"))
    probe = ClusterProbe(spec_of(pair))
    try:
        before = gtid_pos(pair.blue)
        run(probe, 0.6)
        assert gtid_pos(pair.blue) != before  # unfenced, heartbeats are real writes (so the next part can fail)
        root_sql(pair.blue, "SET GLOBAL read_only=1")
        fenced = gtid_pos(pair.blue)
        samples = run(probe, 1.0)
        assert gtid_pos(pair.blue) == fenced and gtid_pos(pair.green) == fenced
        assert [s["heartbeat_written"] for s in samples] == [0.0] * len(samples)
        assert all(s["primary_up"] == 1 and s["lag_ms"] == 0 for s in samples)  # green holds the last one
        root_sql(pair.blue, "SET GLOBAL read_only=0")
        assert run(probe, 0.3)[-1]["heartbeat_written"] == 1
    finally:
        probe.close()


def test_without_monitor_credentials_nothing_is_written_and_lag_is_seconds_behind(cluster_pair_factory,
                                                                                 unique_name):
    pair = cluster_pair_factory(unique_name("nom"))
    probe = ClusterProbe(spec_of(pair, monitor=None))
    try:
        before = gtid_pos(pair.blue)
        samples = run(probe, 0.6)
        assert gtid_pos(pair.blue) == before
        assert all(s["lag_source"] == LAG_SOURCE_SECONDS_BEHIND and s["lag_ms"] == 0 for s in samples)
        assert "heartbeat_written" not in samples[-1] and samples[-1]["probe_p50_ms"] > 0
    finally:
        probe.close()


def test_roles_follow_the_route_after_a_real_switchover(cluster_pair_factory, unique_name):
    pair = cluster_pair_factory(unique_name("sw"))
    spec = spec_of(pair)
    probe = ClusterProbe(spec, replica_status_s=0)
    try:
        run(probe, 0.6)
        switch_to_green(spec)
        probe.set_route((spec.green.host, spec.green.port))
        green_before = gtid_pos(pair.green)
        samples = run(probe, 1.0)
        last = samples[-1]
        assert last["primary_port"] == pair.green.port and last["heartbeat_written"] == 1
        # Lag now measures reverse replication: blue applies green's heartbeats.
        assert last["lag_ms"] == 0 and last["replica_sql_running"] == 1 and last["replica_io_running"] == 1
        assert gtid_pos(pair.green) != green_before and gtid_pos(pair.blue) == gtid_pos(pair.green)
        assert "lag_ms" not in samples[0]  # nothing written on the new primary yet: no stale lag
    finally:
        probe.close()


def switch_to_green(spec: ClusterSpec) -> None:
    """A bare SQL switchover: fence blue, let green catch up, promote it, blue replicates from it."""
    with Server(spec.blue, spec.admin, label="blue", tls="disabled") as b, \
            Server(spec.green, spec.admin, label="green", tls="disabled") as g:
        b.set_read_only(True)
        assert g.wait_for_position(b.gtid_position(), 5)
        g.promote()
        b.replicate_from(spec.green, spec.replication)
