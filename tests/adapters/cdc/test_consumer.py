"""The built-in consumer on one real primary: what it delivers, and that neither a killed dump
thread nor a killed consumer process makes it lose or repeat a transaction."""
from __future__ import annotations

import time

import pymysql

from bgqueue.adapters.cdc.consumer_state import ConsumerState
from bgqueue.adapters.cdc.events import parse_entry, read_stream, row_key
from bgqueue.client.audit import audit_stream
from bgqueue.client.workload import start_workload
from bgqueue.model.fleet import load_fleet
from tests.adapters.cdc.helpers import (
    CDC_PASSWORD_ENV,
    CDC_USER,
    ConsumerProcess,
    ConsumerThread,
    create_cdc_user,
    server_gtid,
    wait_delivered,
    wait_streaming,
    wait_until,
    write_cdc_fleet,
)

SECRET = "s3cret-in-a-statement"


def test_consumer_delivers_row_changes_of_its_tables_once_per_transaction(
        cluster_pair_factory, unique_name, tmp_path, runtime, sandbox_passwords):
    pair = cluster_pair_factory(unique_name("cdc"))
    fleet = write_cdc_fleet(tmp_path / "fleet.yaml", [pair],
                            [{"kind": "binlog", "name": "orders", "tables": ["appdb.orders"]}])
    spec = load_fleet(fleet).clusters[0]
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    consumer = ConsumerThread(runtime.settings, fleet).start()
    try:
        wait_streaming(state, str(spec.blue))
        with pair.blue.root() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE appdb.orders (id INT PRIMARY KEY, note VARCHAR(20), amount DECIMAL(10,2),"
                        " at DATETIME(6), raw VARBINARY(8))")
            cur.execute("CREATE TABLE appdb.other (id INT PRIMARY KEY)")
            cur.execute("BEGIN")
            for i in (1, 2, 3):
                cur.execute("INSERT INTO appdb.orders VALUES (%s, 'a', 9.50, '2024-05-01 10:00:00.123456', %s)",
                            (i, b"\x00\xff"))
            cur.execute("INSERT INTO appdb.other VALUES (1)")
            cur.execute("COMMIT")
            cur.execute("UPDATE appdb.orders SET note='b' WHERE id=2")
            cur.execute("DELETE FROM appdb.orders WHERE id=3")
            cur.execute("INSERT INTO appdb.other VALUES (2)")  # a transaction without a selected row
            cur.execute(f"CREATE USER 'cdc_probe'@'localhost' IDENTIFIED BY '{SECRET}'")
            cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
            target = cur.fetchone()[0]
        # Its position reaches the server's, past the transactions that had nothing to deliver.
        wait_until(lambda: state.position().get("gtid") == target, 10, f"position {target}")
    finally:
        consumer.stop()

    entries = [parse_entry(fields) for _, fields in read_stream(runtime.redis, state.stream)]
    assert [(e["op"], e["table"], row_key(e)) for e in entries] == [
        ("insert", "appdb.orders", 1), ("insert", "appdb.orders", 2), ("insert", "appdb.orders", 3),
        ("update", "appdb.orders", 2), ("delete", "appdb.orders", 3)]
    assert len({e["gtid"] for e in entries[:3]}) == 1 and len({e["gtid"] for e in entries}) == 3
    assert {e["source"] for e in entries} == {str(spec.blue)}
    assert entries[0]["row"] == {"id": 1, "note": "a", "amount": "9.50", "at": "2024-05-01T10:00:00.123456",
                                 "raw": {"base64": "AP8="}}
    assert entries[3]["row"]["before"]["note"] == "a" and entries[3]["row"]["after"]["note"] == "b"
    position = state.position()
    assert (position["transactions"], position["events"]) == ("3", "5")
    # Statements are never copied: the password in CREATE USER is in no key the consumer wrote.
    for key in runtime.redis.scan_iter(f"bgq:cdc:{spec.name}:*"):
        kind = runtime.redis.type(key)
        dump = (str(runtime.redis.hgetall(key)) if kind == "hash" else
                str(runtime.redis.xrange(key)) if kind == "stream" else str(runtime.redis.lrange(key, 0, -1))
                if kind == "list" else str(runtime.redis.get(key)))
        assert SECRET not in dump and sandbox_passwords.repl not in dump, key


