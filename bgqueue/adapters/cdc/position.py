"""A binlog consumer's GTID position: what it has delivered, in the form the server resumes from.

MariaDB: the position is a ``domain-server-seq`` list, one entry per replication domain, the form
``@slave_connect_state`` takes (``0-1-42``). Committing ``0-2-43`` replaces domain 0's entry.
MySQL 8: the position is the GTID set of every transaction delivered (``uuid:1-42``), the form
COM_BINLOG_DUMP_GTID takes; committing ``uuid:43`` adds it to the set.

Because green keeps blue's transactions under their original GTIDs (log_slave_updates), the same
position is valid on either server: that is what lets the consumer change source without
losing or repeating a transaction.
"""
from __future__ import annotations

from bgqueue.model import gtid


def advance(flavour: str, position: str, committed: str) -> str:
    """The position after delivering the transaction ``committed`` (a single GTID)."""
    if flavour == "mariadb":
        pos = gtid.MariaDBPosition.parse(position)
        one = gtid.MariaDBPosition.parse(committed)
        if len(one.domains) != 1:
            raise gtid.GtidParseError(f"not a single MariaDB GTID: {committed!r}")
        return str(gtid.MariaDBPosition({**pos.domains, **one.domains}))
    joined = f"{position},{committed}" if position else committed
    return str(gtid.MySQLGtidSet.parse(joined))


def includes(flavour: str, position: str, target: str) -> bool:
    """Has a consumer at ``position`` delivered everything up to ``target`` (a server's position)?"""
    return gtid.reached(flavour, position, target)


def behind(flavour: str, position: str, target: str) -> int:
    """How many transactions of ``target`` a consumer at ``position`` has not delivered yet."""
    return gtid.transactions_behind(flavour, position, target)


def origin_server_id(flavour: str, committed: str) -> str:
    """Where a transaction was first committed: MariaDB's server id, or MySQL's source uuid."""
    if flavour == "mariadb":
        return committed.split("-")[1]
    return committed.split(":")[0].lower()
