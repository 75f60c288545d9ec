"""RDS blue/green: the new primary's binlog coordinates, from the event RDS emits after a switchover.

After the switchover the new primary reports the event "Binary log coordinates in green
environment after switchover: file <file> and position <pos>"; a CDC pipeline resumes there.
"""
from __future__ import annotations

import re

_COORDINATES = re.compile(
    r"Binary log coordinates in green environment after switchover:\s*"
    r"file\s+(?P<file>[^\s,;]+)\s+and\s+position\s+(?P<pos>\d+)",
    re.IGNORECASE,
)


def parse_green_binlog_coordinates(message: str | None) -> tuple[str, int] | None:
    """``(file, pos)`` from that event's message; None for any other message."""
    m = _COORDINATES.search(message or "")
    if not m:
        return None
    return m.group("file").rstrip("."), int(m.group("pos"))


def find_green_binlog_coordinates(events: list[dict]) -> tuple[str, int] | None:
    """The coordinates from the newest matching event of ``describe_events()['Events']``, if any."""
    for event in sorted(events, key=lambda e: e.get("Date") or 0, reverse=True):
        found = parse_green_binlog_coordinates(event.get("Message"))
        if found:
            return found
    return None
