"""The SQL that differs between MariaDB and MySQL 8, behind one small interface.

Detected from the server (``SELECT VERSION()``), never configured. Values never enter statement
text here: statements come with their args, for the driver to escape (PyMySQL's escaping
follows the session's NO_BACKSLASH_ESCAPES, which hand quoting did not).
"""
from __future__ import annotations

from dataclasses import dataclass

from bgqueue.model import gtid
from bgqueue.model.schema_base import Tls

# MySQL prints a GTID set of several sources one per line ("uuid1:1-5,\nuuid2:1-3"): positions are
# one-line text everywhere bgqueue keeps or shows them (journal, store, messages).
_MYSQL_GTID_EXECUTED = "SELECT REPLACE(@@GLOBAL.gtid_executed, CHAR(10 USING ascii), '')"
# A MySQL replica's IO thread gives up after SOURCE_RETRY_COUNT reconnects (10 by default in 8.4):
# with one try a second that is 10 s, shorter than a source restart. A day of retries instead.
MYSQL_SOURCE_RETRY_COUNT = 86400


# The errors MariaDB's Access_denied_errors counts, by MySQL's names.
_MYSQL_ACCESS_DENIED = ("ER_ACCESS_DENIED_ERROR", "ER_DBACCESS_DENIED_ERROR", "ER_TABLEACCESS_DENIED_ERROR",
                        "ER_COLUMNACCESS_DENIED_ERROR", "ER_PROCACCESS_DENIED_ERROR", "ER_SPECIFIC_ACCESS_DENIED_ERROR",
                        "ER_ACCESS_DENIED_NO_PASSWORD_ERROR")


@dataclass(frozen=True)
class Dialect:
    flavour: str  # "mariadb" | "mysql"
    version: tuple[int, int, int]

    # --- positions -----------------------------------------------------------------
    @property
    def gtid_position_sql(self) -> str:
        """Everything this server has in its binlog (what a replica of it must reach)."""
        return "SELECT @@GLOBAL.gtid_binlog_pos" if self.flavour == "mariadb" else _MYSQL_GTID_EXECUTED

    @property
    def applied_position_sql(self) -> str:
        """What this server has applied (as a replica, or as a primary)."""
        return "SELECT @@GLOBAL.gtid_current_pos" if self.flavour == "mariadb" else _MYSQL_GTID_EXECUTED

    @property
    def binlog_status_sql(self) -> str:
        if self.flavour == "mysql" and self.version >= (8, 2, 0):
            return "SHOW BINARY LOG STATUS"
        return "SHOW MASTER STATUS"

    def wait_for_position_sql(self) -> str:
        """One placeholder for the position, one for the timeout; result 0 means reached."""
        if self.flavour == "mariadb":
            return "SELECT MASTER_GTID_WAIT(%s, %s)"
        return "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"

    def wait_reached(self, result: object) -> bool:
        return result is not None and int(result) == 0  # type: ignore[arg-type]

    # --- replication -----------------------------------------------------------------
    @property
    def replica_status_sql(self) -> str:
        if self.flavour == "mysql" and self.version >= (8, 0, 22):
            return "SHOW REPLICA STATUS"
        return "SHOW SLAVE STATUS"

    @property
    def _replica_words(self) -> bool:
        """MySQL 8.0.22 renamed SLAVE statements to REPLICA (8.0.23: CHANGE REPLICATION SOURCE)."""
        return self.flavour == "mysql" and self.version >= (8, 0, 22)

    @property
    def stop_replica_sql(self) -> str:
        return "STOP REPLICA" if self._replica_words else "STOP SLAVE"

    @property
    def start_replica_sql(self) -> str:
        return "START REPLICA" if self._replica_words else "START SLAVE"

    @property
    def reset_replica_sql(self) -> str:
        return "RESET REPLICA ALL" if self._replica_words else "RESET SLAVE ALL"

    def prepare_reverse_sql(self) -> list[str]:
        """Statements run on a former primary before it starts replicating from its successor.

        MariaDB: the replica must start from its own binlog position (FACTS: copy
        gtid_binlog_pos into gtid_slave_pos, then MASTER_USE_GTID=slave_pos). MySQL 8 needs
        nothing: auto-positioning sends gtid_executed.
        """
        if self.flavour == "mariadb":
            return ["SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos"]
        return []

    def change_source(self, host: str, port: int, user: str, password: str,
                      tls: Tls | None = None) -> tuple[str, tuple]:
        """(statement, args): point replication at a source with GTID auto-positioning. The args
        hold a password: never log them. ``tls`` required/verify: the stream is encrypted
        (MASTER_SSL / SOURCE_SSL); verify: the source's certificate is checked against
        ``tls.source_ca`` (a path on this server's host) and its names against ``host``."""
        tls = tls or Tls(mode="disabled")
        m = "SOURCE" if self.flavour == "mysql" and self.version >= (8, 0, 23) else "MASTER"
        head = "CHANGE REPLICATION SOURCE TO" if m == "SOURCE" else "CHANGE MASTER TO"
        parts = [f"{m}_HOST=%s", f"{m}_PORT={int(port)}", f"{m}_USER=%s", f"{m}_PASSWORD=%s"]
        args: list = [host, user, password]
        if self.flavour == "mariadb":
            parts.append("MASTER_USE_GTID=slave_pos")
        else:
            parts.append(f"{m}_AUTO_POSITION=1")
        parts.append(f"{m}_CONNECT_RETRY=1")
        if self.flavour == "mysql":
            parts.append(f"{m}_RETRY_COUNT={MYSQL_SOURCE_RETRY_COUNT}")
        # 'preferred' keeps what it always did: SSL asked for, not enforced.
        parts.append(f"{m}_SSL={int(tls.mode != 'disabled')}")
        if tls.mode == "verify":
            parts += [f"{m}_SSL_CA=%s", f"{m}_SSL_VERIFY_SERVER_CERT=1"]
            args.append(tls.source_ca)
        if self.flavour == "mysql" and not tls.encrypted:
            # Without TLS the RSA key for caching_sha2_password is fetched; with TLS it is not needed.
            parts.append("GET_SOURCE_PUBLIC_KEY=1" if m == "SOURCE" else "GET_MASTER_PUBLIC_KEY=1")
        return f"{head} " + ", ".join(parts), tuple(args)

    # --- fencing -------------------------------------------------------------------
    def set_read_only_sql(self, on: bool) -> list[str]:
        """read_only on MariaDB; super_read_only (which implies read_only) on MySQL."""
        if self.flavour == "mysql":
            if on:
                return ["SET GLOBAL super_read_only = ON"]
            return ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]
        return [f"SET GLOBAL read_only = {'ON' if on else 'OFF'}"]

    @property
    def read_only_sql(self) -> str:
        if self.flavour == "mysql":
            return "SELECT @@GLOBAL.read_only, @@GLOBAL.super_read_only"
        return "SELECT @@GLOBAL.read_only, 0"

    # --- counters ------------------------------------------------------------------
    @property
    def access_denied_sql(self) -> str | None:
        """How many access-denied errors the server raised since it started, when the status
        variables do not say (MySQL has no Access_denied_errors: performance_schema's error summary
        counts failed logins and refused database/table/column/routine privileges alike). None:
        read Access_denied_errors from SHOW GLOBAL STATUS (MariaDB)."""
        if self.flavour == "mariadb":
            return None
        names = ", ".join(f"'{n}'" for n in _MYSQL_ACCESS_DENIED)
        return ("SELECT COALESCE(SUM(SUM_ERROR_RAISED), 0) FROM performance_schema.events_errors_summary_global_by_error "
                f"WHERE ERROR_NAME IN ({names})")

    # --- identity ------------------------------------------------------------------
    @property
    def identity_sql(self) -> str:
        """server_id, server_uuid (MySQL only: MariaDB has none), hostname, port."""
        uuid = "@@GLOBAL.server_uuid" if self.flavour == "mysql" else "NULL"
        return f"SELECT @@GLOBAL.server_id, {uuid}, @@hostname, @@port"


