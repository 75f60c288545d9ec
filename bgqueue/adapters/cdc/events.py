"""Row changes as stream entries: what the built-in consumer writes, and what readers parse.

One entry per changed row, with the fields ``ENTRY_FIELDS``:
``gtid`` (the transaction), ``source`` (server it was read from, host:port), ``table``
(schema.table), ``op`` (insert | update | delete), ``ts`` (commit time on the origin, seconds),
``row`` (JSON: the values for insert/delete, ``{"before": …, "after": …}`` for update).
Only row events of the pipeline's tables become entries; statements (which may carry
passwords, e.g. CREATE USER) are never copied anywhere.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import json
from collections.abc import Iterable
from typing import Any

ENTRY_FIELDS = ("gtid", "source", "table", "op", "ts", "row")
OPS = {"WriteRowsEvent": "insert", "UpdateRowsEvent": "update", "DeleteRowsEvent": "delete",
       "PartialUpdateRowsEvent": "update"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, set):
        return sorted(value)
    return str(value)


def row_entries(event: Any, gtid: str, source: str) -> list[tuple[str, ...]]:
    """The entries (values in ENTRY_FIELDS order) for one rows event of a selected table."""
    op = OPS[type(event).__name__]
    table = f"{event.schema}.{event.table}"
    ts = str(event.timestamp)
    out = []
    for row in event.rows:
        if op == "update":
            data = {"before": row["before_values"], "after": row["after_values"]}
        else:
            data = row["values"]
        out.append((gtid, source, table, op, ts, json.dumps(data, default=_jsonable, separators=(",", ":"))))
    return out


def parse_entry(fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as a dict, its ``row`` decoded."""
    out: dict[str, Any] = dict(fields)
    out["row"] = json.loads(fields.get("row") or "null")
    return out


def row_key(entry: dict[str, Any], column: str = "id") -> Any:
    """The value of ``column`` in the row an entry describes (the new image for an update)."""
    row = entry["row"]
    if entry.get("op") == "update":
        row = row.get("after") or {}
    return (row or {}).get(column)


def read_stream(client, stream: str, batch: int = 5000) -> Iterable[tuple[str, dict[str, str]]]:
    """Every (entry id, fields) of a stream, oldest first, read in batches."""
    start = "-"
    while True:
        chunk = client.xrange(stream, min=start, max="+", count=batch)
        if not chunk:
            return
        yield from chunk
        if len(chunk) < batch:
            return
        start = "(" + chunk[-1][0]