def test_killed_dump_threads_make_it_reconnect_without_losing_or_repeating_events(
        cluster_pair_factory, unique_name, tmp_path, runtime, redis_url, sandbox_passwords, cdc_password, cdc_env):
    pair = cluster_pair_factory(unique_name("cdckill"))
    create_cdc_user(pair, cdc_password)
    fleet = write_cdc_fleet(tmp_path / "fleet.yaml", [pair], [{
        "kind": "binlog", "name": "app", "tables": ["appdb.bgq_writes"],
        "user": {"user": CDC_USER, "password_env": CDC_PASSWORD_ENV}}])
    spec = load_fleet(fleet).clusters[0]
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    consumer = ConsumerProcess(fleet, cdc_env, tmp_path / "consumer.log").start()
    load = None
    kills = 0
    try:
        wait_streaming(state, str(spec.blue))
        load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                              rate_hz=300)
        with pair.blue.root() as conn, conn.cursor() as cur:
            for _ in range(6):
                time.sleep(0.4)
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER=%s AND COMMAND LIKE "
                            "'Binlog Dump%%'", (CDC_USER,))
                for (pid,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(pid)}")
                        kills += 1
                    except pymysql.err.OperationalError:
                        pass  # already gone
        time.sleep(0.5)
        load.stop()
        wait_delivered(state, server_gtid(spec.blue, sandbox_passwords.admin))
        wait_until(lambda: int(state.status().get("stream_starts") or 0) > kills, 5,
                   f"{kills} reconnects reported ({state.status()})")
    finally:
        if load is not None:
            load.stop()
        assert consumer.stop() == 0, consumer.output()[-2000:]
    assert kills >= 5
    audit = audit_stream(runtime.redis, state.stream, load.writer.acked_ids())
    assert audit.acked > 200 and audit.ok, audit  # ~600 alone, 425 seen on a loaded machine
    assert cdc_password not in consumer.output()


def test_standby_consumer_takes_over_from_a_killed_one_exactly_where_it_stored(
        cluster_pair_factory, unique_name, tmp_path, runtime, redis_url, sandbox_passwords, cdc_env):
    """Two consumer processes for one pipeline: one reads, the other waits on the lease. The reader
    is SIGKILLed mid-stream (no chance to store anything more); the standby takes over from the
    stored position."""
    pair = cluster_pair_factory(unique_name("cdccrash"))
    fleet = write_cdc_fleet(tmp_path / "fleet.yaml", [pair])
    spec = load_fleet(fleet).clusters[0]
    state = ConsumerState(runtime.redis, spec.name, spec.pipelines[0])
    procs = [ConsumerProcess(fleet, cdc_env, tmp_path / f"consumer{i}.log").start() for i in (1, 2)]
    load = None
    try:
        wait_streaming(state, str(spec.blue))
        load = start_workload(spec, redis_url, runtime.routing, app_user="app", app_password=sandbox_passwords.app,
                              rate_hz=300)
        time.sleep(1.0)
        owner = state.status()["owner"]
        [active] = [p for p in procs if f":{p.proc.pid}:" in owner]
        [standby] = [p for p in procs if p is not active]
        active.kill()
        at_kill = int(state.position()["transactions"])
        wait_until(lambda: f":{standby.proc.pid}:" in state.status().get("owner", "")
                   and state.status().get("state") == "streaming", 15, "the standby consumer streaming")
        time.sleep(0.5)
        load.stop()
        wait_delivered(state, server_gtid(spec.blue, sandbox_passwords.admin))
    finally:
        if load is not None:
            load.stop()
        for p in procs:
            if p.proc.poll() is None:
                assert p.stop() == 0, p.output()[-2000:]
    assert at_kill > 100
    audit = audit_stream(runtime.redis, state.stream, load.writer.acked_ids())
    assert audit.acked > 600 and audit.ok, audit
