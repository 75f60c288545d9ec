"""A query's fingerprint (its class) and whether it may be replayed at all.

The fingerprint is pt-fingerprint's idea: comments dropped, whitespace collapsed, words lower-cased,
identifiers unquoted, every literal (string, number, hex, bit) replaced by ``?`` and an
IN-list of literals collapsed to ``in (?+)``, so ``WHERE id IN (1,2,3)`` and ``WHERE id IN (7)`` are
one class. One compiled regular expression tokenises (~0.1 ms per short statement, classification
included): sqlparse's lexer took 1.2 ms and sqlglot's tokenizer 0.43 ms per statement here, which
alone would cap capture near 1,000 statements/s.

Only read-only statements are replayed: SELECT (also WITH … SELECT and parenthesised unions), SHOW,
EXPLAIN/DESCRIBE. A SELECT that takes locks (FOR UPDATE, LOCK IN SHARE MODE, FOR SHARE), writes a
file or a variable (INTO), waits or takes named locks (SLEEP, GET_LOCK, MASTER_GTID_WAIT, …) or
advances a sequence is not: it is counted and skipped. Replay sessions are also READ ONLY
transactions, so a statement misjudged here still cannot write.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?(?:\*/|$))
  | (?P<string>[nN]?'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<hexbit>[xXbB]'[0-9a-fA-F]*'|0x[0-9a-fA-F]+|0b[01]+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<var>@@?(?:[A-Za-z0-9_.$]+|`(?:[^`]|``)*`))
  | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>[(),;.]|<=>|[<>!=]=|<>|\|\||&&|.)
""", re.VERBOSE | re.DOTALL)

READ_KINDS = frozenset({"select", "show", "explain", "describe", "desc"})
# Words that make a SELECT more than a read (reserved words: never an unquoted name; a call such as
# REPLACE(…) or INSERT(…) is a string function and does not count).
_WRITE_WORDS = frozenset({"insert", "update", "delete", "replace", "create", "drop", "alter", "truncate",
                          "grant", "revoke", "into"})
_UNSAFE_FUNCTIONS = frozenset({"sleep", "benchmark", "get_lock", "release_lock", "release_all_locks",
                               "is_free_lock", "is_used_lock", "load_file", "nextval", "setval", "lastval",
                               "master_gtid_wait", "master_pos_wait", "source_pos_wait",
                               "wait_for_executed_gtid_set", "wait_until_sql_thread_after_gtids"})
# Values that differ between two servers asked at the same instant: such classes are compared on
# errors, columns and row counts only.
_NONDETERMINISTIC = frozenset({"now", "current_timestamp", "sysdate", "curdate", "current_date", "curtime",
                               "current_time", "utc_timestamp", "utc_date", "utc_time", "localtime",
                               "localtimestamp", "unix_timestamp", "rand", "uuid", "uuid_short", "sys_guid",
                               "connection_id", "last_insert_id", "found_rows", "row_count", "version",
                               "database", "user", "current_user", "session_user", "system_user"})
_IN_LIST = re.compile(r"\bin \( ?\?(?: ?, ?\?)* ?\)")
_VALUE_TOKENS = frozenset({"string", "hexbit", "number"})


@dataclass(frozen=True)
class Classified:
    fingerprint: str
    kind: str  # select | show | explain | other (the first word)
    replayable: bool
    skip_reason: str  # why not (empty when replayable)
    deterministic: bool  # no NOW(), RAND(), @@server variables …
    ordered: bool  # a top-level ORDER BY (the comparison may then respect row order)
    order_columns: tuple[str, ...]  # plain columns of that ORDER BY, else ()
    tables: tuple[str, ...]  # tables named after FROM/JOIN (as written, lower-cased)
    server_state: bool = False  # reads the server's own state (performance_schema, the log tables …)

    @property
    def class_id(self) -> str:
        return class_id(self.fingerprint)


def class_id(fingerprint: str) -> str:
    """A short stable id of a class (what reports and the fleet file may also name)."""
    return hashlib.sha1(fingerprint.encode()).hexdigest()[:12]


def tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; whitespace and comments dropped; an unknown character is an ``op``."""
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(sql)  # type: ignore[misc]
            if m.lastgroup not in ("ws", "comment")]


def fingerprint(sql: str) -> str:
    """The class of ``sql`` (see the module doc)."""
    return _fingerprint(tokens(sql))


def _fingerprint(toks: list[tuple[str, str]]) -> str:
    words: list[str] = []
    for i, (kind, text) in enumerate(toks):
        if kind in _VALUE_TOKENS:
            # A minus sign that is a literal's sign (after an operator, comma, ( or keyword) folds into it.
            if words and words[-1] == "-" and (len(words) == 1 or not _is_operand(toks[i - 2] if i >= 2 else None)):
                words.pop()
            words.append("?")
        elif kind == "quoted":
            words.append(text[1:-1].replace("``", "`").lower())
        elif kind == "op" and text == ";" and i == len(toks) - 1:
            continue
        else:
            words.append(text.lower())
    text = " ".join(words).replace(" . ", ".").replace("( ", "(").replace(" )", ")").replace(" ,", ",")
    text = re.sub(r"\bin \((?:\?, )*\?\)", "in (?+)", text)
    return text


def _is_operand(tok: tuple[str, str] | None) -> bool:
    if tok is None:
        return False
    kind, text = tok
    return kind in ("number", "string", "hexbit", "quoted", "var") or (kind == "word" and text.lower() not in _KEYWORDS) \
        or text == ")"


_KEYWORDS = frozenset({"select", "where", "and", "or", "not", "on", "by", "limit", "offset", "in", "is", "like",
                       "between", "when", "then", "else", "case", "having", "as", "return", "values", "interval"})


def classify(sql: str) -> Classified:
    """The fingerprint and whether (and how) the statement may be replayed."""
    toks = tokens(sql)
    fp = _fingerprint(toks)
    words = [t.lower() for k, t in toks if k == "word"]
    first = next((t.lower() for k, t in toks if k != "op" or t not in "("), "")
    kind = first if first in READ_KINDS else ("select" if first == "with" else first or "empty")
    if kind in ("describe", "desc"):
        kind = "explain"
    skip = ""
    if kind not in READ_KINDS:
        skip = f"not a read-only statement ({first.upper() or 'empty'})"
    elif kind == "select":
        calls = _calls(toks)
        bad = sorted({t.lower() for (k, t), nxt in zip(toks, [*toks[1:], ("op", "")], strict=True)
                      if k == "word" and nxt[1] != "(" and t.lower() in _WRITE_WORDS} - {"update"})
        unsafe = sorted(calls & _UNSAFE_FUNCTIONS)
        if ("for" in words and ("update" in words or "share" in words)) or ("lock" in words and "share" in words):
            skip = "takes row locks (FOR UPDATE / FOR SHARE)"
        elif bad:
            skip = f"not read-only: {', '.join(w.upper() for w in bad)}"
        elif unsafe:
            skip = f"calls {', '.join(f.upper() for f in unsafe)}: waits, locks or has side effects"
    elif kind == "explain" and "analyze" in words:
        skip = "EXPLAIN ANALYZE executes the statement"
    elif kind == "explain" and set(words) & (_WRITE_WORDS - {"into"}):
        skip = "explains a write"
    calls = _calls(toks)
    deterministic = not (calls & _NONDETERMINISTIC) and not any(k == "var" and t.startswith("@@") for k, t in toks) \
        and kind == "select"
    order_cols = _order_columns(toks)
    tables = _tables(toks)
    state = any(t.split(".")[0] in _STATE_SCHEMAS or t in _STATE_TABLES for t in tables)
    return Classified(fp, kind, not skip, skip, deterministic and not state, order_cols is not None,
                      order_cols or (), tables, state)


# What two servers answer differently by nature (sessions, statistics, their own logs): such reads
# are compared on errors and columns only, like SHOW. Replay's own capture reads them too.
_STATE_SCHEMAS = frozenset({"performance_schema", "information_schema", "sys"})
_STATE_TABLES = frozenset({"mysql.general_log", "mysql.slow_log", "mysql.gtid_slave_pos"})


def _calls(toks: list[tuple[str, str]]) -> set[str]:
    return {t.lower() for (k, t), nxt in zip(toks, toks[1:], strict=False) if k == "word" and nxt[1] == "("}


def _top_level(toks: list[tuple[str, str]]):
    depth = 0
    for i, (k, t) in enumerate(toks):
        if k == "op" and t == "(":
            depth += 1
        elif k == "op" and t == ")":
            depth -= 1
        yield i, depth, k, t


def _order_columns(toks: list[tuple[str, str]]) -> tuple[str, ...] | None:
    """Columns of the top-level ORDER BY when every item is a plain (maybe qualified) column:
    (); None when there is no top-level ORDER BY."""
    start = None
    for i, depth, k, t in _top_level(toks):
        if depth == 0 and k == "word" and t.lower() == "order" and i + 1 < len(toks) and toks[i + 1][1].lower() == "by":
            start = i + 2
    if start is None:
        return None
    cols: list[str] = []
    item: list[tuple[str, str]] = []
    for k, t in [*toks[start:], ("op", ",")]:
        low = t.lower()
        if (k == "word" and low in ("limit", "for", "lock", "into", "union", "offset")) or (k == "op" and t == ";"):
            toks_end = True
        else:
            toks_end = False
        if (k == "op" and t == ",") or toks_end:
            names = [x for x in item if not (x[0] == "word" and x[1].lower() in ("asc", "desc"))]
            if not names or any(x[0] not in ("word", "quoted") and x[1] != "." for x in names):
                return ()
            last = names[-1]
            cols.append(last[1].strip("`").lower())
            item = []
            if toks_end:
                break
            continue
        item.append((k, t))
    return tuple(cols)


def _tables(toks: list[tuple[str, str]]) -> tuple[str, ...]:
    out: list[str] = []
    for i, (k, t) in enumerate(toks):
        if k == "word" and t.lower() in ("from", "join") and i + 1 < len(toks) and toks[i + 1][0] in ("word", "quoted"):
            name = toks[i + 1][1].strip("`")
            if i + 3 < len(toks) and toks[i + 2][1] == "." and toks[i + 3][0] in ("word", "quoted"):
                name += "." + toks[i + 3][1].strip("`")
            out.append(name.lower())
    return tuple(out)
