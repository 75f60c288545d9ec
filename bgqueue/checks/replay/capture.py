"""Capture: production's statements, read from where the fleet file says, grouped into classes.

Sources (``replay.source``):
- ``slow_log`` / ``general_log``: blue's log, from the file at ``replay.path`` (log_output=FILE) or
  from the mysql.slow_log / mysql.general_log table (log_output=TABLE). MariaDB and MySQL write
  the same shapes (slow: ``# Query_time:`` headers, ``use db;``, ``SET timestamp=…;``; general:
  one ``[time] thread command<TAB>argument`` line per event, continuation lines after it).
- ``digest``: performance_schema's statement history (events_statements_history_long), and on
  MySQL 8 each digest's QUERY_SAMPLE_TEXT. performance_schema must be on.
- ``file``: statements an operator supplies, in one of the log formats or as SQL ended by ``;``
  (``USE db;`` switches the default database).
The worker reads ``path`` itself: the file must be where the worker runs (shipped or mounted).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bgqueue.adapters.mysql.server import Server
from bgqueue.checks.replay.fingerprint import Classified, classify
from bgqueue.model.errors import BadInput, BgqueueError
from bgqueue.model.replay import ReplaySpec

_SLOW_HEADER = re.compile(r"^# Query_time: ", re.M)
_SLOW_SCHEMA = re.compile(r"Schema: (\S+)")
_USE = re.compile(r"^use\s+`?([A-Za-z0-9_$]+)`?\s*;?\s*$", re.I)
_SET_TS = re.compile(r"^SET timestamp=\d+;$", re.I)
# MariaDB: "201202 10:00:00\t    5 Query\tSELECT 1" or "\t\t    5 Query\t…"; MySQL: "2026-12-02T10:00:00.123Z\t 5 Query\t…"
_GENERAL_LINE = re.compile(r"^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2}|\d{4}-\d\d-\d\dT[\d:.]+Z?|)\s*\t?\s*(\d+)\s"
                           r"(Query|Connect|Init DB|Quit|Execute|Prepare|Close stmt|Field List|Statistics|"
                           r"Ping|Shutdown|Refresh|Change user|Binlog Dump|Reset stmt|Long Data|Set option|"
                           r"Processlist|Kill|Debug|Daemon|Sleep)\t?(.*)$")
_GENERAL_BANNER = re.compile(r"^(?:\S+, Version: |Tcp port: |Time\s+Id Command\s+Argument)")
_CONNECT_DB = re.compile(r"\bon (\S+)(?: using|$)")


class SourceProblem(BadInput):
    """The replay source cannot give statements; ``field`` is the fleet-file field to fix."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Statement:
    database: str | None
    sql: str


@dataclass
class QueryClass:
    """Statements of one fingerprint: how many were seen, and a bounded set of real examples."""

    info: Classified
    seen: int = 0
    samples: list[Statement] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.info.fingerprint

    @property
    def class_id(self) -> str:
        return self.info.class_id


@dataclass
class Capture:
    classes: list[QueryClass]  # replayable, most frequent first, at most max_classes
    statements: int  # statements read from the source
    skipped: Counter  # reason → statements not replayed (writes, locks, …)
    dropped_classes: int  # replayable classes beyond max_classes

    def as_dict(self) -> dict:
        return {"statements": self.statements, "classes": len(self.classes), "dropped_classes": self.dropped_classes,
                "samples": sum(len(c.samples) for c in self.classes),
                "skipped": dict(self.skipped.most_common(20))}


def group(statements: list[Statement], spec: ReplaySpec) -> Capture:
    """Classes of the replayable statements (most frequent first), each with at most
    ``samples_per_class`` distinct examples; everything else counted by why it was skipped."""
    classes: dict[str, QueryClass] = {}
    skipped: Counter = Counter()
    for st in statements:
        info = classify(st.sql)
        if not info.replayable:
            skipped[info.skip_reason] += 1
            continue
        qc = classes.get(info.fingerprint)
        if qc is None:
            qc = classes[info.fingerprint] = QueryClass(info)
        qc.seen += 1
        if len(qc.samples) < spec.samples_per_class and st not in qc.samples:
            qc.samples.append(st)
    ranked = sorted(classes.values(), key=lambda c: (-c.seen, c.fingerprint))
    return Capture(ranked[:spec.max_classes], len(statements), skipped, max(0, len(ranked) - spec.max_classes))


def capture(spec: ReplaySpec, blue: Server) -> Capture:
    """Read the source and group it. BadInput (naming the field) when the source cannot be read,
    is in no known format, or holds no replayable statement."""
    statements = read_source(spec, blue)
    result = group(statements, spec)
    if not result.classes:
        what = ", ".join(f"{n} {r}" for r, n in result.skipped.most_common(3)) or "nothing"
        raise SourceProblem("replay.source", f"{spec.source}: no read-only statement to replay among "
                                             f"{result.statements} read ({what})")
    return result


