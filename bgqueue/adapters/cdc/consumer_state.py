"""The built-in consumer's state in Redis: its position, stream writes, source moves, status, lease.

Keys (``{base}`` = ``bgq:cdc:{cluster}:{pipeline}``):
- the stream (default ``{base}``, else the pipeline's ``stream``): one entry per row change;
- ``{base}:position`` hash: ``gtid`` (what has been delivered, the resume position), ``flavour``,
  ``source`` (server the last delivered event was read from), ``origin`` (server that wrote it), ``delivered_at`` (Redis time of
  that delivery), ``last_gtid``, ``reader``, ``transactions``, ``events``, ``updated_at``;
- ``{base}:moves`` list (newest first, 100 kept): JSON ``{from, to, last_old_at, first_new_at,
  gap_ms, gtid, route_version}``, one per change of source (the server read), written with the
  first delivery from the new source;
- ``{base}:origins`` list (same shape, plus ``last_gtid`` and ``source``): one per change of the
  server that wrote the delivered transactions. Around a switchover this is the end-to-end CDC
  gap: last event written on the old primary to first written on the new one, as delivered. It
  can differ from the source move: after the flip, reverse replication puts green's first writes
  into blue's binlog too, so a consumer may deliver them from blue before it changes source;
- ``{base}:status`` hash: what the consumer reports (state, source, route_version, lag_s,
  caught_up, last_error, ...); ``{base}:alive`` expires unless the consumer refreshes it;
- ``{base}:lease``: which consumer process owns the pipeline (expires).

A transaction's entries and the new position are written by one Lua script (atomic like
MULTI/EXEC, one round trip) that first checks the stored position is the one the consumer
resumed from (compare-and-set). So a crash leaves either the whole transaction and its position
or neither, and a second consumer that raced on the same pipeline cannot append a transaction
twice: its write is refused and it re-reads the position.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from bgqueue.adapters.cdc import position as gtidpos
from bgqueue.model.cdc import BinlogPipeline

MOVES_KEPT = 100
ALIVE_TTL_MS = 10_000
LEASE_TTL_MS = 6_000  # a crashed consumer's pipeline is taken over after this

# KEYS: position hash, stream, moves list, origins list.
# ARGV: expected gtid, new gtid, reader source, committed gtid, flavour, maxlen (0: none),
#       route version, origin (server id / uuid of the committed gtid), F (fields per entry),
#       F field names, then F values per entry.
# Returns {1, entries, now} or {0, stored gtid} when the stored position is not the expected one.
_COMMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_s = string.format('%.6f', now)
local stored = redis.call('HGET', KEYS[1], 'gtid')
if stored == false then stored = '' end
if stored ~= ARGV[1] then return {0, stored} end
local nf = tonumber(ARGV[9])
local first = 10 + nf
local maxlen = tonumber(ARGV[6])
local entries = 0
for i = first, #ARGV, nf do
  local args = {KEYS[2]}
  if maxlen > 0 then
    args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen
  end
  args[#args + 1] = '*'
  for j = 0, nf - 1 do
    args[#args + 1] = ARGV[10 + j]; args[#args + 1] = ARGV[i + j]
  end
  redis.call('XADD', unpack(args))
  entries = entries + 1
end
if entries > 0 then
  local prev = redis.call('HMGET', KEYS[1], 'source', 'origin', 'delivered_at', 'last_gtid')
  local last = prev[3] or '0'
  local gap = string.format('%.3f', (now - tonumber(last)) * 1000)
  if prev[1] and prev[1] ~= '' and prev[1] ~= ARGV[3] then
    redis.call('LPUSH', KEYS[3], cjson.encode({['from']=prev[1], to=ARGV[3], last_old_at=last, first_new_at=now_s,
      gap_ms=gap, gtid=ARGV[4], route_version=tonumber(ARGV[7])}))
    redis.call('LTRIM', KEYS[3], 0, """ + str(MOVES_KEPT - 1) + """)
  end
  if prev[2] and prev[2] ~= '' and prev[2] ~= ARGV[8] then
    redis.call('LPUSH', KEYS[4], cjson.encode({['from']=prev[2], to=ARGV[8], last_gtid=prev[4] or '', gtid=ARGV[4],
      last_old_at=last, first_new_at=now_s, gap_ms=gap, source=ARGV[3]}))
    redis.call('LTRIM', KEYS[4], 0, """ + str(MOVES_KEPT - 1) + """)
  end
  redis.call('HSET', KEYS[1], 'source', ARGV[3], 'origin', ARGV[8], 'delivered_at', now_s, 'last_gtid', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'transactions', 1)
  redis.call('HINCRBY', KEYS[1], 'events', entries)
end
redis.call('HSET', KEYS[1], 'gtid', ARGV[2], 'flavour', ARGV[5], 'reader', ARGV[3], 'updated_at', now_s)
return {1, entries, now_s}
"""

_REFRESH_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
end
return 0
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class PositionConflict(Exception):
    """The stored position is not the one this consumer resumed from (another consumer wrote)."""

    def __init__(self, stored: str):
        super().__init__(f"stored position is {stored!r}")
        self.stored = stored


@dataclass(frozen=True)
class Move:
    """One change of source, as the consumer recorded it with the first delivery from the new one."""

    source_from: str
    source_to: str
    last_old_at: float
    first_new_at: float
    gap_ms: float
    gtid: str
    route_version: int

    @classmethod
    def from_json(cls, text: str) -> Move:
        d = json.loads(text)
        return cls(d["from"], d["to"], float(d["last_old_at"]), float(d["first_new_at"]), float(d["gap_ms"]),
                   d.get("gtid", ""), int(d.get("route_version") or 0))