def parse_version(text: str) -> tuple[str, tuple[int, int, int]]:
    """``SELECT VERSION()`` → (flavour, (major, minor, patch))."""
    flavour = "mariadb" if "mariadb" in text.lower() else "mysql"
    head = text.split("-", 1)[0]
    nums = [int(x) for x in head.split(".")[:3] if x.isdigit()]
    while len(nums) < 3:
        nums.append(0)
    return flavour, (nums[0], nums[1], nums[2])


def applied_all_received(row: dict) -> bool:
    """A MySQL replica status row (SHOW REPLICA STATUS) whose threads both run and whose
    Retrieved_Gtid_Set lies within Executed_Gtid_Set: it has applied everything it received.

    MySQL computes Seconds_Behind_Source from the last applied event's commit second, so a replica
    caught up with a busy source reads 1 as often as 0; MariaDB says 0 once the SQL thread has
    applied everything received. That meaning is kept: such a replica is 0 s behind. False for a
    MariaDB row (no GTID set columns): its value is taken as read."""
    if "Retrieved_Gtid_Set" not in row or "Executed_Gtid_Set" not in row:
        return False
    running = [str(row.get(k, "")) for k in ("Replica_IO_Running", "Replica_SQL_Running",
                                              "Slave_IO_Running", "Slave_SQL_Running") if k in row]
    if not running or any(r != "Yes" for r in running):
        return False
    try:
        return gtid.MySQLGtidSet.parse(str(row["Executed_Gtid_Set"] or "")).contains(
            gtid.MySQLGtidSet.parse(str(row["Retrieved_Gtid_Set"] or "")))
    except gtid.GtidParseError:
        return False
