"""Compare: one statement's results on blue and green, and each class's latencies. Pure.

Per statement (pt-upgrade's checks, at one consistent point instead of on static servers):
- an error on one side only, or different error codes (a time limit hit on one side is a latency
  finding, not a result difference);
- column names and types;
- row count, then rows as multisets; in order only where the statement's top-level ORDER BY
  covers a unique key of its single table (otherwise the server may return ties, or rows of a
  query without ORDER BY, in any order: an optimizer change that only reorders is no difference);
- warnings (level and code).
Statements whose values differ by nature (NOW(), RAND(), @@variables) are compared on errors,
columns and row counts; SHOW/EXPLAIN and reads of the server's own state (performance_schema,
information_schema, the log tables) on errors and columns only.
Per class: latency p50 and p95 on green over blue; beyond the ratio (and the floor) it is a
latency regression. A class that looks slower (or nearly) is timed again (``run``): each statement's
fastest of three runs per side counts, so a scheduling hiccup on a loaded host neither hides a real
regression nor makes one up.
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from bgqueue.adapters.mysql.replay import Outcome
from bgqueue.checks.replay.fingerprint import Classified

SHOWN_ROWS = 3  # first rows of each side put in the evidence


@dataclass
class Difference:
    kind: str  # error | columns | row_count | rows | row_order | warnings
    detail: str
    database: str | None = None
    sql: str = ""
    blue: dict = field(default_factory=dict)  # what each side answered (first rows, error)
    green: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "detail": self.detail, "database": self.database, "sql": self.sql[:2000],
                "blue": self.blue, "green": self.green}


def side(o: Outcome) -> dict:
    """A short, JSON-safe account of one side's answer (for reports)."""
    if o.error is not None:
        return {"error": f"{o.error[0]}: {o.error[1]}"[:300], "ms": round(o.seconds * 1000, 3)}
    return {"columns": [c for c, _ in o.columns], "row_count": o.row_count,
            "first_rows": [[_show(v) for v in r] for r in o.rows[:SHOWN_ROWS]],
            "warnings": [f"{lvl} {code}" for lvl, code in o.warnings], "ms": round(o.seconds * 1000, 3)}


def _show(v) -> object:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v if isinstance(v, (int, float, str)) or v is None else str(v)


def compare(info: Classified, blue: Outcome, green: Outcome, *, ordered: bool) -> tuple[str, str] | None:
    """(kind, detail) of the first difference, or None when green answered as blue did."""
    if blue.timed_out or green.timed_out:
        return None  # a latency finding (counted per class), not a result difference
    if blue.error or green.error:
        if blue.error is None or green.error is None:
            who, e = ("green", green.error) if green.error else ("blue", blue.error)
            assert e is not None
            return "error", f"only {who} fails: {e[0]} {e[1]}"[:500]
        if blue.error[0] != green.error[0]:
            return "error", f"different errors: blue {blue.error[0]}, green {green.error[0]} {green.error[1]}"[:500]
        return None
    if [c for c, _ in blue.columns] != [c for c, _ in green.columns]:
        return "columns", f"column names differ: {[c for c, _ in blue.columns]} vs {[c for c, _ in green.columns]}"
    if [t for _, t in blue.columns] != [t for _, t in green.columns]:
        return "columns", f"column types differ: {[t for _, t in blue.columns]} vs {[t for _, t in green.columns]}"
    if info.kind != "select" or info.server_state:
        return None  # SHOW / EXPLAIN / performance_schema …: server state and statistics differ by nature
    if blue.row_count != green.row_count:
        return "row_count", f"{blue.row_count} row(s) on blue, {green.row_count} on green"
    if not info.deterministic:
        return None
    if Counter(blue.rows) != Counter(green.rows):
        only_b = Counter(blue.rows) - Counter(green.rows)
        only_g = Counter(green.rows) - Counter(blue.rows)
        return "rows", (f"{sum(only_b.values())} row(s) only on blue (e.g. {_first(only_b)}), "
                        f"{sum(only_g.values())} only on green (e.g. {_first(only_g)})")[:500]
    if ordered and blue.rows != green.rows:
        at = next(i for i, (a, b) in enumerate(zip(blue.rows, green.rows, strict=True)) if a != b)
        return "row_order", f"same rows, in another order (first difference at row {at + 1}) under ORDER BY a unique key"
    if blue.warnings != green.warnings:
        return "warnings", f"warnings differ: blue {blue.warnings[:5]}, green {green.warnings[:5]}"
    return None


def _first(c: Counter) -> str:
    for row in c:
        return str([_show(v) for v in row])[:160]
    return "-"


@dataclass(frozen=True)
class Latency:
    blue_p50_ms: float
    blue_p95_ms: float
    green_p50_ms: float
    green_p95_ms: float
    p50_ratio: float
    p95_ratio: float
    regressed: bool

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


P95_MIN_SAMPLES = 20  # below this, a p95 is the slowest sample or next to it: shown, not judged


def latency(blue_s: list[float], green_s: list[float], *, ratio: float, floor_ms: float) -> Latency | None:
    """Green over blue at p50 and p95. Regressed when green's p50 is ``ratio`` times blue's and at
    least ``floor_ms`` slower (sub-millisecond queries jitter by multiples on a loaded host), or,
    with enough samples (P95_MIN_SAMPLES), the same holds for p95."""
    if not blue_s or not green_s:
        return None
    b50, b95 = _pct(blue_s, 50) * 1000, _pct(blue_s, 95) * 1000
    g50, g95 = _pct(green_s, 50) * 1000, _pct(green_s, 95) * 1000
    r50, r95 = g50 / max(b50, 1e-3), g95 / max(b95, 1e-3)
    slow50 = r50 >= ratio and g50 - b50 >= floor_ms
    slow95 = min(len(blue_s), len(green_s)) >= P95_MIN_SAMPLES and r95 >= ratio and g95 - b95 >= floor_ms
    return Latency(b50, b95, g50, g95, r50, r95, slow50 or slow95)
