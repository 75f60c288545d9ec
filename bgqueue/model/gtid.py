"""GTID positions of both flavours, parsed and compared.

MariaDB: a position is a list of ``domain-server-seq`` (one per replication domain), e.g.
``0-1-42,1-7-3``. Within a domain sequence numbers grow; "A has reached B" means: for every
domain of B, A's sequence number in that domain is ≥ B's.

MySQL 8: a GTID set is ``uuid:interval[:interval…]`` per source, comma separated, e.g.
``3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9``; 8.4+ adds tags (``uuid:1-5:tag:1-3``: the
intervals after a tag are the tag's own). "A contains B" is set inclusion.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_MARIADB_ITEM = re.compile(r"^(\d+)-(\d+)-(\d+)$")
# A GTID tag (MySQL 8.4+): a letter or underscore, then up to 31 letters, digits or underscores.
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class GtidParseError(ValueError):
    pass


@dataclass(frozen=True)
class MariaDBPosition:
    """``{domain: (server_id, seq)}``."""

    domains: dict[int, tuple[int, int]]

    @classmethod
    def parse(cls, text: str | None) -> MariaDBPosition:
        domains: dict[int, tuple[int, int]] = {}
        for item in (text or "").replace("\n", "").split(","):
            item = item.strip()
            if not item:
                continue
            m = _MARIADB_ITEM.match(item)
            if not m:
                raise GtidParseError(f"not a MariaDB GTID: {item!r}")
            d, s, n = (int(x) for x in m.groups())
            if d in domains:
                raise GtidParseError(f"domain {d} appears twice in {text!r}")
            domains[d] = (s, n)
        return cls(domains)

    def reached(self, target: MariaDBPosition) -> bool:
        """True when this position includes everything up to ``target``."""
        return all(d in self.domains and self.domains[d][1] >= seq for d, (_, seq) in target.domains.items())

    def behind(self, target: MariaDBPosition) -> int:
        """How many transactions this position lacks to reach ``target`` (summed over domains)."""
        return sum(max(0, seq - self.domains.get(d, (0, 0))[1]) for d, (_, seq) in target.domains.items())

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.domains.items()))


@dataclass(frozen=True)
class MySQLGtidSet:
    """``{uuid: ((start, end), …)}`` with merged, sorted, inclusive intervals. A tagged GTID
    (``uuid:tag:N``, MySQL 8.4+) is kept under ``"uuid:tag"``: its own sequence, apart from the
    untagged one of the same uuid; printed back as ``uuid:tag:N`` elements."""

    sets: dict[str, tuple[tuple[int, int], ...]]

    @classmethod
    def parse(cls, text: str | None) -> MySQLGtidSet:
        raw: dict[str, list[tuple[int, int]]] = {}
        for part in (text or "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ivals = part.split(":")
            if not _UUID.match(uuid) or not ivals or _TAG.match(ivals[-1]):
                raise GtidParseError(f"not a MySQL GTID set element: {part!r}")
            key = uuid.lower()
            for iv in ivals:
                if _TAG.match(iv):  # MySQL 8.4+: uuid:tag:N — the intervals after a tag are that tag's
                    key = f"{uuid.lower()}:{iv.lower()}"
                    continue
                lo, _, hi = iv.partition("-")
                try:
                    a, b = int(lo), int(hi) if hi else int(lo)
                except ValueError:
                    raise GtidParseError(f"bad interval {iv!r} in {part!r}") from None
                if a < 1 or b < a:
                    raise GtidParseError(f"bad interval {iv!r} in {part!r}")
                raw.setdefault(key, []).append((a, b))
        return cls({u: _merge(iv) for u, iv in raw.items()})

    def contains(self, other: MySQLGtidSet) -> bool:
        """True when every transaction of ``other`` is in this set."""
        for uuid, ivals in other.sets.items():
            mine = self.sets.get(uuid, ())
            for a, b in ivals:
                if not any(x <= a and b <= y for x, y in mine):
                    return False
        return True

    def missing(self, other: MySQLGtidSet) -> int:
        """How many transactions of ``other`` this set lacks."""
        count = 0
        for uuid, ivals in other.sets.items():
            mine = self.sets.get(uuid, ())
            for a, b in ivals:
                covered = sum(max(0, min(b, y) - max(a, x) + 1) for x, y in mine)
                count += (b - a + 1) - covered
        return count

    def __str__(self) -> str:
        out = []
        for uuid in sorted(self.sets):
            ivs = ":".join(f"{a}-{b}" if a != b else f"{a}" for a, b in self.sets[uuid])
            out.append(f"{uuid}:{ivs}")
        return ",".join(out)


def _merge(ivals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ivals):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def reached(flavour: str, current: str, target: str) -> bool:
    """Has a server at ``current`` applied everything up to ``target``? (flavour: mariadb|mysql)"""
    if flavour == "mariadb":
        return MariaDBPosition.parse(current).reached(MariaDBPosition.parse(target))
    return MySQLGtidSet.parse(current).contains(MySQLGtidSet.parse(target))


def transactions_behind(flavour: str, current: str, target: str) -> int:
    if flavour == "mariadb":
        return MariaDBPosition.parse(current).behind(MariaDBPosition.parse(target))
    return MySQLGtidSet.parse(current).missing(MySQLGtidSet.parse(target))