def source_problems(spec: ReplaySpec, blue: Server) -> list[tuple[str, str]]:
    """(field, message) for each reason the source cannot give statements to replay (preflight:
    ``fleet check`` and ``fleet run`` refuse the file, exit 2). Reads; changes nothing."""
    try:
        capture(spec, blue)
    except SourceProblem as e:
        return [(e.field, str(e).split(": ", 1)[1])]
    except BgqueueError as e:
        return [("replay.source", str(e))]
    except Exception as e:  # a driver error reading a log table (the table is missing, no privilege)
        return [("replay.source", f"{spec.source}: cannot read on blue: {e.args[-1] if e.args else e}")]
    return []


def read_source(spec: ReplaySpec, blue: Server | None) -> list[Statement]:
    if spec.path is not None:
        return read_file(spec.path, spec.format if spec.source == "file" else
                         {"slow_log": "slow", "general_log": "general"}[spec.source],
                         spec.database, spec.max_statements)
    assert blue is not None
    if spec.source == "slow_log":
        rows = blue.rows("SELECT db, sql_text FROM mysql.slow_log ORDER BY start_time DESC LIMIT %s",
                         (spec.max_statements,))
        return [Statement(_text(db) or spec.database, _text(sql)) for db, sql in rows]
    if spec.source == "general_log":
        return _general_table(blue, spec)
    return _digest(blue, spec)


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def read_file(path: str, fmt: str, database: str | None, limit: int) -> list[Statement]:
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as e:
        raise SourceProblem("replay.path", f"{path}: cannot read: {e.strerror}") from None
    found = detect_format(text) if fmt in ("auto", "slow", "general") else fmt
    if fmt in ("slow", "general") and found != fmt:
        raise SourceProblem("replay.path", f"{path}: unknown format: not a {fmt} log "
                                           f"({'it reads as ' + found if found != 'unknown' else 'no known format'})")
    if fmt == "auto":
        fmt = found
        if fmt == "unknown":
            raise SourceProblem("replay.format", f"{path}: unknown format: neither a slow log (# Query_time: headers), "
                           "a general log (thread, command, argument lines) nor SQL statements ended by ';'")
    parse = {"slow": parse_slow, "general": parse_general, "sql": parse_sql}[fmt]
    out = parse(text, database)
    if not out:
        raise SourceProblem("replay.path", f"{path}: no statement found in it as a {fmt} log")
    return out[:limit]


