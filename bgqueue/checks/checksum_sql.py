"""The tables the checksum check reads and the SQL it sends: what a table looks like on blue and
green, the row hash, primary-key range predicates, the chunk statement.

Only ``describe_table`` and ``checkable_table`` talk to a server (through the ``Server`` adapter);
the rest builds statement text. Every statement is meant to be sent WITH an args tuple (possibly
empty), so a literal ``%`` in an identifier is doubled here.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pymysql

META_DB = "bgq_meta"
META_TABLE = "checksums"

# One row per (run, table, chunk). Written on blue by replicated statements, so green holds its
# own recomputation of each chunk under the same key. `run` keeps concurrent or earlier runs apart,
# which also lets the per-chunk statement be a plain INSERT ... SELECT: REPLACE ... SELECT is
# flagged unsafe for statement-based binlogging and would warn in the error log on every chunk.
META_DDL = (
    f"CREATE TABLE IF NOT EXISTS `{META_DB}`.`{META_TABLE}` ("
    " run CHAR(16) NOT NULL, db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, chunk INT NOT NULL,"
    " lower_boundary TEXT NULL, upper_boundary TEXT NULL,"
    " this_cnt BIGINT UNSIGNED NOT NULL, this_crc BIGINT UNSIGNED NOT NULL,"
    " ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " PRIMARY KEY (run, db, tbl, chunk), KEY ts (ts)"
    ") ENGINE=InnoDB"
)
PURGE_SQL = f"DELETE FROM `{META_DB}`.`{META_TABLE}` WHERE ts < NOW() - INTERVAL 1 DAY"
RESULTS_SQL = f"SELECT db, tbl, chunk, this_cnt, this_crc FROM `{META_DB}`.`{META_TABLE}` WHERE run = %s"


class ChecksumError(Exception):
    """The checksum could not be taken (not a difference). ``retryable``: may clear by itself."""

    def __init__(self, reason: str, retryable: bool = False):
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable


# Rendered as numbers by UNIX_TIMESTAMP so the session time zone of whoever recomputes cannot matter.
_TIMESTAMP_TYPES = {"timestamp"}


def quote_ident(name: str) -> str:
    """A backquoted identifier, safe inside a statement formatted with args."""
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    nullable: bool


@dataclass(frozen=True)
class TableInfo:
    """What the checksum needs to know about one table (as seen on one server)."""

    db: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary-key columns in index order; empty when the table has none

    @property
    def qualified(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def sql_name(self) -> str:
        return f"{quote_ident(self.db)}.{quote_ident(self.name)}"

    def row_hash(self) -> str:
        """CRC32 of one row: every column, '#'-separated, plus ISNULL markers of nullable columns.

        CONCAT_WS skips NULLs, so without the markers a NULL moving between columns, or NULL
        against '' in a one-column row, would hash alike. TIMESTAMPs are hashed as epoch numbers.
        Caveat (as pt's): '#' inside values is not escaped, so ('a#', 'b') and ('a', '#b') collide.
        """
        parts = []
        for c in self.columns:
            ident = quote_ident(c.name)
            parts.append(f"UNIX_TIMESTAMP({ident})" if c.data_type in _TIMESTAMP_TYPES else ident)
        nullable = [f"ISNULL({quote_ident(c.name)})" for c in self.columns if c.nullable]
        if nullable:
            parts.append(f"CONCAT({', '.join(nullable)})")
        return f"CRC32(CONCAT_WS('#', {', '.join(parts)}))"

    def key_list(self) -> str:
        return ", ".join(quote_ident(k) for k in self.key)


def describe_table(server, qualified: str) -> TableInfo | None:
    """The table's columns and primary key on ``server``; None when the table does not exist."""
    db, _, name = qualified.partition(".")
    rows = server.rows(
        "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (db, name))
    if not rows:
        return None
    key = server.rows(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (db, name))
    columns = tuple(Column(str(n), str(t).lower(), str(nl).upper() == "YES") for n, t, nl in rows)
    return TableInfo(db, name, columns, tuple(str(k) for (k,) in key))


def checkable_table(blue, green, name: str) -> TableInfo:
    """``name`` described on blue, after proving green can recompute its checksum; else ChecksumError."""
    if name.count(".") != 1 or not all(name.split(".")):
        raise ChecksumError(f"{name!r} is not of the form database.table")
    info = describe_table(blue, name)
    if info is None:
        raise ChecksumError(f"table {name} does not exist on blue")
    if not info.key:
        raise ChecksumError(f"table {name} has no primary key: it cannot be chunked (add one, or drop it "
                            "from critical_tables)")
    theirs = describe_table(green, name)
    # A replicated checksum statement that fails on green would stop green's replication: refuse first.
    if theirs is None:
        raise ChecksumError(f"table {name} does not exist on green")
    missing = [c.name for c in info.columns if c.name not in {t.name for t in theirs.columns}]
    if missing:
        raise ChecksumError(f"table {name} on green lacks column(s) {', '.join(missing)}")
    if theirs.key != info.key:
        raise ChecksumError(f"table {name}: primary key differs (blue {info.key}, green {theirs.key})")
    for server, side in ((blue, "blue"), (green, "green")):
        try:
            server.rows(probe_sql(info), ())
        except pymysql.err.MySQLError as e:
            raise ChecksumError(f"table {name}: the checksum expression fails on {side}: {mysql_error(e)}") from None
    return info


def mysql_error(e: Exception) -> str:
    """A server error as ``error CODE: message``."""
    return f"error {e.args[0]}: {e.args[1]}" if len(e.args) >= 2 else str(e)


# --- primary-key ranges -----------------------------------------------------------------
def key_after(key: tuple[str, ...], values: tuple) -> tuple[str, tuple]:
    """Predicate ``key > values`` (tuple order) and its args.

    Expanded into ORs rather than a row constructor ``(a, b) > (x, y)``: MariaDB does not turn
    row-constructor comparisons into index ranges, and then every chunk would scan the table.
    """
    return _expand(key, values, ">", ">")


def key_upto(key: tuple[str, ...], values: tuple) -> tuple[str, tuple]:
    """Predicate ``key <= values`` (tuple order) and its args."""
    return _expand(key, values, "<", "<=")


def _expand(key: tuple[str, ...], values: tuple, strict: str, last: str) -> tuple[str, tuple]:
    terms, args = [], []
    for i in range(len(key)):
        eq = [f"{quote_ident(k)} = %s" for k in key[:i]]
        op = last if i == len(key) - 1 else strict
        terms.append("(" + " AND ".join(eq + [f"{quote_ident(key[i])} {op} %s"]) + ")")
        args.extend(values[:i + 1])
    return "(" + " OR ".join(terms) + ")", tuple(args)


def range_predicate(key: tuple[str, ...], after: tuple | None, upto: tuple | None) -> tuple[str, tuple]:
    """WHERE text for ``after < key <= upto``; a None end is open. Consecutive chunks leave no gap,
    so a row that exists only on green is inside some chunk whatever its key."""
    preds, args = [], ()
    if after is not None:
        p, a = key_after(key, after)
        preds.append(p)
        args += a
    if upto is not None:
        p, a = key_upto(key, upto)
        preds.append(p)
        args += a
    return (" AND ".join(preds) or "1=1"), args


def boundary_sql(info: TableInfo, after: tuple | None) -> tuple[str, tuple]:
    """Keys at offsets size-1 and size from ``after``: this chunk's last key and the next chunk's
    first. Takes one more arg, the offset (size - 1), appended by the caller."""
    where, args = range_predicate(info.key, after, None)
    return (f"SELECT {info.key_list()} FROM {info.sql_name} FORCE INDEX (PRIMARY) WHERE {where} "
            f"ORDER BY {info.key_list()} LIMIT %s, 2"), args


def first_key_sql(info: TableInfo) -> str:
    return f"SELECT {info.key_list()} FROM {info.sql_name} FORCE INDEX (PRIMARY) ORDER BY {info.key_list()} LIMIT 1"


def chunk_checksum_sql(info: TableInfo, where: str) -> str:
    """The replicated per-chunk statement; args: run, db, tbl, chunk, lower, upper, then the WHERE args."""
    return (f"INSERT INTO `{META_DB}`.`{META_TABLE}` "
            "(run, db, tbl, chunk, lower_boundary, upper_boundary, this_cnt, this_crc) "
            f"SELECT %s, %s, %s, %s, %s, %s, COUNT(*), COALESCE(BIT_XOR({info.row_hash()}), 0) "
            f"FROM {info.sql_name} FORCE INDEX (PRIMARY) WHERE {where}")


def probe_sql(info: TableInfo) -> str:
    """The chunk expression over no rows: proves it compiles on a server (collations, columns)
    before a replicated statement could fail on green and stop its replication."""
    return f"SELECT COUNT(*), COALESCE(BIT_XOR({info.row_hash()}), 0) FROM {info.sql_name} WHERE 1=0"


def row_hashes_sql(info: TableInfo, where: str) -> str:
    """Per-row key and hash of a range: used only to locate the rows of a chunk that differs."""
    return f"SELECT {info.key_list()}, {info.row_hash()} FROM {info.sql_name} FORCE INDEX (PRIMARY) WHERE {where}"


def differing_keys(blue, green, info: TableInfo, after: tuple | None, upto: tuple | None,
                   reached: Callable[[str], bool]) -> list[tuple] | None:
    """Keys of the rows of ``after < key <= upto`` whose hash differs, read from both servers twice;
    None when green could not be caught up (``reached(position)`` is a bounded wait) or none persisted.

    Unlike the chunk statement these reads are not at one replication point, so a row written
    during a pass may look different: only rows that differ in both passes are named.
    """
    where, args = range_predicate(info.key, after, upto)
    sql = row_hashes_sql(info, where)
    found: set | None = None
    for _ in range(2):
        ours = {tuple(r[:-1]): r[-1] for r in blue.rows(sql, args)}
        if not reached(blue.gtid_position()):
            return None
        theirs = {tuple(r[:-1]): r[-1] for r in green.rows(sql, args)}
        diff = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
        found = diff if found is None else found & diff
        if not found:
            return None
    return sorted(found)


def render_key(values: tuple | None) -> str:
    """A key as an operator would type it: 42, 'abc', (1, 'x')."""
    if values is None:
        return ""
    parts = [_render_value(v) for v in values]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def _render_value(v) -> str:
    if isinstance(v, (int, float, Decimal)):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, (_dt.date, _dt.datetime, _dt.time, _dt.timedelta)):
        return f"'{v}'"
    return repr(str(v))
