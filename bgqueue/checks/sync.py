"""Is green a healthy GTID replica of blue, and how far behind is it?

Used by preflight (is the topology right at all?), by the sync wait (is the lag small yet?)
and by the pre-switchover gate.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

from bgqueue.adapters.mysql.server import ReplicaStatus, Server
from bgqueue.model import gtid
from bgqueue.model.fleet import Endpoint


@dataclass
class SyncState:
    replicating: bool  # configured as a replica of the expected source, threads running, no error
    lag_s: float | None  # Seconds_Behind_Master (None when unknown)
    transactions_behind: int | None
    problems: list[str] = field(default_factory=list)  # why it is not replicating properly
    # The subset that says the fleet file describes another topology (green is no replica of
    # blue, or not by GTID): bad input, not a state to wait out.
    topology: list[str] = field(default_factory=list)

    def in_sync(self, max_lag_s: float) -> bool:
        return self.replicating and self.lag_s is not None and self.lag_s <= max_lag_s

    def as_dict(self) -> dict:
        return {"replicating": self.replicating, "lag_s": self.lag_s,
                "transactions_behind": self.transactions_behind, "problems": list(self.problems)}


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return socket.gethostbyname(a) == socket.gethostbyname(b)
    except OSError:
        return False


def _source_identity(source: Server, replica: Server, status: ReplicaStatus) -> list[str]:
    """The server the replica's IO thread is connected to must be ``source`` by identity: a name
    can reach another server (a moved VIP or DNS record, a proxy) while the replica still streams
    from the old one. Unknown until the IO thread has connected (then its problem is reported)."""
    if not status.io_running or not status.source_server_id:
        return []
    who = source.identity()
    if status.source_server_id != who.server_id or (who.server_uuid and status.source_uuid
                                                    and status.source_uuid != who.server_uuid):
        got = f"server_uuid {status.source_uuid}" if who.server_uuid and status.source_uuid else \
            f"server_id {status.source_server_id}"
        want = f"server_uuid {who.server_uuid}" if who.server_uuid and status.source_uuid else \
            f"server_id {who.server_id}"
        return [f"{replica.label} replicates from the server with {got}, not from {source.label} "
                f"{source.endpoint} ({want}), whatever name it was pointed at"]
    return []


def assess(source: Server, replica: Server, source_endpoint: Endpoint) -> SyncState:
    """Observe ``replica``'s replication from ``source``. Changes nothing."""
    problems: list[str] = []
    status = replica.replica_status()
    if status is None:
        why = f"{replica.label} {replica.endpoint} is not configured as a replica"
        return SyncState(False, None, None, [why], [why])
    if not (_same_host(status.source_host, source_endpoint.host) and status.source_port == source_endpoint.port):
        problems.append(f"{replica.label} replicates from {status.source_host}:{status.source_port}, "
                        f"not from {source.label} {source_endpoint}")
    problems += _source_identity(source, replica, status)
    if not status.using_gtid:
        problems.append(f"{replica.label}: replication does not use GTID positioning")
    topology = list(problems)
    if not status.io_running:
        problems.append(f"{replica.label}: replication IO thread is not running")
    if not status.sql_running:
        problems.append(f"{replica.label}: replication SQL thread is not running")
    if status.last_error:
        problems.append(f"{replica.label}: replication error: {status.last_error}")
    behind = None
    try:
        behind = gtid.transactions_behind(source.flavour, replica.applied_position(), source.gtid_position())
    except gtid.GtidParseError as e:
        problems.append(f"cannot compare GTID positions: {e}")
    lag = None if status.seconds_behind is None else float(status.seconds_behind)
    return SyncState(not problems, lag, behind, problems, topology)
