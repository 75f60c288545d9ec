"""The procedure lock across reconnects (server-side fencing, issue 19): a reconnect takes it back
from this worker's own previous session (whose close the server may not have processed yet), and
never from another worker's."""
from __future__ import annotations

import pytest

from bgqueue.adapters.mysql.server import FenceLockLost, Server
from bgqueue.model.fleet import load_fleet

LOCK = "bgq:procedure:test-cluster"


@pytest.fixture
def spec(cluster_pair, fleet_file):
    return load_fleet(fleet_file([cluster_pair])).clusters[0]


def _holder(spec) -> int | None:
    with Server(spec.blue, spec.admin, label="observer") as s:
        held = s.scalar("SELECT IS_USED_LOCK(%s)", (LOCK,))
        return None if held is None else int(held)


def test_a_reconnect_takes_the_lock_back_from_its_own_previous_session(spec):
    s = Server(spec.blue, spec.admin, label="blue")
    s.hold_fence_lock(LOCK)
    first = int(s.scalar("SELECT CONNECTION_ID()"))
    old = s._conn  # the previous session stays open on the server (a close not yet processed)
    s._conn = None
    try:
        s.connect()
        now = int(s.scalar("SELECT CONNECTION_ID()"))
        assert now != first and _holder(spec) == now
    finally:
        old.close()
        s.close()
    assert _holder(spec) is None


def test_a_reconnect_never_takes_it_from_another_workers_session(spec):
    mine = Server(spec.blue, spec.admin, label="blue (this worker)")
    mine.hold_fence_lock(LOCK)
    theirs = Server(spec.blue, spec.admin, label="blue (the worker that took over)")
    try:
        assert theirs.hold_fence_lock(LOCK) == 1  # the takeover ends this worker's session
        with pytest.raises(FenceLockLost, match="another worker holds"):
            mine.reconnect()
        assert _holder(spec) == int(theirs.scalar("SELECT CONNECTION_ID()"))
    finally:
        mine.close()
        theirs.close()