def detect_format(text: str) -> str:
    head = text[:200_000]
    if _SLOW_HEADER.search(head):
        return "slow"
    lines = [ln for ln in head.splitlines()[:200] if ln.strip()]
    if lines and sum(1 for ln in lines if _GENERAL_LINE.match(ln) or _GENERAL_BANNER.match(ln)) >= max(1, len(lines) // 3):
        return "general"
    statements = parse_sql(head, None)
    if statements and sum(1 for s in statements if classify(s.sql).kind in _SQL_WORDS) >= max(1, len(statements) // 2):
        return "sql"
    return "unknown"


_SQL_WORDS = frozenset({"select", "show", "explain", "insert", "update", "delete", "replace", "set", "create",
                        "drop", "alter", "begin", "commit", "rollback", "start", "call", "use", "lock", "unlock"})


def parse_slow(text: str, database: str | None) -> list[Statement]:
    out: list[Statement] = []
    db = database
    buf: list[str] = []

    def flush() -> None:
        if buf:
            sql = "\n".join(buf).strip()
            if sql.endswith(";"):
                sql = sql[:-1].rstrip()
            if sql:
                out.append(Statement(db, sql))
            buf.clear()

    for line in text.splitlines():
        if line.startswith("#"):
            flush()
            m = _SLOW_SCHEMA.search(line)
            if m and m.group(1):
                db = m.group(1)
            continue
        stripped = line.strip()
        m = _USE.match(stripped)
        if m and not buf:
            db = m.group(1)
            continue
        if _SET_TS.match(stripped) and not buf:
            continue
        if not buf and (stripped.startswith("/") and "Version:" in stripped or stripped.startswith("Tcp port:")
                        or stripped.startswith("Time ")):
            continue  # the log's banner after a restart
        buf.append(line)
    flush()
    return out


def parse_general(text: str, database: str | None) -> list[Statement]:
    out: list[Statement] = []
    dbs: dict[str, str | None] = {}
    current: tuple[str, list[str]] | None = None  # (thread, lines) of a Query being read

    def flush() -> None:
        nonlocal current
        if current is not None:
            thread, lines = current
            sql = "\n".join(lines).strip()
            if sql:
                out.append(Statement(dbs.get(thread, database), sql))
            current = None

    for line in text.splitlines():
        m = _GENERAL_LINE.match(line)
        if m is None:
            if current is not None and not _GENERAL_BANNER.match(line):
                current[1].append(line)
            continue
        flush()
        thread, command, argument = m.group(1), m.group(2), m.group(3)
        if command == "Query" or command == "Execute":
            use = _USE.match(argument.strip())
            if use:
                dbs[thread] = use.group(1)
            else:
                current = (thread, [argument])
        elif command == "Init DB":
            dbs[thread] = argument.strip() or database
        elif command == "Connect":
            on = _CONNECT_DB.search(argument)
            dbs[thread] = on.group(1) if on else database
    flush()
    return out


def parse_sql(text: str, database: str | None) -> list[Statement]:
    """Statements ended by ``;`` (strings, quoted names and comments respected); ``USE db;`` switches."""
    out: list[Statement] = []
    db = database
    for sql in _split(text):
        m = _USE.match(sql + ";")
        if m:
            db = m.group(1)
        elif sql:
            out.append(Statement(db, sql))
    return out


_SPLIT = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`|--[^\n]*|\#[^\n]*|/\*.*?\*/|;""",
                    re.S)


def _split(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for m in _SPLIT.finditer(text):
        if m.group() == ";":
            parts.append(text[start:m.start()].strip())
            start = m.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p and not _only_comments(p)]


def _only_comments(sql: str) -> bool:
    return not re.sub(r"--[^\n]*|\#[^\n]*|/\*.*?\*/|\s+", "", sql, flags=re.S)


def _general_table(blue: Server, spec: ReplaySpec) -> list[Statement]:
    rows = blue.rows("SELECT thread_id, command_type, argument FROM mysql.general_log "
                     "WHERE command_type IN ('Query', 'Execute', 'Init DB', 'Connect') "
                     "ORDER BY event_time DESC LIMIT %s", (spec.max_statements * 2,))
    out: list[Statement] = []
    dbs: dict[str, str | None] = {}
    for thread, command, argument in reversed(rows):  # oldest first, so Init DB precedes its queries
        thread, command, arg = str(thread), _text(command), _text(argument)
        if command == "Init DB":
            dbs[thread] = arg.strip()
        elif command == "Connect":
            on = _CONNECT_DB.search(arg)
            dbs[thread] = on.group(1) if on else None
        else:
            use = _USE.match(arg.strip())
            if use:
                dbs[thread] = use.group(1)
            elif arg.strip():
                out.append(Statement(dbs.get(thread) or spec.database, arg.strip()))
    return out[-spec.max_statements:]


def digest_available(blue: Server) -> str | None:
    """Why performance_schema cannot give statements (None when it can)."""
    if not int(blue.scalar("SELECT @@GLOBAL.performance_schema") or 0):
        return "performance_schema is OFF on blue (performance_schema=ON in its configuration, then a restart)"
    enabled = dict(blue.rows("SELECT NAME, ENABLED FROM performance_schema.setup_consumers WHERE NAME IN "
                             "('events_statements_current', 'events_statements_history_long')"))
    off = [n for n in ("events_statements_current", "events_statements_history_long")
           if str(enabled.get(n, "")).upper() != "YES"]
    if off:  # the history is filled only when the current-statement consumer is on too
        return (f"performance_schema consumer(s) {', '.join(off)} disabled on blue (UPDATE "
                "performance_schema.setup_consumers SET ENABLED='YES' WHERE NAME IN (...), or "
                "performance-schema-consumer-<name>=ON in its configuration)")
    return None


def _digest(blue: Server, spec: ReplaySpec) -> list[Statement]:
    problem = digest_available(blue)
    if problem:
        raise SourceProblem("replay.source", f"digest: {problem}")
    rows = blue.rows("SELECT CURRENT_SCHEMA, SQL_TEXT FROM performance_schema.events_statements_history_long "
                     "WHERE SQL_TEXT IS NOT NULL ORDER BY TIMER_START DESC LIMIT %s", (spec.max_statements,))
    out = [Statement(_text(db) or spec.database, _text(sql)) for db, sql in rows]
    has_sample = blue.scalar("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='performance_schema' "
                             "AND TABLE_NAME='events_statements_summary_by_digest' AND COLUMN_NAME='QUERY_SAMPLE_TEXT'")
    if int(has_sample or 0):  # MySQL 8: one real example per digest, kept after the history has rolled over
        rows = blue.rows("SELECT SCHEMA_NAME, QUERY_SAMPLE_TEXT FROM performance_schema.events_statements_summary_by_digest "
                         "WHERE QUERY_SAMPLE_TEXT IS NOT NULL ORDER BY COUNT_STAR DESC LIMIT %s", (spec.max_classes,))
        out += [Statement(_text(db) or spec.database, _text(sql)) for db, sql in rows]
    # The history names the statements of every session, this one's too: leave out our own reads.
    return [s for s in out if "performance_schema.events_statements" not in s.sql][:spec.max_statements]
