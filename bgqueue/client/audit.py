"""The checker: does a CDC stream hold every acknowledged write exactly once?

Compares the row inserts of the ledger table found in a Redis stream with the writers' ledger
(``ContinuousWriter.acked_ids()``, rows of ``appdb.bgq_writes``). ``lost`` are acknowledged
writes the stream does not hold; ``duplicates`` counts extra deliveries of a row (a row
delivered three times counts two). ``unacknowledged`` are rows the stream holds that no writer
acknowledged: a write whose commit outcome was unknown to its client and did commit; they are
reported, not counted as errors.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bgqueue.adapters.cdc.events import parse_entry, read_stream, row_key
from bgqueue.client.writer import TABLE as LEDGER_TABLE

SAMPLE = 20


@dataclass(frozen=True)
class StreamAudit:
    """The verdict; ``ok`` when nothing acknowledged is missing and nothing is delivered twice."""

    acked: int
    delivered: int  # insert entries of the table in the stream (with repeats)
    lost: int
    duplicates: int
    unacknowledged: int
    lost_ids: list[int] = field(default_factory=list)  # a sample
    duplicate_ids: list[int] = field(default_factory=list)  # a sample

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0

    def as_dict(self) -> dict:
        return {"acked": self.acked, "delivered": self.delivered, "lost": self.lost, "duplicates": self.duplicates,
                "unacknowledged": self.unacknowledged, "lost_ids": self.lost_ids, "duplicate_ids": self.duplicate_ids}


def delivered_ids(client, stream: str, table: str = LEDGER_TABLE) -> Counter:
    """How many times each row id was inserted according to the stream."""
    seen: Counter = Counter()
    for _id, fields in read_stream(client, stream):
        if fields.get("table") != table or fields.get("op") != "insert":
            continue
        key = row_key(parse_entry(fields))
        if key is not None:
            seen[int(key)] += 1
    return seen


def audit_stream(client, stream: str, acked_ids: Iterable[int], *, table: str = LEDGER_TABLE) -> StreamAudit:
    """Compare ``stream`` with the acknowledged ids (client: a redis.Redis with decode_responses=True)."""
    acked = set(acked_ids)
    seen = delivered_ids(client, stream, table)
    lost = sorted(acked - seen.keys())
    dups = {k: n - 1 for k, n in seen.items() if n > 1}
    return StreamAudit(acked=len(acked), delivered=sum(seen.values()), lost=len(lost),
                       duplicates=sum(dups.values()), unacknowledged=len(seen.keys() - acked),
                       lost_ids=lost[:SAMPLE], duplicate_ids=sorted(dups)[:SAMPLE])
