"""The checker's zombie rule on general logs written as the servers write them (no servers: the
rule itself is under test; the chaos rounds run it on real logs)."""
from __future__ import annotations

from datetime import datetime, timedelta

from tests.chaos.checker import redact, zombie_statements

LOCK = "bgq:procedure:c1"
T0 = datetime(2026, 12, 2, 1, 0, 0)


def _log(*events):
    return [(T0 + timedelta(seconds=i), t, cmd, arg) for i, (t, cmd, arg) in enumerate(events)]


def test_a_takeover_is_not_a_zombie_but_the_old_workers_statements_after_it_are():
    rows = _log(
        (8, "Query", f"SELECT GET_LOCK('{LOCK}', 5.0e0)"),
        (8, "Query", "SET GLOBAL read_only = ON"),            # the first owner fences: fine
        (9, "Query", f"SELECT IS_USED_LOCK('{LOCK}')"),
        (9, "Query", "KILL CONNECTION 8"),                    # the takeover ends the old session ...
        (9, "Query", f"SELECT GET_LOCK('{LOCK}', 5.0e0)"),    # ... and takes the lock
        (9, "Query", "SET GLOBAL read_only = OFF"),
        (12, "Query", f"SELECT GET_LOCK('{LOCK}', 0)"),       # the old worker reconnects: refused ...
        (12, "Query", "RESET SLAVE ALL"),                     # ... a statement anyway is a zombie
        (9, "Quit", ""),
        (13, "Query", f"SELECT GET_LOCK('{LOCK}', 0)"),       # nobody holds it any more: granted
        (13, "Query", "START SLAVE"),
        (14, "Query", "STOP SLAVE"),                          # never asked for the lock: not a procedure session
    )
    assert [(z[0], z[1], z[3]) for z in zombie_statements(rows, LOCK, [])] == [("not-holder", 12, "RESET SLAVE ALL")]


def test_the_holders_changes_after_a_newer_run_was_claimed_are_zombies():
    rows = _log(
        (8, "Connect", "bgq_admin@10.201.1.2 on  using TCP/IP"),
        (8, "Query", f"SELECT GET_LOCK('{LOCK}', 5.0e0)"),
        (8, "Query", "SET GLOBAL read_only = ON"),            # t0+2: before the new claim
        (9, "Connect", "bgq_admin@10.201.2.2 on  using TCP/IP"),  # t0+3: the new run claimed by now
        (8, "Query", "STOP SLAVE"),                           # t0+4: the old run goes on: a zombie
        (9, "Query", "KILL CONNECTION 8"),
        (9, "Query", f"SELECT GET_LOCK('{LOCK}', 5.0e0)"),    # t0+6: the takeover
    )
    # The old run's own journal (t0-5) is no newer run; the new run journals after its takeover.
    zombies = zombie_statements(rows, LOCK, [T0 - timedelta(seconds=5), T0 + timedelta(seconds=7)])
    assert [(z[0], z[1], z[3]) for z in zombies] == [("after-claim", 8, "STOP SLAVE")]
    # The holder's own run journals after it took the lock (t0+1.5): that is not a newer run; a
    # second run's row before the takeover (t0+1.7) dates the claim earlier than the taker's Connect.
    own, newer = T0 + timedelta(seconds=1.5), T0 + timedelta(seconds=1.7)
    assert [z[3] for z in zombie_statements(rows, LOCK, [T0 - timedelta(seconds=5), own])] == ["STOP SLAVE"]
    zombies = zombie_statements(rows, LOCK, [T0 - timedelta(seconds=5), own, newer])
    assert [z[3] for z in zombies] == ["SET GLOBAL read_only = ON", "STOP SLAVE"]


def test_reports_never_show_a_password():
    s = "CHANGE MASTER TO MASTER_HOST='10.0.0.1', MASTER_USER='r', MASTER_PASSWORD='s3cr\\'et', MASTER_PORT=1"
    assert "s3cr" not in redact(s) and "MASTER_PASSWORD='***'" in redact(s)
