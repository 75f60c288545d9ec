"""The consumer's Redis state (real redis-server): atomic delivery with compare-and-set on the
position, source moves recorded with their gap, the lease, and the checker over a stream."""
from __future__ import annotations

import pytest
import redis

from bgqueue.adapters.cdc.consumer_state import ConsumerState, PositionConflict
from bgqueue.adapters.cdc.events import ENTRY_FIELDS
from bgqueue.client.audit import audit_stream
from bgqueue.model.cdc import BinlogPipeline

BLUE, GREEN = "127.0.0.1:3306", "127.0.0.1:3307"


@pytest.fixture
def state(redis_url, unique_name) -> ConsumerState:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pipeline = BinlogPipeline(kind="binlog", name="app", tables=["appdb.bgq_writes"])
    return ConsumerState(client, unique_name("state"), pipeline)


def insert(gtid: str, source: str, row_id: int) -> tuple[str, ...]:
    return (gtid, source, "appdb.bgq_writes", "insert", "0", f'{{"id":{row_id}}}')


def deliver(state, expected, new, source, entries, route_version=1):
    return state.commit(expected, new, reader=source, committed_gtid=new, flavour="mariadb",
                        route_version=route_version, fields=ENTRY_FIELDS, entries=entries)


def test_a_transaction_and_its_position_are_written_together_or_not_at_all(state):
    deliver(state, "", "0-1-5", BLUE, [])
    deliver(state, "0-1-5", "0-1-6", BLUE, [insert("0-1-6", BLUE, 1), insert("0-1-6", BLUE, 2)])
    # A writer that resumed from an older position (another consumer, a replay) is refused whole.
    with pytest.raises(PositionConflict) as e:
        deliver(state, "0-1-5", "0-1-6", BLUE, [insert("0-1-6", BLUE, 1), insert("0-1-6", BLUE, 2)])
    assert e.value.stored == "0-1-6"
    assert state.redis.xlen(state.stream) == 2
    pos = state.position()
    assert (pos["gtid"], pos["transactions"], pos["events"], pos["source"]) == ("0-1-6", "1", "2", BLUE)
    # A position-only write (transactions with no selected rows) moves the position, not the source.
    deliver(state, "0-1-6", "0-1-9", GREEN, [])
    assert state.position()["gtid"] == "0-1-9" and state.position()["source"] == BLUE and state.moves() == []


def test_the_first_delivery_from_a_new_source_records_the_move_and_its_gap(state):
    deliver(state, "", "0-1-6", BLUE, [insert("0-1-6", BLUE, 1)])
    last_old = float(state.position()["delivered_at"])
    # Blue's last transaction, read from green (the consumer was behind when it changed source).
    deliver(state, "0-1-6", "0-1-7", GREEN, [insert("0-1-7", GREEN, 2)], route_version=2)
    deliver(state, "0-1-7", "0-2-8", GREEN, [insert("0-2-8", GREEN, 3)], route_version=2)  # written on green
    [move] = state.moves()
    assert (move.source_from, move.source_to, move.gtid, move.route_version) == (BLUE, GREEN, "0-1-7", 2)
    assert move.last_old_at == last_old and move.first_new_at >= last_old
    assert move.gap_ms == pytest.approx((move.first_new_at - move.last_old_at) * 1000, abs=0.01)
    # The writer changed one delivery later: that is the end-to-end gap.
    [change] = state.origin_changes()
    assert (change.origin_from, change.origin_to, change.last_gtid, change.gtid, change.source) == \
        ("1", "2", "0-1-7", "0-2-8", GREEN)
    assert change.last_old_at == move.first_new_at and change.first_new_at >= change.last_old_at


def test_one_lease_holder_at_a_time(state):
    assert state.acquire("a") and state.acquire("a")
    assert not state.acquire("b") and state.lease_holder() == "a"
    state.release("b")  # not the holder: nothing happens
    assert state.lease_holder() == "a"
    state.release("a")
    assert state.acquire("b")


def test_audit_counts_lost_duplicate_and_unacknowledged_rows(state):
    deliver(state, "", "0-1-1", BLUE, [insert("0-1-1", BLUE, 1), insert("0-1-1", BLUE, 2)])
    deliver(state, "0-1-1", "0-1-2", BLUE, [insert("0-1-2", BLUE, 2), insert("0-1-2", BLUE, 2)])
    deliver(state, "0-1-2", "0-1-3", BLUE, [insert("0-1-3", BLUE, 9),
                                            ("0-1-3", BLUE, "appdb.bgq_writes", "delete", "0", '{"id":1}'),
                                            ("0-1-3", BLUE, "appdb.other", "insert", "0", '{"id":3}')])
    audit = audit_stream(state.redis, state.stream, [1, 2, 3, 4])
    assert (audit.acked, audit.delivered, audit.lost, audit.duplicates, audit.unacknowledged) == (4, 5, 2, 2, 1)
    assert audit.lost_ids == [3, 4] and audit.duplicate_ids == [2] and not audit.ok
    assert audit_stream(state.redis, state.stream + ":none", []).ok
