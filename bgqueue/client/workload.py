"""An application workload on a cluster, and the proof that no acknowledged write was lost.

Used by the demo, the end-to-end tests and the benchmark: an unprivileged application user
writes continuously through ``bgqueue.client`` (so it follows the routing registry), and
afterwards every acknowledged write is looked for on the new primary and, once reverse
replication has caught up, on the old one.
"""
from __future__ import annotations

from dataclasses import dataclass

import pymysql

from bgqueue.adapters.mysql import connect as tlsconnect
from bgqueue.adapters.mysql.dialects import Dialect, parse_version
from bgqueue.adapters.routing.registry import RoutingRegistry
from bgqueue.client.routed import RoutedClient
from bgqueue.client.writer import ContinuousWriter, ensure_schema, find_lost
from bgqueue.model.fleet import ClusterSpec, Endpoint

APP_DATABASE = "appdb"


def admin_connection(spec: ClusterSpec, endpoint: Endpoint) -> pymysql.connections.Connection:
    conn = pymysql.connect(host=endpoint.host, port=endpoint.port, user=spec.admin.user,
                           password=spec.admin.password(), autocommit=True, connect_timeout=5,
                           **tlsconnect.connect_args(spec.tls))
    tlsconnect.check_encrypted(conn, spec.tls, f"{spec.name} {endpoint}")
    return conn


@dataclass
class Workload:
    spec: ClusterSpec
    client: RoutedClient
    writer: ContinuousWriter

    def stop(self) -> None:
        self.writer.stop(timeout=30)
        self.client.close()


def start_workload(spec: ClusterSpec, redis_url: str, routing: RoutingRegistry, *, app_user: str,
                   app_password: str, rate_hz: float = 100.0) -> Workload:
    """Create the table on the current writer, make sure a route exists, start writing."""
    route = routing.get(spec.name) or routing.init(spec.name, spec.blue.host, spec.blue.port, reason="workload")
    conn = admin_connection(spec, Endpoint(host=route.host, port=route.port))
    try:
        ensure_schema(conn)
    finally:
        conn.close()
    client = RoutedClient(spec.name, redis_url, app_user, app_password, APP_DATABASE,
                          endpoints=[(spec.blue.host, spec.blue.port), (spec.green.host, spec.green.port)],
                          namespace=routing.namespace, tls=spec.tls)
    writer = ContinuousWriter(client, f"{spec.name}-app", rate_hz=rate_hz).start()
    return Workload(spec, client, writer)


@dataclass
class Verdict:
    acked: int
    lost_on_new: list[int]
    lost_on_old: list[int]
    rows_on_new: int
    old_caught_up: bool

    @property
    def lost(self) -> int:
        return len(set(self.lost_on_new) | set(self.lost_on_old))


def verify(spec: ClusterSpec, acked_ids: list[int], new: Endpoint, old: Endpoint, catchup_s: float = 10.0) -> Verdict:
    """Look for every acknowledged write on ``new``, then (after waiting for ``old`` to apply
    ``new``'s position through replication) on ``old``."""
    new_conn = admin_connection(spec, new)
    old_conn = admin_connection(spec, old)
    try:
        lost_new = find_lost(new_conn, acked_ids)
        with new_conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM appdb.bgq_writes")
            rows = int(cur.fetchone()[0])
            cur.execute("SELECT VERSION()")
            dialect = Dialect(*parse_version(cur.fetchone()[0]))  # MariaDB or MySQL: its own words
            cur.execute(dialect.gtid_position_sql)
            pos = cur.fetchone()[0]
        with old_conn.cursor() as cur:
            cur.execute(dialect.wait_for_position_sql(), (pos, catchup_s))
            caught_up = int(cur.fetchone()[0]) == 0
        lost_old = find_lost(old_conn, acked_ids)
    finally:
        new_conn.close()
        old_conn.close()
    return Verdict(len(acked_ids), lost_new, lost_old, rows, caught_up)


LEDGER_PIPELINE = {"kind": "binlog", "name": "app", "tables": ["appdb.bgq_writes"]}


def wait_cdc_streaming(redis_client, spec: ClusterSpec, timeout_s: float = 30.0) -> bool:
    """The built-in consumer of the cluster's first pipeline is reading (start: current)."""
    from bgqueue.adapters.cdc.consumer_state import ConsumerState

    return ConsumerState(redis_client, spec.name, spec.pipelines[0]).wait_streaming(timeout_s)


def cdc_audit(redis_client, spec: ClusterSpec, acked_ids: list[int], primary: Endpoint, timeout_s: float = 30.0):
    """Every acknowledged write delivered exactly once to the stream of the cluster's first pipeline?
    Waits until the consumer has delivered everything up to the primary's current position."""
    from bgqueue.adapters.cdc.consumer_state import ConsumerState
    from bgqueue.adapters.mysql.server import Server
    from bgqueue.client.audit import audit_stream

    state = ConsumerState(redis_client, spec.name, spec.pipelines[0])
    with Server(primary, spec.admin, label="primary", tls=spec.tls) as server:
        final = server.gtid_position()
    state.wait_delivered(final, timeout_s)
    return audit_stream(redis_client, state.stream, acked_ids)