@dataclass(frozen=True)
class OriginChange:
    """The first delivered transaction written by another server than the one before it: around a
    switchover, the last event written on the old primary and the first written on the new one."""

    origin_from: str
    origin_to: str
    last_gtid: str
    gtid: str
    last_old_at: float
    first_new_at: float
    gap_ms: float
    source: str  # the server the first new event was read from

    @classmethod
    def from_json(cls, text: str) -> OriginChange:
        d = json.loads(text)
        return cls(str(d["from"]), str(d["to"]), d.get("last_gtid", ""), d.get("gtid", ""),
                   float(d["last_old_at"]), float(d["first_new_at"]), float(d["gap_ms"]), d.get("source", ""))


class ConsumerState:
    """Redis access for one binlog pipeline of one cluster (client built with decode_responses=True)."""

    def __init__(self, client: redis.Redis, cluster: str, pipeline: BinlogPipeline):
        self.redis, self.cluster, self.pipeline = client, cluster, pipeline
        self.base = f"bgq:cdc:{cluster}:{pipeline.name}"
        self.stream = pipeline.stream_key(cluster)
        self.position_key = f"{self.base}:position"
        self.moves_key = f"{self.base}:moves"
        self.origins_key = f"{self.base}:origins"
        self.status_key = f"{self.base}:status"
        self.alive_key = f"{self.base}:alive"
        self.lease_key = f"{self.base}:lease"
        self._commit = client.register_script(_COMMIT)
        self._refresh = client.register_script(_REFRESH_LEASE)
        self._release = client.register_script(_RELEASE_LEASE)

    # --- position and deliveries ---------------------------------------------------------
    def position(self) -> dict[str, str]:
        """The stored position hash ({} when the pipeline never ran)."""
        return self.redis.hgetall(self.position_key)

    def commit(self, expected: str, new: str, *, reader: str, committed_gtid: str, flavour: str,
               route_version: int, fields: Sequence[str], entries: Sequence[Sequence[str]]) -> float:
        """Append ``entries`` and store ``new`` atomically, if the stored position is ``expected``.

        Returns the Redis time of the write; raises PositionConflict (nothing written) otherwise.
        """
        origin = gtidpos.origin_server_id(flavour, committed_gtid) if committed_gtid else ""
        args: list = [expected, new, reader, committed_gtid, flavour, self.pipeline.stream_maxlen or 0,
                      route_version, origin, len(fields), *fields]
        for values in entries:
            args.extend(values)
        result = self._commit(keys=[self.position_key, self.stream, self.moves_key, self.origins_key], args=args)
        if int(result[0]) != 1:
            raise PositionConflict(result[1])
        return float(result[2])

    def delivered_through(self, target: str) -> bool:
        """Has everything up to the server position ``target`` been delivered?"""
        pos = self.position()
        return "gtid" in pos and gtidpos.includes(pos.get("flavour") or "mariadb", pos["gtid"], target)

    def wait_delivered(self, target: str, timeout_s: float, poll_s: float = 0.05) -> bool:
        """Block until ``delivered_through(target)`` or the timeout; for the demo, benchmarks and tests
        (a Celery task never waits: it asks ``delivered_through`` and re-enqueues)."""
        deadline = time.monotonic() + timeout_s
        while not self.delivered_through(target):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def wait_streaming(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        """Block until a consumer streams this pipeline with its position stored (for the demo, benchmarks
        and tests: writes acknowledged before that are not in the stream when ``start: current``)."""
        deadline = time.monotonic() + timeout_s
        while not (self.status().get("state") == "streaming" and "gtid" in self.position() and self.alive()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def moves(self, limit: int = MOVES_KEPT) -> list[Move]:
        """Recorded source changes, newest first."""
        return [Move.from_json(m) for m in self.redis.lrange(self.moves_key, 0, limit - 1)]

    def origin_changes(self, limit: int = MOVES_KEPT) -> list[OriginChange]:
        """Recorded changes of the server that wrote the delivered transactions, newest first."""
        return [OriginChange.from_json(m) for m in self.redis.lrange(self.origins_key, 0, limit - 1)]

    # --- status --------------------------------------------------------------------------
    def report(self, owner: str, **fields) -> None:
        """Publish the consumer's status (plain values; never a credential) and refresh liveness."""
        values = {k: ("" if v is None else str(v)) for k, v in fields.items()}
        values["owner"] = owner
        values["reported_at"] = f"{time.time():.6f}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.status_key, mapping=values)
        pipe.set(self.alive_key, owner, px=ALIVE_TTL_MS)
        pipe.execute()

    def status(self) -> dict[str, str]:
        """The last reported status ({} if never reported)."""
        return self.redis.hgetall(self.status_key)

    def alive(self) -> bool:
        """True while a consumer process reports (its liveness key has not expired)."""
        return bool(self.redis.exists(self.alive_key))

    # --- lease ---------------------------------------------------------------------------
    def acquire(self, owner: str) -> bool:
        """Take or keep the pipeline: only the owner of the lease reads the binlog."""
        if self.redis.set(self.lease_key, owner, nx=True, px=LEASE_TTL_MS):
            return True
        return bool(self._refresh(keys=[self.lease_key], args=[owner, LEASE_TTL_MS]))

    def release(self, owner: str) -> None:
        """Give the pipeline up (only if this owner still holds it)."""
        self._release(keys=[self.lease_key], args=[owner])

    def lease_holder(self) -> str | None:
        return self.redis.get(self.lease_key)
